// UpgradeStragglers: the one OLD -> CURRENT pass, used by the rotation's
// finalization (keys left under the old key once every unit is promoted) and
// by `hsmctl keys upgrade`.
#ifndef HSMSIM_HOST_STRAGGLER_UPGRADE_H_
#define HSMSIM_HOST_STRAGGLER_UPGRADE_H_

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "host/batch_fanout.h"
#include "host/keystore.h"
#include "host/rewrap_batch.h"
#include "host/unit_channel.h"

namespace hsmsim::host {

struct StragglerOptions {
  size_t batch_size = 2048;
  int in_flight_per_unit = kDefaultInFlightPerLane;
  std::function<void(std::string_view)> say;  // lines for the operator; may be empty
};

struct StragglerReport {
  int64_t moved = 0;
  FailedKeys failed;  // keys a unit refused: they stay under OLD
};

// UpgradeStragglers re-encrypts OLD -> CURRENT, on `units` (whose OLD
// register holds the key of `old_wkid` and CURRENT that of `current_wkid`),
// every stored key whose blob is under `old_wkid` and that has no pending
// blob, and makes the new blobs the keys' blobs (Keystore::ReplaceBlobs,
// batch by batch).
//
// Failure handling, the same for both callers: a batch a unit cannot serve
// (transport error, refusal, a blob not under `current_wkid`) goes to
// another unit and the unit is dropped as BatchFanout does; when no unit is
// left it returns UNAVAILABLE (NO_UNIT_AVAILABLE). Keys already moved stay
// moved, so running it again continues. A key a unit refuses alone
// (BLOB_FAILED: damaged, or under another key) never stops the pass: it
// stays under OLD and is counted and named in the report. Keystore errors are
// returned as they are.
absl::StatusOr<StragglerReport> UpgradeStragglers(Keystore& keystore,
                                                  const std::vector<UnitChannel*>& units,
                                                  std::string_view old_wkid,
                                                  std::string_view current_wkid,
                                                  const StragglerOptions& options);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_STRAGGLER_UPGRADE_H_

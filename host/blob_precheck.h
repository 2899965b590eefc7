// PrecheckBlobs: the rotation's pre-check of the stored blobs themselves.
// Before a rotation writes its journal, the units open every blob it will
// re-encrypt (CheckBlobs: nothing changes, nothing secret is returned), so
// that a damaged blob (a bad GCM tag), a blob under a master key other than
// the one its row names, or a malformed one is found and named before
// anything is written, not half way through the re-encryption.
#ifndef HSMSIM_HOST_BLOB_PRECHECK_H_
#define HSMSIM_HOST_BLOB_PRECHECK_H_

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

struct BlobPrecheckOptions {
  size_t batch_size = 2048;
  int in_flight_per_unit = kDefaultInFlightPerLane;
  std::function<void(std::string_view)> say;  // lines for the operator; may be empty
};

struct BlobPrecheckReport {
  int64_t checked = 0;
  FailedKeys unreadable;  // keys whose blob a unit cannot open, with its reason
};

// PrecheckBlobs asks `units` (each holding the master key of `source_wkid`
// in CURRENT), spread over them in batches, to open the blob of every stored
// key that a rotation from `source_wkid` to `target_wkid` would re-encrypt
// (Keystore::ReadNeedingRewrap: quarantined keys are skipped). The keystore's
// recorded problems are replaced by what this check finds
// (ClearBlobProblems, then RecordBlobProblems), so that hsmctl recover and
// keys quarantine can name the keys. Returns the report (unreadable.count 0:
// every blob opens); the keystore's error; or the fan-out's error when no
// unit is left (UNAVAILABLE NO_UNIT_AVAILABLE, or the last unit's transport
// error).
absl::StatusOr<BlobPrecheckReport> PrecheckBlobs(Keystore& keystore,
                                                 const std::vector<UnitChannel*>& units,
                                                 std::string_view source_wkid,
                                                 std::string_view target_wkid,
                                                 const BlobPrecheckOptions& options);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_BLOB_PRECHECK_H_

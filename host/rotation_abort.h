// Abandoning a rotation that no unit has promoted (hsmctl mk rotate
// --abort): the pending blobs under the target key are dropped and the
// journal is closed, in one keystore transaction; every key keeps its blob
// under CURRENT, and no unit register changes.
//
// Thread-safety: functions on values and on a Keystore used from one thread.
#ifndef HSMSIM_HOST_ROTATION_ABORT_H_
#define HSMSIM_HOST_ROTATION_ABORT_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "host/keystore.h"
#include "host/rotation.h"

namespace hsmsim::host {

// CheckAbort returns OK when the rotation `journal` may be abandoned, given
// every selected unit's observation and the keystore's counts per (WKID,
// pending WKID). Otherwise FAILED_PRECONDITION with:
//  - NO_ROTATION_IN_PROGRESS when no rotation is open;
//  - ROTATION_PROMOTED naming the units whose CURRENT already holds the
//    target key (or when the journal is FINALIZING): those units use the new
//    key, so the rotation must be finished (hsmctl recover --apply);
//  - INTERLOCK when, once the pending blobs under the target are dropped,
//    some key would be under a master key no unit holds;
// and a unit's own transport error (UNIT_UNREACHABLE, exit 3) when a unit
// does not answer: it might have promoted.
absl::Status CheckAbort(const std::optional<RotationJournal>& journal,
                        const std::vector<UnitObservation>& units,
                        const std::vector<WkidPairCount>& counts);

// What AbortRotation did.
struct AbortReport {
  RotationJournal journal;  // the rotation abandoned
  int64_t pending_dropped = 0;
};

// AbortRotation reads the journal and counts from `keystore`, checks them
// with CheckAbort against `units`, then abandons the rotation
// (Keystore::AbandonRotation). Returns what it did, CheckAbort's refusal, or
// the keystore's error (nothing changed then).
absl::StatusOr<AbortReport> AbortRotation(Keystore& keystore,
                                          const std::vector<UnitObservation>& units);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_ROTATION_ABORT_H_

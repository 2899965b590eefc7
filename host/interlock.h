// The interlock: hsmctl refuses a register change (clear current, clear new,
// set immediate, zeroize) that would leave stored keys under a master key
// that no unit holds any more, unless the operator forces it.
#ifndef HSMSIM_HOST_INTERLOCK_H_
#define HSMSIM_HOST_INTERLOCK_H_

#include <vector>

#include "absl/status/status.h"
#include "host/keystore.h"
#include "host/rotation.h"

namespace hsmsim::host {

enum class RegisterChange { kSetImmediate, kClearNew, kClearCurrent, kClearOld, kZeroize };

// ApplyRegisterChange returns `info` as the firmware would leave it after
// `change` (registers only; a change the firmware would refuse leaves it).
v1::GetInfoResponse ApplyRegisterChange(const v1::GetInfoResponse& info, RegisterChange change);

// CheckInterlock returns OK when, after `change` on every unit in `units`,
// every stored key is still under a master key some unit holds.
// Returns FAILED_PRECONDITION (INTERLOCK) naming the WKIDs and key counts
// otherwise, and (INTERLOCK_UNVERIFIED) when a unit did not answer.
absl::Status CheckInterlock(const std::vector<UnitObservation>& units, RegisterChange change,
                            const std::vector<WkidPairCount>& counts);

// CheckQuarantineHold returns OK unless `change` on every unit in `units`
// would leave no unit holding a master key that quarantined keys are under
// (`quarantined`: Keystore::CountQuarantined), while some unit holds it now.
// Returns FAILED_PRECONDITION (KEYS_QUARANTINED) naming the count and the
// WKID then: quarantined keys were set aside explicitly, to be kept, so
// --force does not override this; release them (hsmctl keys quarantine
// --release) first. Units that do not answer count as holding nothing
// (CheckInterlock reports them).
absl::Status CheckQuarantineHold(const std::vector<UnitObservation>& units, RegisterChange change,
                                 const std::vector<WkidPairCount>& quarantined);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_INTERLOCK_H_

// The interlock: hsmctl refuses a register change (clear current, clear new,
// set immediate, zeroize) that would leave stored keys under a master key
// that no unit of the instance holds any more, unless the operator forces
// it with at least the signature threshold of signatures.
//
// Thread-safety: pure functions on values.
#ifndef HSMSIM_HOST_INTERLOCK_H_
#define HSMSIM_HOST_INTERLOCK_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "host/keystore.h"
#include "host/rotation.h"

namespace hsmsim::host {

enum class RegisterChange { kSetImmediate, kClearNew, kClearCurrent, kClearOld, kZeroize };

// ApplyRegisterChange returns `info` as the firmware would leave it after
// `change` (registers only; a change the firmware would refuse leaves it).
v1::GetInfoResponse ApplyRegisterChange(const v1::GetInfoResponse& info, RegisterChange change);

// CheckInterlock returns OK when, after `change` on the units of `units`
// that are selected (unit.selected: the command's selection, fleet.json's
// or --unit's), every stored key (`counts`) is still under a master key some
// unit holds, and still usable (a VALID CURRENT or OLD) on some unit.
// `units` is every unit of the instance (fleet.json), selected or not: a
// unit that is not selected is not changed but holds what it holds. A unit
// that did not answer is unknown: it may hold any master key or none (and a
// selected one may take the command although its answer was lost), so the
// verdict is computed both ways. A set immediate with a selected unit that
// did not answer is always INTERLOCK_UNVERIFIED: it would split the fleet's
// CURRENT keys. Returns FAILED_PRECONDITION
// (INTERLOCK) naming the WKIDs, key counts and the units considered when
// the change strands keys whatever the unknown units hold (also when it
// leaves a selected unit without its VALID CURRENT while keys are stored:
// no recover step brings that back), and
// (INTERLOCK_UNVERIFIED) naming the units that did not answer when the
// verdict depends on them.
absl::Status CheckInterlock(const std::vector<UnitObservation>& units, RegisterChange change,
                            const std::vector<WkidPairCount>& counts);

// CheckForcedChange decides a register change the operator forces
// (--force): OK when the interlock would allow it anyway (CheckInterlock on
// `units` with `counts`), or when `distinct_signers` administrators sign
// and that reaches the highest signature threshold of the selected units
// that answered. A change the interlock refuses (or cannot judge: `counts`
// holds the keystore's error) could destroy the only copy of a master key,
// and one administrator alone must not be able to do that (docs/cli.md,
// "Who may act alone"); the units themselves take it with one signature.
// Returns PERMISSION_DENIED (FORCE_NEEDS_SIGNATURE_THRESHOLD) naming the
// interlock's objection, the threshold, the unit and the signers otherwise.
absl::Status CheckForcedChange(const std::vector<UnitObservation>& units, RegisterChange change,
                               const absl::StatusOr<std::vector<WkidPairCount>>& counts,
                               size_t distinct_signers);

// CheckQuarantineHold returns OK unless `change` on the selected units of
// `units` (every unit of the instance, as for CheckInterlock) would leave no
// unit holding a master key that quarantined keys are under
// (`quarantined`: Keystore::CountQuarantined), while some unit holds it now.
// Returns FAILED_PRECONDITION (KEYS_QUARANTINED) naming the count and the
// WKID then: quarantined keys were set aside explicitly, to be kept, so
// --force does not override this; release them (hsmctl keys quarantine
// --release) first. Units that do not answer count as holding nothing
// (the message names them).
absl::Status CheckQuarantineHold(const std::vector<UnitObservation>& units, RegisterChange change,
                                 const std::vector<WkidPairCount>& quarantined);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_INTERLOCK_H_

// The register change guard: before an operator command changes a master
// key register or the administrators of the selected units, hsmctl asks
// whether the change would wedge the rotation the keystore's journal holds
// open (docs/rotation.md, "Register changes during a rotation"). A change
// that would leave the rotation unable to finish, or that would promote or
// commit different master keys on different units, is refused with a reason
// and the command that does the job safely (hsmctl recover, mk rotate
// --resume or --abort).
//
// CheckRegisterChange is a pure function of what was observed, so that every
// row of the table is tested without processes, and the model-based explorer
// calls the same function hsmctl does.
//
// Thread-safety: pure functions on values.
#ifndef HSMSIM_HOST_REGISTER_CHANGE_GUARD_H_
#define HSMSIM_HOST_REGISTER_CHANGE_GUARD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "host/fleet_manifest.h"
#include "host/keystore.h"
#include "host/rotation.h"

namespace hsmsim::host {

// The operator commands that change a master key register or the
// administrators of a unit.
enum class OperatorCommand {
  kLoadNew,        // mk load
  kCommitNew,      // mk commit
  kSetImmediate,   // mk setimm
  kClearNew,       // mk clrnew
  kClearCurrent,   // mk clrcur
  kClearOld,       // mk clrold
  kZeroize,        // zeroize
  kAddAdmin,       // admin add
  kRemoveAdmin,    // admin rm
  kSetThresholds,  // thresholds set
};
// OperatorCommandName returns the hsmctl command, e.g. "mk setimm".
std::string_view OperatorCommandName(OperatorCommand command);

// RequestedChange is one operator command and its arguments, as far as the
// guard needs them.
struct RequestedChange {
  OperatorCommand command = OperatorCommand::kAddAdmin;
  // kLoadNew: the VP (32 raw bytes) of the XOR of the parts to load;
  // kCommitNew: the VP the commit quotes. Empty when not known (the guard
  // then judges only what the units hold).
  std::string new_vp;
  // kRemoveAdmin: the name of the administrator to remove.
  std::string admin_name;
  // kSetThresholds: the signature threshold to set.
  uint32_t signature_threshold = 0;

  // Of returns the change `command` with no arguments.
  static RequestedChange Of(OperatorCommand command) {
    RequestedChange change;
    change.command = command;
    return change;
  }
  // WithNewVp, WithAdminName and WithSignatureThreshold return a copy with
  // that argument set.
  RequestedChange WithNewVp(std::string vp) const {
    RequestedChange change = *this;
    change.new_vp = std::move(vp);
    return change;
  }
  RequestedChange WithAdminName(std::string name) const {
    RequestedChange change = *this;
    change.admin_name = std::move(name);
    return change;
  }
  RequestedChange WithSignatureThreshold(uint32_t threshold) const {
    RequestedChange change = *this;
    change.signature_threshold = threshold;
    return change;
  }
};

// RegisterChangeVerdict is the guard's answer. `status` is OK when the
// change may go ahead; otherwise FAILED_PRECONDITION with reason
// WOULD_WEDGE_ROTATION (the open rotation could not finish after it) or
// NEW_VP_DIFFERS (the selected units hold different keys in NEW), and a
// message that names the units, registers and VPs involved and ends with
// `advice`.
struct RegisterChangeVerdict {
  absl::Status status;
  // What to do instead, as an operator instruction (empty when allowed).
  std::string advice;

  bool allowed() const { return status.ok(); }
};

// RotationOpen is true when `journal` holds a rotation that is not DONE.
bool RotationOpen(const std::optional<RotationJournal>& journal);

// CheckRegisterChange decides whether `change`, applied to every selected
// unit that answered (`units`; a unit that did not answer is not changed by
// the command either and is left out), is allowed given the rotation
// `journal` (std::nullopt when the fleet has no keystore or never rotated).
// The rules, per command, are the table in docs/rotation.md:
//  - mk commit and mk setimm are refused (NEW_VP_DIFFERS) when the units'
//    NEW registers hold different keys, and mk setimm also when some unit
//    could not take it while others would;
//  - with no open rotation but the units' CURRENT registers split by a set
//    immediate that reached some units only (FindSplitCurrent, recognized,
//    over `instance`: every unit of fleet.json, selected or not, when given;
//    else over `units`), every change is judged as during a rotation from
//    the split's source to its target whose re-encryption is done: only
//    what finishes it goes (so --unit cannot hide the split);
//  - with an open rotation from S to T, any change after which the rotation
//    could not finish (or abort) is refused (WOULD_WEDGE_ROTATION), with
//    the command that does the job safely.
// Units already in the state the command wants (a NEW register already
// empty, a unit already promoted) never make a refusal.
RegisterChangeVerdict CheckRegisterChange(const std::optional<RotationJournal>& journal,
                                          const std::vector<UnitObservation>& units,
                                          const RequestedChange& change,
                                          const std::vector<UnitObservation>& instance = {});

// CheckSelection refuses (UNIT_NOT_SELECTED) a mk setimm while some unit of
// `manifest` (fleet.json) is not selected (left out of fleet.json's
// selection, or of hsmctl --unit: FleetManifest::SelectOnly): set immediate
// changes the fleet's
// CURRENT master key, and a unit left out would keep its CURRENT while the
// others move on (key storage split between two master keys; found by the
// rotation explorer: hsmctl unit rm, then mk setimm). Units already promoted
// report "already", so selecting every unit is always safe. One set
// immediate of part of the fleet is allowed: a catch-up, where every unit
// left out answers (in `instance`: every unit of fleet.json observed, in any
// order; empty: none known) with a VALID CURRENT of one key, and every
// selected unit holds that key FULL_COMMITTED in NEW, or in CURRENT with no
// other committed key in NEW; and every stored key (`counts`, the
// keystore's keys per WKID, blob or pending blob) is under a key each unit
// caught up holds afterwards in CURRENT or OLD, so it can use every key
// (keys under another key, e.g. left in OLD of the other units by a set
// immediate by hand, need hsmctl keys upgrade on those units first)
// (a replaced or repaired unit brought back to the fleet's CURRENT master
// key). Every other command is allowed.
RegisterChangeVerdict CheckSelection(const FleetManifest& manifest, const RequestedChange& change,
                                     const std::vector<UnitObservation>& instance = {},
                                     const std::vector<WkidPairCount>& counts = {});

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_REGISTER_CHANGE_GUARD_H_

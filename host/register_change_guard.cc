#include "host/register_change_guard.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_join.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/master_key_id.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::host {
namespace {

RegisterChangeVerdict Allowed() { return RegisterChangeVerdict{absl::OkStatus(), ""}; }

RegisterChangeVerdict Refused(std::string_view reason, std::string problem, std::string advice) {
  return RegisterChangeVerdict{
      Error(absl::StatusCode::kFailedPrecondition, reason, StrCat(problem, ". ", advice)),
      std::move(advice)};
}

bool HoldsFullKey(const v1::MasterKeyRegisterInfo& r) {
  return r.state() == v1::REGISTER_FULL_UNCOMMITTED || r.state() == v1::REGISTER_FULL_COMMITTED ||
         r.state() == v1::REGISTER_VALID;
}

// Answering returns the units that answered.
std::vector<const UnitObservation*> Answering(const std::vector<UnitObservation>& units) {
  std::vector<const UnitObservation*> out;
  for (const UnitObservation& u : units) {
    if (u.info.ok()) out.push_back(&u);
  }
  return out;
}

// CheckNewRegistersAgree refuses (NEW_VP_DIFFERS) when the units' NEW
// registers in one of `states` hold different keys, and (VP_MISMATCH) when
// `quoted` is not empty and one of them holds another key than `quoted`.
RegisterChangeVerdict CheckNewRegistersAgree(const std::vector<const UnitObservation*>& up,
                                             std::initializer_list<v1::RegisterState> states,
                                             std::string_view quoted, std::string_view what) {
  std::vector<std::string> listed;
  std::vector<std::string> differing;
  std::string first;
  bool differ = false;
  for (const UnitObservation* u : up) {
    const auto& nw = u->info->new_register();
    if (std::find(states.begin(), states.end(), nw.state()) == states.end()) continue;
    const std::string& vp = nw.verification_pattern();
    listed.push_back(StrCat(u->unit.name, " NEW VP ", ShortId(vp)));
    if (listed.size() == 1) first = vp;
    differ = differ || !SameId(vp, first);
    if (!quoted.empty() && !SameId(vp, quoted)) {
      differing.push_back(StrCat(u->unit.name, " (NEW VP ", ShortId(vp), ")"));
    }
  }
  if (differ) {
    return Refused(
        reason::kNewVpDiffers,
        StrCat("the selected units hold different keys in NEW (", absl::StrJoin(listed, ", "),
               "); ", what, " would give units different master keys"),
        "Nothing was changed. Clear NEW on the units holding the wrong key and load "
        "the custodians' parts there (hsmctl mk clrnew, then hsmctl mk load --parts "
        "..., with only those units selected)");
  }
  if (!differing.empty()) {
    return Refused(
        reason::kVpMismatch,
        StrCat("unit(s) ", absl::StrJoin(differing, ", "), " hold another key than the VP ",
               ShortId(quoted), " the custodians' parts give"),
        "Nothing was changed. Someone loaded another key: clear NEW there (hsmctl mk "
        "clrnew) and load the custodians' parts again (hsmctl mk load --parts ...)");
  }
  return Allowed();
}

// UnitsWhere returns the names of the units in `up` for which `pred` holds.
template <typename Pred>
std::vector<std::string> UnitsWhere(const std::vector<const UnitObservation*>& up, Pred pred) {
  std::vector<std::string> out;
  for (const UnitObservation* u : up) {
    if (pred(*u)) out.push_back(u->unit.name);
  }
  return out;
}

// Rotation is what the guard knows of the open rotation.
struct Rotation {
  const RotationJournal& journal;
  const std::vector<const UnitObservation*>& up;
  // True for the set immediate that reached some units only, outside a
  // journaled rotation (FindSplitCurrent): `journal` is made up for it.
  bool unjournaled = false;

  UnitRotationState StateOf(const UnitObservation& u) const {
    return ClassifyUnit(u, journal.source_vp, journal.target_vp);
  }
  bool AnyPromoted() const {
    return std::any_of(up.begin(), up.end(), [&](const UnitObservation* u) {
      return StateOf(*u) == UnitRotationState::kPromoted;
    });
  }
  std::string Name() const {
    if (unjournaled) {
      return StrCat("the set immediate from ", ShortId(journal.source_vp), " to ",
                    ShortId(journal.target_vp), " that reached some units only");
    }
    return StrCat("the rotation from ", ShortId(journal.source_vp), " to ",
                  ShortId(journal.target_vp), " (journal phase ", RotationPhaseName(journal.phase),
                  ")");
  }
  // FinishOrAbort: the advice when the change has to wait for the rotation.
  std::string FinishOrAbort() const {
    if (unjournaled) {
      return "Finish it first: hsmctl recover --apply --sign ... (hsmctl recover shows what it "
             "does)";
    }
    std::string advice =
        "Finish the rotation first (hsmctl recover shows the safe action, hsmctl recover "
        "--apply performs it)";
    if (!AnyPromoted() && journal.phase != RotationPhase::kFinalizing) {
      advice += ", or abandon it (hsmctl mk rotate --abort: no unit has promoted it yet)";
    }
    return advice;
  }
};

RegisterChangeVerdict GuardSetImmediate(const Rotation& r) {
  auto committed = [](const UnitObservation& u) {
    return u.info->new_register().state() == v1::REGISTER_FULL_COMMITTED;
  };
  const std::vector<std::string> other_key = UnitsWhere(r.up, [&](const UnitObservation& u) {
    return committed(u) &&
           !SameId(u.info->new_register().verification_pattern(), r.journal.target_vp);
  });
  if (!other_key.empty()) {
    return Refused(
        reason::kWouldWedgeRotation,
        StrCat("unit(s) ", absl::StrJoin(other_key, ", "), " hold another key than the target of ",
               r.Name(), " in NEW; set immediate would make it their CURRENT"),
        StrCat("Nothing was changed. ", r.FinishOrAbort()));
  }
  if (r.journal.phase != RotationPhase::kReencrypting) return Allowed();
  const std::vector<std::string> would_promote = UnitsWhere(r.up, committed);
  if (would_promote.empty()) return Allowed();
  return Refused(
      reason::kWouldWedgeRotation,
      StrCat(r.Name(), " has re-encrypted ", r.journal.keys_done, " of ", r.journal.keys_total,
             " key(s); set immediate on ", absl::StrJoin(would_promote, ", "),
             " now would put the keys not yet re-encrypted under OLD"),
      "Nothing was changed. Finish re-encryption: hsmctl mk rotate --resume --sign ... (or hsmctl "
      "recover --apply), which sets immediate on every unit once key storage is ready");
}

RegisterChangeVerdict GuardClearNew(const Rotation& r) {
  if (r.journal.phase == RotationPhase::kFinalizing) return Allowed();
  const std::vector<std::string> holding = UnitsWhere(r.up, [&](const UnitObservation& u) {
    return r.StateOf(u) != UnitRotationState::kPromoted && HoldsFullKey(u.info->new_register()) &&
           SameId(u.info->new_register().verification_pattern(), r.journal.target_vp);
  });
  if (holding.empty()) return Allowed();
  return Refused(
      reason::kWouldWedgeRotation,
      StrCat("unit(s) ", absl::StrJoin(holding, ", "), " hold the target key of ", r.Name(),
             " in NEW and are not promoted; clearing it would need the "
             "custodians' key parts again"),
      StrCat("Nothing was changed. ", r.FinishOrAbort()));
}

// GuardClearRegister refuses to clear CURRENT or OLD (or zeroize) on a unit
// where that register holds the rotation's source or target key.
RegisterChangeVerdict GuardClearRegister(const Rotation& r, std::string_view what, bool current,
                                         bool old) {
  auto holds_rotation_key = [&](const v1::MasterKeyRegisterInfo& reg) {
    return HoldsFullKey(reg) && (SameId(reg.verification_pattern(), r.journal.source_vp) ||
                                 SameId(reg.verification_pattern(), r.journal.target_vp));
  };
  const std::vector<std::string> holding = UnitsWhere(r.up, [&](const UnitObservation& u) {
    return (current && holds_rotation_key(u.info->current_register())) ||
           (old && holds_rotation_key(u.info->old_register()));
  });
  if (holding.empty()) return Allowed();
  return Refused(reason::kWouldWedgeRotation,
                 StrCat(what, " on ", absl::StrJoin(holding, ", "), " would remove a key of ",
                        r.Name(), " that key storage still needs"),
                 StrCat("Nothing was changed. ", r.FinishOrAbort()));
}

// GuardNewKey refuses to load or commit, during a rotation, a key other than
// its target (the quoted VP, or what the units hold in NEW).
RegisterChangeVerdict GuardNewKey(const Rotation& r, const RequestedChange& change) {
  std::string vp = change.new_vp;
  if (vp.empty() && change.command == OperatorCommand::kCommitNew) {
    // Without a quoted VP, each unit commits what it holds.
    for (const UnitObservation* u : r.up) {
      const auto& nw = u->info->new_register();
      if (nw.state() == v1::REGISTER_FULL_UNCOMMITTED &&
          !SameId(nw.verification_pattern(), r.journal.target_vp)) {
        vp = nw.verification_pattern();
      }
    }
  }
  if (vp.empty() || SameId(vp, r.journal.target_vp)) return Allowed();
  return Refused(
      reason::kWouldWedgeRotation,
      StrCat(OperatorCommandName(change.command), " of the key with VP ", ShortId(vp), " during ",
             r.Name(), ": while it is open NEW may only hold its target key"),
      StrCat("Nothing was changed. ", r.FinishOrAbort(), "; then load the next key"));
}

// CommonAdministrators counts the administrators (by key id) every unit in
// `up` holds, leaving out the one called `removed` (empty: none).
size_t CommonAdministrators(const std::vector<const UnitObservation*>& up,
                            std::string_view removed) {
  std::set<std::string> common;
  bool first = true;
  for (const UnitObservation* u : up) {
    std::set<std::string> mine;
    for (const auto& a : u->info->administrators()) {
      if (a.name() != removed) mine.insert(a.key_id());
    }
    if (first) {
      common = std::move(mine);
      first = false;
      continue;
    }
    std::set<std::string> both;
    for (const std::string& id : common) {
      if (mine.count(id)) both.insert(id);
    }
    common = std::move(both);
  }
  return common.size();
}

// GuardSigners refuses an administrator change after which the units no
// longer share enough administrators to sign the rotation's set immediate.
RegisterChangeVerdict GuardSigners(const Rotation& r, const RequestedChange& change) {
  if (r.up.empty() || r.journal.phase == RotationPhase::kFinalizing) return Allowed();
  uint32_t threshold = change.signature_threshold;
  if (change.command == OperatorCommand::kRemoveAdmin) {
    for (const UnitObservation* u : r.up) {
      threshold = std::max(threshold, u->info->signature_threshold());
    }
  }
  const size_t common = CommonAdministrators(
      r.up, change.command == OperatorCommand::kRemoveAdmin ? change.admin_name : "");
  if (common >= threshold) return Allowed();
  return Refused(reason::kWouldWedgeRotation,
                 StrCat("after ", OperatorCommandName(change.command), " the units would share ",
                        common, " administrator(s), fewer than the signature threshold ", threshold,
                        " that set immediate of ", r.Name(), " needs"),
                 StrCat("Nothing was changed. ", r.FinishOrAbort()));
}

RegisterChangeVerdict GuardDuringRotation(const Rotation& r, const RequestedChange& change) {
  switch (change.command) {
    case OperatorCommand::kSetImmediate:
      return GuardSetImmediate(r);
    case OperatorCommand::kClearNew:
      return GuardClearNew(r);
    case OperatorCommand::kClearCurrent:
      return GuardClearRegister(r, "clearing CURRENT", true, false);
    case OperatorCommand::kClearOld:
      return GuardClearRegister(r, "clearing OLD", false, true);
    case OperatorCommand::kZeroize:
      return GuardClearRegister(r, "zeroizing", true, true);
    case OperatorCommand::kLoadNew:
    case OperatorCommand::kCommitNew:
      return GuardNewKey(r, change);
    case OperatorCommand::kRemoveAdmin:
    case OperatorCommand::kSetThresholds:
      return GuardSigners(r, change);
    case OperatorCommand::kAddAdmin:
      break;
  }
  return Allowed();
}

}  // namespace

std::string_view OperatorCommandName(OperatorCommand command) {
  switch (command) {
    case OperatorCommand::kLoadNew:
      return "mk load";
    case OperatorCommand::kCommitNew:
      return "mk commit";
    case OperatorCommand::kSetImmediate:
      return "mk setimm";
    case OperatorCommand::kClearNew:
      return "mk clrnew";
    case OperatorCommand::kClearCurrent:
      return "mk clrcur";
    case OperatorCommand::kClearOld:
      return "mk clrold";
    case OperatorCommand::kZeroize:
      return "zeroize";
    case OperatorCommand::kAddAdmin:
      return "admin add";
    case OperatorCommand::kRemoveAdmin:
      return "admin rm";
    case OperatorCommand::kSetThresholds:
      return "thresholds set";
  }
  return "unknown command";
}

// CheckEveryUnitCanPromote refuses (NEW_VP_DIFFERS) a set immediate that
// some answering unit cannot take while others can: a unit whose NEW does
// not hold the committed key the others hold, and whose CURRENT is not that
// key already, would keep its CURRENT while the others move on, and key
// storage would then be split between two master keys (issue 11, input 4;
// found by the rotation explorer after a mk load lost on one unit).
static RegisterChangeVerdict CheckEveryUnitCanPromote(
    const std::vector<const UnitObservation*>& up) {
  std::string target;
  for (const UnitObservation* u : up) {
    const auto& nw = u->info->new_register();
    if (nw.state() == v1::REGISTER_FULL_COMMITTED) target = nw.verification_pattern();
  }
  if (target.empty()) return Allowed();
  std::vector<std::string> behind;
  for (const UnitObservation* u : up) {
    const auto& nw = u->info->new_register();
    const auto& cur = u->info->current_register();
    const bool can =
        nw.state() == v1::REGISTER_FULL_COMMITTED && SameId(nw.verification_pattern(), target);
    const bool already =
        cur.state() == v1::REGISTER_VALID && SameId(cur.verification_pattern(), target);
    if (!can && !already) {
      behind.push_back(StrCat(u->unit.name, " (NEW ", wire::RegisterStateName(nw.state()), ")"));
    }
  }
  if (behind.empty()) return Allowed();
  return Refused(reason::kNewVpDiffers,
                 StrCat("set immediate would promote NEW VP ", ShortId(target),
                        " on some units but not on ", absl::StrJoin(behind, ", "),
                        ", which do not hold it committed in NEW: the units would end with "
                        "different CURRENT master keys"),
                 "Nothing was changed. Load and commit the same parts on those units first "
                 "(hsmctl mk load --parts ..., hsmctl mk commit, with only those units "
                 "selected), or clear NEW everywhere (hsmctl mk clrnew)");
}

bool RotationOpen(const std::optional<RotationJournal>& journal) {
  return journal.has_value() && journal->phase != RotationPhase::kDone;
}

RegisterChangeVerdict CheckRegisterChange(const std::optional<RotationJournal>& journal,
                                          const std::vector<UnitObservation>& units,
                                          const RequestedChange& change,
                                          const std::vector<UnitObservation>& instance) {
  const std::vector<const UnitObservation*> up = Answering(units);
  if (change.command == OperatorCommand::kCommitNew) {
    RegisterChangeVerdict agree =
        CheckNewRegistersAgree(up, {v1::REGISTER_FULL_UNCOMMITTED, v1::REGISTER_FULL_COMMITTED},
                               change.new_vp, "committing them");
    if (!agree.allowed()) return agree;
  }
  if (change.command == OperatorCommand::kSetImmediate) {
    RegisterChangeVerdict agree =
        CheckNewRegistersAgree(up, {v1::REGISTER_FULL_COMMITTED}, "", "set immediate");
    if (!agree.allowed()) return agree;
    RegisterChangeVerdict every = CheckEveryUnitCanPromote(up);
    if (!every.allowed()) return every;
  }
  if (RotationOpen(journal)) return GuardDuringRotation(Rotation{*journal, up}, change);
  // With no rotation open, units split by a set immediate that reached some
  // of them only are guarded as if the rotation from the split's source to
  // its target were journaled and re-encrypted: only what finishes it goes.
  const std::optional<SplitCurrent> split = FindSplitCurrent(instance.empty() ? units : instance);
  if (!split.has_value() || !split->recognized()) return Allowed();
  RotationJournal unjournaled;
  unjournaled.phase = RotationPhase::kReencrypted;
  unjournaled.source_vp = split->source_vp;
  unjournaled.target_vp = split->target_vp;
  return GuardDuringRotation(Rotation{unjournaled, up, true}, change);
}

namespace {

// IsCatchUp tells whether a set immediate on the selected units of
// `instance` only brings them to the VALID CURRENT key that every unit left
// out holds (CheckSelection).
bool IsCatchUp(const std::vector<UnitObservation>& instance,
               const std::vector<WkidPairCount>& counts) {
  std::string fleet_current;
  bool any_left_out = false;
  for (const UnitObservation& u : instance) {
    if (u.unit.selected) continue;
    if (!u.info.ok() || u.info->current_register().state() != v1::REGISTER_VALID) return false;
    const std::string& vp = u.info->current_register().verification_pattern();
    if (any_left_out && vp != fleet_current) return false;
    fleet_current = vp;
    any_left_out = true;
  }
  if (!any_left_out) return false;
  // Every stored key must stay usable on each unit caught up: through a
  // blob (or pending blob) under its CURRENT or OLD after the change.
  auto serves_every_key = [&](const std::vector<std::string>& vps) {
    for (const WkidPairCount& c : counts) {
      if (c.count == 0) continue;
      bool usable = false;
      for (const std::string& vp : vps) {
        usable = usable || SameId(c.wkid, WkidOfVp(vp)) ||
                 (!c.pending_wkid.empty() && SameId(c.pending_wkid, WkidOfVp(vp)));
      }
      if (!usable) return false;
    }
    return true;
  };
  for (const UnitObservation& u : instance) {
    if (!u.unit.selected) continue;
    if (!u.info.ok()) return false;
    const bool current_is_it = u.info->current_register().state() == v1::REGISTER_VALID &&
                               u.info->current_register().verification_pattern() == fleet_current;
    const bool new_is_it = u.info->new_register().state() == v1::REGISTER_FULL_COMMITTED &&
                           u.info->new_register().verification_pattern() == fleet_current;
    // A unit already at it must not have another key to promote.
    const bool stays =
        current_is_it && u.info->new_register().state() != v1::REGISTER_FULL_COMMITTED;
    if (!stays && !new_is_it) return false;
    // After the change: CURRENT is the fleet's; OLD is its CURRENT before a
    // set immediate, or stays what it is.
    const v1::MasterKeyRegisterInfo& old_after =
        stays ? u.info->old_register() : u.info->current_register();
    std::vector<std::string> held = {fleet_current};
    if (old_after.state() == v1::REGISTER_VALID) held.push_back(old_after.verification_pattern());
    if (!serves_every_key(held)) return false;
  }
  return true;
}

}  // namespace

RegisterChangeVerdict CheckSelection(const FleetManifest& manifest, const RequestedChange& change,
                                     const std::vector<UnitObservation>& instance,
                                     const std::vector<WkidPairCount>& counts) {
  if (change.command != OperatorCommand::kSetImmediate) return Allowed();
  const std::vector<std::string> left_out = manifest.LeftOut();
  if (left_out.empty() || IsCatchUp(instance, counts)) return Allowed();
  return Refused(
      reason::kUnitNotSelected,
      StrCat("mk setimm changes the fleet's CURRENT master key, but unit(s) ",
             absl::StrJoin(left_out, ", "),
             " are not selected: they would keep their CURRENT while the selected "
             "units move on (only a catch-up to the CURRENT key every unit left out holds, with "
             "every stored key under it, may leave units out; keys under another key need "
             "hsmctl keys upgrade first)"),
      StrCat("Nothing was changed. Select every unit first (", manifest.SelectAdvice(left_out),
             "); units that already hold the new key in CURRENT report \"already\""));
}

}  // namespace hsmsim::host

#include "host/recovery.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_join.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/master_key_id.h"

namespace hsmsim::host {
namespace {}  // namespace

std::string_view RecoverySituationName(RecoverySituation s) {
  switch (s) {
    case RecoverySituation::kNothingToDo:
      return "NOTHING_TO_DO";
    case RecoverySituation::kReadyToRotate:
      return "READY_TO_ROTATE";
    case RecoverySituation::kFixAndRotateAgain:
      return "FIX_AND_ROTATE_AGAIN";
    case RecoverySituation::kUnitsUnreachable:
      return "UNITS_UNREACHABLE";
    case RecoverySituation::kReencryptionUnfinished:
      return "REENCRYPTION_UNFINISHED";
    case RecoverySituation::kSetImmediateAll:
      return "SET_IMMEDIATE_ALL";
    case RecoverySituation::kSetImmediateRest:
      return "SET_IMMEDIATE_REST";
    case RecoverySituation::kSetImmediateUnfinished:
      return "SET_IMMEDIATE_UNFINISHED";
    case RecoverySituation::kReloadNewRegister:
      return "RELOAD_NEW_REGISTER";
    case RecoverySituation::kFinalizeKeystore:
      return "FINALIZE_KEYSTORE";
    case RecoverySituation::kKeysAtRisk:
      return "KEYS_AT_RISK";
    case RecoverySituation::kKeysUnreadable:
      return "KEYS_UNREADABLE";
  }
  return "UNKNOWN";
}

std::vector<std::string> HeldWkids(const std::vector<UnitObservation>& units) {
  std::vector<std::string> held;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) continue;
    for (const auto* r :
         {&u.info->new_register(), &u.info->current_register(), &u.info->old_register()}) {
      if (!r->verification_pattern().empty()) held.push_back(WkidOfVp(r->verification_pattern()));
    }
  }
  std::sort(held.begin(), held.end());
  held.erase(std::unique(held.begin(), held.end()), held.end());
  return held;
}

std::vector<std::pair<std::string, int64_t>> KeysAtRisk(const std::vector<WkidPairCount>& counts,
                                                        const std::vector<std::string>& held) {
  auto is_held = [&](const std::string& w) {
    return !w.empty() && std::any_of(held.begin(), held.end(),
                                     [&](const std::string& h) { return SameId(h, w); });
  };
  std::map<std::string, int64_t> risk;
  for (const WkidPairCount& c : counts) {
    if (!is_held(c.wkid) && !is_held(c.pending_wkid)) risk[ToHex(c.wkid)] += c.count;
  }
  return {risk.begin(), risk.end()};
}

namespace {

// UnreachableUnitText names a unit that did not answer, where it was
// asked and why: "unit2 at 127.0.0.1:1 (UNIT_UNREACHABLE: connection
// refused)", without repeating "unit NAME at ENDPOINT" from the message.
std::string UnreachableUnitText(const UnitObservation& u) {
  std::string message(u.info.status().message());
  const std::string prefix = StrCat("unit ", u.unit.name, " at ", u.unit.endpoint, ": ");
  if (message.starts_with(prefix)) message.erase(0, prefix.size());
  return StrCat(u.unit.name, u.unit.endpoint.empty() ? "" : StrCat(" at ", u.unit.endpoint), " (",
                ReasonOf(u.info.status()), ": ", message, ")");
}

// DecideUnreachable decides when a unit does not answer: it may hold any
// master key, so until it answers nothing can be judged, and the one thing
// to fix is that unit. Taking it out of the selection is named only where
// it is safe: never while a rotation is open (the rotation must reach
// every unit of the instance). Returns false when every unit answered.
bool DecideUnreachable(const std::optional<RotationJournal>& journal,
                       const std::vector<UnitObservation>& units, RecoveryDecision& d) {
  std::vector<std::string> named;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) named.push_back(UnreachableUnitText(u));
  }
  if (named.empty()) return false;
  const bool rotating = journal.has_value() && journal->phase != RotationPhase::kDone;
  const std::string names = absl::StrJoin(d.unreachable_units, ", ");
  d.situation = RecoverySituation::kUnitsUnreachable;
  d.observed = StrCat(rotating ? StrCat("rotation ", RotationPhaseName(journal->phase), "; ")
                               : std::string("no rotation in progress; "),
                      "unit(s) do not answer: ", absl::StrJoin(named, "; "));
  const std::string restart = d.unreachable_units.size() == 1
                                  ? StrCat("hsmctl fleet restart ", d.unreachable_units[0])
                                  : std::string("hsmctl fleet restart NAME, for each");
  d.action = StrCat("Start ", names, ": ", restart,
                    " (a unit this host launched), or fix its address or its host; then run "
                    "hsmctl recover again. Until it answers nothing can be judged: it may hold "
                    "any master key. ");
  d.action += rotating ? StrCat(
                             "Do not take it out of the selection: the rotation must reach "
                             "every unit of the instance, and mk rotate --resume and recover "
                             "--apply wait for it.")
                       : StrCat(
                             "If it is gone for good, replace it (hsmctl unit replace NAME) and "
                             "set it up like the others; taking it out of the selection (hsmctl "
                             "unit rm NAME) lets other commands run on the rest, but mk rotate "
                             "needs every unit of the instance.");
  return true;
}

// DecideKeysAtRisk decides when stored keys are under a master key no unit
// holds: whatever else is true, the only safe action is to stop and clear
// nothing. Returns false, leaving the situation alone, otherwise.
bool DecideKeysAtRisk(RecoveryDecision& d) {
  if (d.keys_at_risk.empty()) return false;
  d.situation = RecoverySituation::kKeysAtRisk;
  int64_t total = 0;
  std::string list;
  for (const auto& [wkid, n] : d.keys_at_risk) {
    total += n;
    list += StrCat(list.empty() ? "" : "; ", n, " under WKID ", wkid);
  }
  d.observed = StrCat(total,
                      " stored key(s) are under a master key that no unit holds in NEW, "
                      "CURRENT or OLD (",
                      list, ")");
  d.action =
      "STOP. Do not clear, zeroize or promote anything. Find a unit (or a backup of one) that "
      "still holds that master key, or reload it from its key parts into NEW on a unit, then "
      "run hsmctl recover again.";
  return true;
}

// DecideUnknownUnits decides when a unit answers with another unit id than
// fleet.json pins (UNIT_ID_MISMATCH): its registers say nothing about the
// unit the rotation counts on, so nothing can be judged until the operator
// restores it or replaces it on purpose. Returns false otherwise.
bool DecideUnknownUnits(const std::vector<UnitObservation>& units, RecoveryDecision& d) {
  std::vector<std::string> unknown;
  for (const UnitObservation& u : units) {
    if (!u.info.ok() && ReasonOf(u.info.status()) == reason::kUnitIdMismatch) {
      unknown.push_back(u.unit.name);
    }
  }
  if (unknown.empty()) return false;
  d.situation = RecoverySituation::kFixAndRotateAgain;
  d.observed = StrCat("unit(s) ", absl::StrJoin(unknown, ", "),
                      " answer with another unit id than fleet.json pins: not the unit(s) the "
                      "fleet knows (started blank where their state was?)");
  d.action = StrCat(
      "Nothing can be judged safely yet. Restore the state directory of ",
      absl::StrJoin(unknown, ", "),
      " and restart it (hsmctl fleet restart NAME), or replace it on purpose (hsmctl fleet "
      "restart NAME --new-unit, or hsmctl unit replace NAME) and set the new unit up like the "
      "others (administrators, thresholds); then run hsmctl recover again.");
  return true;
}

// DecideBlankUnits decides, during a rotation, when a unit is in imprint
// mode (a new or replaced unit: no administrators, no master keys). It
// cannot accept key parts (they need its administrators' signatures), so
// reloading them is not the next step: setting it up is. Returns false
// otherwise.
bool DecideBlankUnits(const RotationJournal& journal, const std::vector<UnitObservation>& units,
                      RecoveryDecision& d) {
  std::vector<std::string> blank;
  for (const UnitObservation& u : units) {
    if (u.info.ok() && u.info->mode() == v1::MODE_IMPRINT) blank.push_back(u.unit.name);
  }
  if (blank.empty()) return false;
  d.situation = RecoverySituation::kFixAndRotateAgain;
  d.observed = StrCat("rotation ", RotationPhaseName(journal.phase), "; unit(s) ",
                      absl::StrJoin(blank, ", "),
                      " are in imprint mode (a new unit: no administrators, no master keys), so "
                      "they cannot accept key parts");
  d.action = StrCat(
      "Set up ", absl::StrJoin(blank, ", "),
      " like the other units first: hsmctl admin add (the same administrators), then hsmctl "
      "thresholds set (signed) to leave imprint mode. Then run hsmctl recover again: it names "
      "the key parts to reload on them.");
  return true;
}

// SortUnitsByRotationState adds each unit's name to d.units_to_promote
// (ready), d.units_promoted or d.units_to_reload (NEW lost) by its place in
// the rotation from `source_vp` to `target_vp`; a unit in any other state
// goes to `other` when it is given, else to d.units_to_reload.
void SortUnitsByRotationState(const std::vector<UnitObservation>& units, std::string_view source_vp,
                              std::string_view target_vp, RecoveryDecision& d,
                              std::vector<std::string>* other) {
  for (const UnitObservation& u : units) {
    switch (ClassifyUnit(u, source_vp, target_vp)) {
      case UnitRotationState::kReady:
        d.units_to_promote.push_back(u.unit.name);
        break;
      case UnitRotationState::kPromoted:
        d.units_promoted.push_back(u.unit.name);
        break;
      case UnitRotationState::kNewLost:
        d.units_to_reload.push_back(u.unit.name);
        break;
      default:
        (other != nullptr ? *other : d.units_to_reload).push_back(u.unit.name);
        break;
    }
  }
}

// DecideSplitCurrent decides, with no rotation in progress, when the units'
// CURRENT registers hold different master keys (issue 11, input 4: a mk
// setimm that reached some units only). In the shape FindSplitCurrent
// recognizes, recover --apply journals a rotation from the split's source to
// its target and finishes it; in any other shape nothing can be judged by
// hsmctl. Returns false when every CURRENT agrees.
bool DecideSplitCurrent(const std::vector<UnitObservation>& units,
                        const std::vector<WkidPairCount>& counts, RecoveryDecision& d) {
  const std::optional<SplitCurrent> split = FindSplitCurrent(units);
  if (!split.has_value()) return false;
  const std::string listed = absl::StrJoin(split->units, ", ");
  std::vector<std::string> other;
  if (split->recognized()) {
    SortUnitsByRotationState(units, split->source_vp, split->target_vp, d, &other);
  }
  if (!split->recognized() || !other.empty()) {
    d.situation = RecoverySituation::kFixAndRotateAgain;
    d.observed = StrCat(
        "no rotation in progress, but the units' CURRENT registers hold different "
        "master keys (",
        listed, ")",
        other.empty()
            ? std::string()
            : StrCat("; ", absl::StrJoin(other, ", "), " hold neither key in a VALID CURRENT"));
    d.action =
        "hsmctl cannot tell which key is the fleet's. Find the key the stored keys are under "
        "(hsmctl keys list, hsmctl status), load its parts into NEW on the other units and set "
        "immediate there (with only those units selected); then run hsmctl recover again.";
    return true;
  }
  // Keys under a third master key (the OLD of the units not yet promoted,
  // say) would be left under a key no unit holds once every unit promoted.
  const std::vector<Finding> third =
      PrecheckKeystore(counts, WkidOfVp(split->source_vp), WkidOfVp(split->target_vp));
  if (!third.empty()) {
    d.situation = RecoverySituation::kFixAndRotateAgain;
    d.observed = StrCat("no rotation journaled, but a set immediate from ",
                        ShortId(split->source_vp), " to ", ShortId(split->target_vp),
                        " did not finish (", listed, "); ", third[0].status.message());
    d.action = StrCat(
        "Finishing it now would leave those keys under a master key no unit holds. Re-encrypt "
        "them first on the units that hold their key in OLD and ",
        ShortId(split->source_vp),
        " in CURRENT (select only those units, hsmctl keys upgrade), select every unit again "
        "(hsmctl unit add NAME), then run hsmctl recover again.");
    return true;
  }
  d.situation = RecoverySituation::kSetImmediateUnfinished;
  d.source_vp = split->source_vp;
  d.target_vp = split->target_vp;
  const std::string s = ShortId(split->source_vp);
  const std::string t = ShortId(split->target_vp);
  std::vector<std::string> behind = d.units_to_promote;
  behind.insert(behind.end(), d.units_to_reload.begin(), d.units_to_reload.end());
  d.observed =
      StrCat("no rotation journaled, but a set immediate from ", s, " to ", t,
             " did not finish: unit(s) ", absl::StrJoin(d.units_promoted, ", "), " promoted ", t,
             ", unit(s) ", absl::StrJoin(behind, ", "), " still CURRENT ", s);
  d.action = StrCat(
      "Run hsmctl recover --apply --sign ...: it journals this as a rotation from ", s, " to ", t,
      " and finishes it (re-encrypts key storage on the units not yet promoted, sets immediate "
      "on them, finalizes the keystore).");
  if (!d.units_to_reload.empty()) {
    d.action += StrCat(" Unit(s) ", absl::StrJoin(d.units_to_reload, ", "), " no longer hold ", t,
                       " committed in NEW: pass its key parts (--parts F1,F2[,F3]) to reload it "
                       "there first.");
  }
  return true;
}

// ReadyNewVp returns the VP every unit holds FULL_COMMITTED in NEW when it
// is one key and not the key of every unit's VALID CURRENT (a rotation may
// start), else empty.
std::string ReadyNewVp(const std::vector<UnitObservation>& units) {
  std::string vp;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) return "";
    const v1::MasterKeyRegisterInfo& nw = u.info->new_register();
    const v1::MasterKeyRegisterInfo& cur = u.info->current_register();
    if (nw.state() != v1::REGISTER_FULL_COMMITTED || cur.state() != v1::REGISTER_VALID ||
        nw.verification_pattern().empty() ||
        nw.verification_pattern() == cur.verification_pattern() ||
        (!vp.empty() && vp != nw.verification_pattern())) {
      return "";
    }
    vp = nw.verification_pattern();
  }
  return vp;
}

// DecideIdle decides with no rotation in progress: the pre-check findings
// say whether anything needs fixing; with none, a NEW committed everywhere
// makes the fleet ready to rotate, unless stored keys under a third key
// would stop mk rotate (PrecheckKeystore).
void DecideIdle(const std::vector<UnitObservation>& units, const std::vector<WkidPairCount>& counts,
                std::vector<Finding> findings, RecoveryDecision& d) {
  const std::string target = findings.empty() ? ReadyNewVp(units) : std::string();
  if (!target.empty()) {
    const std::string source = units[0].info->current_register().verification_pattern();
    findings = PrecheckKeystore(counts, WkidOfVp(source), WkidOfVp(target));
    if (findings.empty()) {
      d.situation = RecoverySituation::kReadyToRotate;
      d.source_vp = source;
      d.target_vp = target;
      d.units_to_promote.clear();
      for (const UnitObservation& u : units) d.units_to_promote.push_back(u.unit.name);
      d.observed = StrCat("no rotation in progress; every unit holds ", ShortId(target),
                          " FULL_COMMITTED in NEW and ", ShortId(source), " VALID in CURRENT");
      d.action = StrCat("Nothing to recover. The next step is the rotation from ", ShortId(source),
                        " to ", ShortId(target),
                        ": hsmctl mk rotate --sign ... (--dry-run shows "
                        "what it would do).");
      return;
    }
  }
  if (!findings.empty()) {
    d.situation = RecoverySituation::kFixAndRotateAgain;
    d.observed = StrCat("no rotation in progress; ", findings.size(),
                        " pre-check(s) fail, first: ", findings[0].status.message());
    d.action = "Nothing changed. Fix the conditions hsmctl mk rotate reports, then run it again.";
  } else {
    d.situation = RecoverySituation::kNothingToDo;
    d.observed = "no rotation in progress; the fleet is consistent";
    d.action = "Nothing to do.";
  }
}

// DecideInProgress decides for a journaled rotation not yet DONE, from each
// unit's place in it (every unit answered).
void DecideInProgress(const RotationJournal& journal, const std::vector<UnitObservation>& units,
                      RecoveryDecision& d) {
  d.source_vp = journal.source_vp;
  d.target_vp = journal.target_vp;
  SortUnitsByRotationState(units, journal.source_vp, journal.target_vp, d, nullptr);
  d.abort_possible = d.units_promoted.empty() && journal.phase != RotationPhase::kFinalizing;
  if (!d.units_to_reload.empty()) {
    d.situation = RecoverySituation::kReloadNewRegister;
    d.observed = StrCat("rotation ", RotationPhaseName(journal.phase), "; unit(s) ",
                        absl::StrJoin(d.units_to_reload, ", "),
                        " no longer hold the target key in NEW (lost or different)");
    d.action = StrCat("Do not promote ", absl::StrJoin(d.units_to_reload, ", "),
                      ". Reload the same key parts on them first: hsmctl recover --apply "
                      "--parts F1,F2[,F3] --sign ... (it checks the parts give the target VP "
                      "before loading), then the rotation continues.");
    if (d.abort_possible) {
      d.action +=
          " If those key parts are gone, abandon the rotation instead: hsmctl mk rotate "
          "--abort (no unit has promoted it; every key keeps its blob under CURRENT).";
    }
  } else if (d.units_to_promote.empty()) {
    d.situation = RecoverySituation::kFinalizeKeystore;
    d.observed =
        journal.phase == RotationPhase::kReencrypting
            ? StrCat("every unit already promoted the target key, but re-encryption had done ",
                     journal.keys_done, " of ", journal.keys_total,
                     " key(s); the rest are under every unit's OLD")
            : std::string("re-encryption finished and every unit promoted; keystore not finalized");
    d.action =
        "Finalize the keystore (hsmctl recover --apply or mk rotate --resume); keys not "
        "re-encrypted yet are re-encrypted OLD -> CURRENT.";
  } else if (journal.phase == RotationPhase::kReencrypting) {
    d.situation = RecoverySituation::kReencryptionUnfinished;
    d.observed = StrCat("re-encryption not finished: ", journal.keys_done, " of ",
                        journal.keys_total, " key(s) done");
    d.action =
        "Run the rotation again (hsmctl mk rotate --resume, or recover --apply); it "
        "skips blobs already under NEW.";
  } else if (journal.phase == RotationPhase::kFinalizing) {
    d.situation = RecoverySituation::kFinalizeKeystore;
    d.observed = "re-encryption finished and every unit promoted; keystore not finalized";
    d.action = "Finalize the keystore (hsmctl recover --apply or mk rotate --resume).";
  } else if (d.units_promoted.empty()) {
    d.situation = RecoverySituation::kSetImmediateAll;
    d.observed = StrCat(
        "re-encryption finished; every NEW is FULL_COMMITTED with the target VP "
        "and every CURRENT is VALID with the source VP");
    d.action =
        "Set immediate on every unit (hsmctl recover --apply). It is safe: key storage is "
        "prepared for the new master key.";
  } else {
    d.situation = RecoverySituation::kSetImmediateRest;
    d.observed = StrCat("re-encryption finished; unit(s) ", absl::StrJoin(d.units_promoted, ", "),
                        " already promoted, ", absl::StrJoin(d.units_to_promote, ", "), " not yet");
    d.action = StrCat("Set immediate on ", absl::StrJoin(d.units_to_promote, ", "),
                      " only (hsmctl recover --apply); the promoted units are left as they are.");
  }
}

}  // namespace

RecoveryDecision DecideRecovery(const std::optional<RotationJournal>& journal,
                                const std::vector<UnitObservation>& units,
                                const std::vector<WkidPairCount>& counts,
                                const std::vector<Finding>& findings) {
  RecoveryDecision d;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) d.unreachable_units.push_back(u.unit.name);
  }
  d.keys_at_risk = KeysAtRisk(counts, HeldWkids(units));
  if (DecideUnknownUnits(units, d)) return d;
  if (DecideUnreachable(journal, units, d)) return d;
  if (DecideKeysAtRisk(d)) return d;
  if (journal.has_value() && journal->phase != RotationPhase::kDone) {
    if (DecideBlankUnits(*journal, units, d)) return d;
    DecideInProgress(*journal, units, d);
  } else if (!DecideSplitCurrent(units, counts, d)) {
    DecideIdle(units, counts, findings, d);
  }
  return d;
}

void NoteUnreadableKeys(const UnreadableKeys& keys, RecoveryDecision& d) {
  d.unreadable_keys = keys.named;
  d.unreadable_count = keys.count;
  d.quarantined_count = keys.quarantined;
  if (keys.quarantined > 0) {
    d.observed += StrCat("; ", keys.quarantined,
                         " key(s) are quarantined and keep their blobs (hsmctl keys list)");
  }
  if (keys.count == 0) return;
  std::string list = absl::StrJoin(keys.named, ", ");
  if (keys.count > static_cast<int64_t>(keys.named.size())) list += ", ...";
  const std::string what =
      StrCat(keys.count, " stored key(s) have blobs no unit could open or re-encrypt (", list, ")");
  if (d.situation != RecoverySituation::kReencryptionUnfinished &&
      d.situation != RecoverySituation::kNothingToDo &&
      d.situation != RecoverySituation::kReadyToRotate) {
    d.observed += StrCat("; also ", what);
    return;
  }
  const bool rotating = d.situation == RecoverySituation::kReencryptionUnfinished;
  d.situation = RecoverySituation::kKeysUnreadable;
  d.observed =
      rotating ? StrCat(d.observed, "; ", what) : StrCat("no rotation in progress; ", what);
  d.action = StrCat(
      "Running it again cannot re-encrypt them. Choose: restore those blobs from a backup, or "
      "set them aside with hsmctl keys quarantine NAME... (they keep their blobs and WKID, are "
      "listed as quarantined, and the interlock keeps their master key), then ",
      rotating ? "hsmctl recover --apply (or mk rotate --resume) finishes the rotation for "
                 "the rest."
               : "hsmctl mk rotate.");
}

RotationPlan PlanRotation(const RotationJournal& journal, const std::vector<UnitObservation>& units,
                          const std::vector<WkidPairCount>& counts,
                          const std::vector<std::string>& reloaded) {
  RotationPlan plan;
  plan.keys_total = journal.keys_total;
  const std::string source = ShortId(journal.source_vp);
  const std::string target = ShortId(journal.target_vp);
  for (const WkidPairCount& c : counts) {
    const bool pending = SameId(c.pending_wkid, WkidOfVp(journal.target_vp));
    if (pending) plan.pending_blobs += c.count;
    if (!pending && SameId(c.wkid, WkidOfVp(journal.source_vp))) plan.keys_to_reencrypt += c.count;
  }
  for (const UnitObservation& u : units) {
    UnitRotationState st = ClassifyUnit(u, journal.source_vp, journal.target_vp);
    if (std::find(reloaded.begin(), reloaded.end(), u.unit.name) != reloaded.end()) {
      st = UnitRotationState::kReady;
    }
    if (st == UnitRotationState::kPromoted) {
      plan.units_promoted.push_back(u.unit.name);
      continue;
    }
    if (st == UnitRotationState::kReady) plan.units_reencrypting.push_back(u.unit.name);
    if (journal.phase < RotationPhase::kFinalizing) plan.units_to_promote.push_back(u.unit.name);
  }
  const std::string promoted = absl::StrJoin(plan.units_promoted, ", ");
  if (journal.phase == RotationPhase::kReencrypting && !plan.units_to_promote.empty()) {
    plan.steps.push_back(StrCat("re-encrypt ", plan.keys_to_reencrypt, " key(s) from ", source,
                                " (CURRENT) to ", target, " (NEW) on unit(s) ",
                                absl::StrJoin(plan.units_reencrypting, ", "),
                                " (each key keeps its blob; the new one is pending), then journal "
                                "REENCRYPTED"));
  } else if (journal.phase == RotationPhase::kReencrypting) {
    plan.steps.push_back(StrCat("every unit already promoted ", target,
                                ": journal FINALIZING (the keys not re-encrypted are under OLD)"));
  }
  if (!plan.units_to_promote.empty()) {
    plan.steps.push_back(
        StrCat("set immediate (signed) on unit(s) ", absl::StrJoin(plan.units_to_promote, ", "),
               ": CURRENT ", target, ", OLD ", source,
               promoted.empty() ? std::string() : StrCat("; ", promoted, " already promoted"),
               "; then journal FINALIZING"));
  }
  plan.steps.push_back(StrCat("finalize the keystore: every pending blob under ", target,
                              " becomes its key's blob, keys still under ", source,
                              " are re-encrypted OLD -> CURRENT; journal DONE"));
  return plan;
}

absl::Status CheckReloadSignatures(const std::vector<UnitObservation>& units,
                                   const std::vector<std::string>& reload,
                                   const std::vector<const AdminKey*>& signers) {
  for (const UnitObservation& u : units) {
    if (!u.info.ok() || std::find(reload.begin(), reload.end(), u.unit.name) == reload.end()) {
      continue;
    }
    std::vector<std::string> admins;
    for (const AdminKey* s : signers) {
      const std::string id = crypto::AsString(s->key_id);
      if (std::any_of(u.info->administrators().begin(), u.info->administrators().end(),
                      [&](const v1::AdministratorInfo& a) { return a.key_id() == id; })) {
        admins.push_back(s->name);
      }
    }
    const uint32_t threshold = std::max<uint32_t>(u.info->signature_threshold(), 1);
    if (admins.size() >= threshold) continue;
    return Error(
        absl::StatusCode::kPermissionDenied, reason::kInsufficientSignatures,
        StrCat("reloading NEW on unit ", u.unit.name, " ends with committing it, which needs ",
               threshold,
               " signature(s) of its administrators (its signature threshold); --sign "
               "gave ",
               signers.size(), " signature(s), ", admins.size(), " of its administrators",
               admins.empty() ? std::string() : StrCat(" (", absl::StrJoin(admins, ", "), ")"),
               ". Nothing was loaded: pass --sign with at least ", threshold,
               " administrator key files"));
  }
  return absl::OkStatus();
}

absl::StatusOr<UnreadableKeys> ReadUnreadableKeys(Keystore& store) {
  UnreadableKeys keys;
  int64_t after = 0;
  while (true) {
    HSMSIM_ASSIGN_OR_RETURN(std::vector<StoredKey> page, store.ReadProblemKeys(after, 1000));
    if (page.empty()) break;
    after = page.back().id;
    for (const StoredKey& k : page) {
      if (k.quarantined) {
        ++keys.quarantined;
        continue;
      }
      ++keys.count;
      if (keys.named.size() < kMaxNamedFailedKeys) {
        keys.named.push_back(StrCat(k.name, " (", k.problem, ")"));
      }
    }
  }
  return keys;
}

}  // namespace hsmsim::host

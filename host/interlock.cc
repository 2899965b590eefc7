#include "host/interlock.h"

#include "absl/strings/str_join.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/master_key_id.h"
#include "host/recovery.h"

namespace hsmsim::host {

v1::GetInfoResponse ApplyRegisterChange(const v1::GetInfoResponse& info, RegisterChange change) {
  v1::GetInfoResponse after = info;
  v1::MasterKeyRegisterInfo empty;
  empty.set_state(v1::REGISTER_EMPTY);
  switch (change) {
    case RegisterChange::kSetImmediate:
      if (info.new_register().state() == v1::REGISTER_FULL_COMMITTED) {
        *after.mutable_old_register() = info.current_register();
        *after.mutable_current_register() = info.new_register();
        after.mutable_current_register()->set_state(v1::REGISTER_VALID);
        *after.mutable_new_register() = empty;
      }
      break;
    case RegisterChange::kClearNew:
      *after.mutable_new_register() = empty;
      break;
    case RegisterChange::kClearCurrent:
      *after.mutable_current_register() = empty;
      break;
    case RegisterChange::kClearOld:
      *after.mutable_old_register() = empty;
      break;
    case RegisterChange::kZeroize:
      *after.mutable_new_register() = empty;
      *after.mutable_current_register() = empty;
      *after.mutable_old_register() = empty;
      break;
  }
  return after;
}

namespace {

// UsableWkids returns the WKIDs of the VALID CURRENT and OLD registers of
// the units that answered: the only registers whose blobs a unit can use
// (a blob under NEW is refused until set immediate).
std::vector<std::string> UsableWkids(const std::vector<UnitObservation>& units) {
  std::vector<std::string> usable;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) continue;
    for (const auto* r : {&u.info->current_register(), &u.info->old_register()}) {
      if (r->state() == v1::REGISTER_VALID) usable.push_back(WkidOfVp(r->verification_pattern()));
    }
  }
  return usable;
}

// NewlyAtRisk returns the entries of `after` whose WKID is not in `before`:
// what the change itself would cause.
std::vector<std::pair<std::string, int64_t>> NewlyAtRisk(
    const std::vector<std::pair<std::string, int64_t>>& before,
    const std::vector<std::pair<std::string, int64_t>>& after) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& r : after) {
    bool already = false;
    for (const auto& b : before) already = already || SameId(b.first, r.first);
    if (!already) out.push_back(r);
  }
  return out;
}

std::string ListRisk(const std::vector<std::pair<std::string, int64_t>>& risk, int64_t* total) {
  std::string list;
  *total = 0;
  for (const auto& [wkid, n] : risk) {
    *total += n;
    list += StrCat(list.empty() ? "" : "; ", n, " key(s) under WKID ", wkid);
  }
  return list;
}

// kForceNote is how a refusal names the way past it.
constexpr char kForceNote[] =
    "--force (signed by at least the signature threshold of administrators)";

// CheckCurrentKept refuses clearing a VALID CURRENT register while keys are
// stored: a unit without CURRENT can neither create keys nor take part in a
// rotation (every pre-check wants CURRENT VALID), and only a reload of that
// same key by hand brings it back, so no recover step leads out of it
// (found by the rotation explorer: set immediate by hand, then mk clrcur).
absl::Status CheckCurrentKept(const std::vector<UnitObservation>& before,
                              const std::vector<UnitObservation>& after,
                              const std::vector<WkidPairCount>& counts) {
  int64_t stored = 0;
  for (const WkidPairCount& c : counts) stored += c.count;
  if (stored == 0) return absl::OkStatus();
  std::string units;
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
    if (!before[i].info.ok() || !after[i].info.ok()) continue;
    if (before[i].info->current_register().state() == v1::REGISTER_VALID &&
        after[i].info->current_register().state() != v1::REGISTER_VALID) {
      units += StrCat(units.empty() ? "" : ", ", before[i].unit.name);
    }
  }
  if (units.empty()) return absl::OkStatus();
  return Error(
      absl::StatusCode::kFailedPrecondition, reason::kInterlock,
      StrCat("refused: afterwards ", units, " would have no CURRENT master key while ", stored,
             " key(s) are stored: such a unit can neither create keys nor take part in a "
             "rotation, and only reloading that key by hand brings it back. Use ",
             kForceNote, " if you accept that outage"));
}

// Changes tells whether `after` holds other registers than `before` (the
// same unit before and after a register change).
bool Changes(const UnitObservation& before, const UnitObservation& after) {
  if (!before.info.ok() || !after.info.ok()) return false;
  auto same = [](const v1::MasterKeyRegisterInfo& a, const v1::MasterKeyRegisterInfo& b) {
    return a.state() == b.state() && a.verification_pattern() == b.verification_pattern();
  };
  return !same(before.info->new_register(), after.info->new_register()) ||
         !same(before.info->current_register(), after.info->current_register()) ||
         !same(before.info->old_register(), after.info->old_register());
}

// Judge is the interlock's verdict when the units that did not answer hold
// `assumed` (WKIDs; empty: nothing) before and after the change, and the
// selected ones among them `assumed_selected`.
absl::Status Judge(const std::vector<UnitObservation>& before,
                   const std::vector<UnitObservation>& after,
                   const std::vector<WkidPairCount>& counts,
                   const std::vector<std::string>& assumed,
                   const std::vector<std::string>& assumed_selected,
                   const std::vector<std::string>& assumed_before = {}) {
  auto with_assumed = [&](std::vector<std::string> wkids) {
    wkids.insert(wkids.end(), assumed.begin(), assumed.end());
    return wkids;
  };
  auto with_assumed_before = [&](std::vector<std::string> wkids) {
    wkids.insert(wkids.end(), assumed_before.begin(), assumed_before.end());
    return with_assumed(std::move(wkids));
  };
  // Only keys this change would strand count; keys already stranded are
  // reported by hsmctl recover.
  const auto new_risk = NewlyAtRisk(KeysAtRisk(counts, with_assumed_before(HeldWkids(before))),
                                    KeysAtRisk(counts, with_assumed(HeldWkids(after))));
  int64_t total = 0;
  if (!new_risk.empty()) {
    const std::string list = ListRisk(new_risk, &total);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kInterlock,
                 StrCat("refused: afterwards ", total,
                        " stored key(s) would be under a master key that no unit holds (", list,
                        "). Re-encrypt them first (hsmctl mk rotate / keys upgrade), or use ",
                        kForceNote, " if you accept losing them"));
  }
  // A master key held only in NEW keeps its keys, but no unit can use them
  // (and no rotation can start from it): clearing the last CURRENT or OLD
  // that serves them is an outage, refused the same way.
  const auto unusable = NewlyAtRisk(KeysAtRisk(counts, with_assumed_before(UsableWkids(before))),
                                    KeysAtRisk(counts, with_assumed(UsableWkids(after))));
  if (!unusable.empty()) {
    const std::string list = ListRisk(unusable, &total);
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kInterlock,
        StrCat("refused: afterwards ", total, " stored key(s) would be usable on no unit (", list,
               "): no unit would hold their master key in a VALID CURRENT or OLD "
               "register. Use ",
               kForceNote, " if you accept that outage"));
  }
  // A unit left without its CURRENT is refused as such first (its own,
  // truthful message), before the rule below.
  HSMSIM_RETURN_IF_ERROR(CheckCurrentKept(before, after, counts));
  // A selected unit that loses a master key gets it back only by a reload
  // by hand: keys left usable only on units this command does not change
  // (not selected, not answering, or selected but refusing the change, as
  // a unit without a committed NEW refuses set immediate) are refused too
  // (found by the rotation explorer: mk setimm, unit rm unit2, mk clrold,
  // heal; and mk setimm while one unit's NEW load had failed).
  auto changed_only = [&](const std::vector<UnitObservation>& units) {
    std::vector<UnitObservation> out;
    for (size_t i = 0; i < units.size() && i < before.size() && i < after.size(); ++i) {
      if (units[i].unit.selected && (!units[i].info.ok() || Changes(before[i], after[i]))) {
        out.push_back(units[i]);
      }
    }
    return out;
  };
  auto with_selected_assumed = [&](std::vector<std::string> wkids) {
    wkids.insert(wkids.end(), assumed_selected.begin(), assumed_selected.end());
    return wkids;
  };
  const auto unserved =
      NewlyAtRisk(KeysAtRisk(counts, with_selected_assumed(UsableWkids(changed_only(before)))),
                  KeysAtRisk(counts, with_selected_assumed(UsableWkids(changed_only(after)))));
  if (!unserved.empty()) {
    const std::string list = ListRisk(unserved, &total);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kInterlock,
                 StrCat("refused: afterwards ", total,
                        " stored key(s) would be usable on none of the units this command "
                        "changes (",
                        list,
                        "), only on units it does not change (not selected, not answering, or "
                        "refusing this change); a unit that loses a master key gets it back only "
                        "by a reload by hand. Change every unit alike, or where the keys are "
                        "under OLD re-encrypt them to CURRENT first (hsmctl keys upgrade); or "
                        "use ",
                        kForceNote, " if you accept that"));
  }
  return absl::OkStatus();
}

// Considered names the units the interlock reasoned over, by role.
std::string Considered(const std::vector<UnitObservation>& units) {
  std::vector<std::string> changed, read_only, unknown;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) {
      unknown.push_back(StrCat(u.unit.name, u.unit.selected ? " (selected)" : ""));
    } else {
      (u.unit.selected ? changed : read_only).push_back(u.unit.name);
    }
  }
  std::string out = StrCat("units considered: changed by this command: ",
                           changed.empty() ? "none" : absl::StrJoin(changed, ", "));
  if (!read_only.empty()) {
    out += StrCat("; not selected (read, not changed): ", absl::StrJoin(read_only, ", "));
  }
  if (!unknown.empty()) {
    out += StrCat("; did not answer (could not be checked): ", absl::StrJoin(unknown, ", "));
  }
  return out;
}

absl::Status WithConsidered(const absl::Status& s, const std::vector<UnitObservation>& units) {
  return Error(s.code(), ReasonOf(s), StrCat(s.message(), " [", Considered(units), "]"));
}

// UnknownMayLoseCurrent returns INTERLOCK_UNVERIFIED when `change` clears
// CURRENT (mk clrcur, zeroize) while keys are stored and a selected unit
// does not answer: it may take the command all the same and lose its
// CURRENT, which no recover step gives back (CheckCurrentKept; found by the
// rotation explorer, seed 3). OK otherwise.
absl::Status UnknownMayLoseCurrent(const std::vector<UnitObservation>& units, RegisterChange change,
                                   const std::vector<WkidPairCount>& counts) {
  int64_t stored = 0;
  for (const WkidPairCount& c : counts) stored += c.count;
  if ((change != RegisterChange::kClearCurrent && change != RegisterChange::kZeroize) ||
      stored == 0) {
    return absl::OkStatus();
  }
  for (const UnitObservation& u : units) {
    if (u.unit.selected && !u.info.ok()) {
      return Error(absl::StatusCode::kUnavailable, reason::kInterlockUnverified,
                   StrCat("cannot prove the change keeps every stored key usable: ", u.unit.name,
                          " does not answer (", u.info.status().message(),
                          ") and might lose its CURRENT master key while ", stored,
                          " key(s) are stored. Make it answer and run the command again; "
                          "nothing was changed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckInterlock(const std::vector<UnitObservation>& units, RegisterChange change,
                            const std::vector<WkidPairCount>& counts) {
  if (change == RegisterChange::kSetImmediate) {
    // Set immediate on the units that answer while a selected one does not
    // (or whose answer was lost: it may take the command all the same)
    // would split the fleet's CURRENT keys (found by the rotation explorer,
    // seed 5, and an operator's review).
    for (const UnitObservation& u : units) {
      if (u.unit.selected && !u.info.ok()) {
        return Error(absl::StatusCode::kUnavailable, reason::kInterlockUnverified,
                     StrCat("set immediate changes no unit while ", u.unit.name,
                            " does not answer (", u.info.status().message(),
                            "): the units that answer would move on and split the fleet's "
                            "CURRENT keys. Start it (hsmctl fleet restart ",
                            u.unit.name, ") and run the command again; nothing was changed"));
      }
    }
  }
  std::vector<UnitObservation> after;
  std::vector<std::string> unknown;
  std::string first_error;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) {
      // Not changed by the command either: it does not answer.
      unknown.push_back(u.unit.name);
      if (first_error.empty()) first_error = std::string(u.info.status().message());
      after.push_back(u);
    } else {
      after.push_back(UnitObservation{
          u.unit, u.unit.selected ? ApplyRegisterChange(*u.info, change) : *u.info});
    }
  }
  std::vector<std::string> every;  // every master key a stored key is under
  for (const WkidPairCount& c : counts) {
    if (!c.wkid.empty()) every.push_back(c.wkid);
    if (!c.pending_wkid.empty()) every.push_back(c.pending_wkid);
  }
  bool selected_unknown = false;
  for (const UnitObservation& u : units) {
    selected_unknown = selected_unknown || (!u.info.ok() && u.unit.selected);
  }
  // Worst case: the units that did not answer hold nothing afterwards; a
  // selected one may have held every key before (its answer may be lost
  // while it takes the command all the same: found by the explorer, seed 5,
  // where every unit's GetInfo went unanswered and the change passed as
  // stranding nothing).
  const absl::Status worst =
      Judge(units, after, counts, {}, {}, selected_unknown ? every : std::vector<std::string>{});
  if (worst.ok()) return UnknownMayLoseCurrent(units, change, counts);
  if (unknown.empty()) return WithConsidered(worst, units);
  // Best case: they hold every master key a stored key is under.
  const absl::Status best =
      Judge(units, after, counts, every, selected_unknown ? every : std::vector<std::string>{});
  if (!best.ok()) return WithConsidered(best, units);
  return Error(absl::StatusCode::kFailedPrecondition, reason::kInterlockUnverified,
               StrCat("cannot prove the change keeps every stored key usable: that depends on "
                      "unit(s) ",
                      absl::StrJoin(unknown, ", "), ", which did not answer (", first_error,
                      "). If they hold nothing: ", worst.message(),
                      ". Make them answer and run the command again [", Considered(units), "]"));
}

absl::Status CheckForcedChange(const std::vector<UnitObservation>& units, RegisterChange change,
                               const absl::StatusOr<std::vector<WkidPairCount>>& counts,
                               size_t distinct_signers) {
  const absl::Status verdict =
      counts.ok() ? CheckInterlock(units, change, *counts) : counts.status();
  if (verdict.ok()) return absl::OkStatus();
  uint32_t threshold = 0;
  std::string at;
  for (const UnitObservation& u : units) {
    if (!u.unit.selected || !u.info.ok() || u.info->mode() != v1::MODE_NORMAL) continue;
    if (u.info->signature_threshold() > threshold) {
      threshold = u.info->signature_threshold();
      at = u.unit.name;
    }
  }
  if (distinct_signers >= threshold) return absl::OkStatus();
  return Error(absl::StatusCode::kPermissionDenied, reason::kForceNeedsSignatureThreshold,
               StrCat("refused: --force would override the interlock here, and a change the "
                      "interlock refuses could destroy the only copy of a master key, so it "
                      "needs at least the signature threshold of signatures (",
                      threshold, " on ", at, "), got ", distinct_signers,
                      " distinct administrator(s). Nothing was changed. The interlock said: ",
                      ReasonOf(verdict), ": ", verdict.message()));
}

absl::Status CheckQuarantineHold(const std::vector<UnitObservation>& units, RegisterChange change,
                                 const std::vector<WkidPairCount>& quarantined) {
  std::vector<UnitObservation> after;
  std::vector<std::string> unknown;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) {
      unknown.push_back(u.unit.name);
      continue;
    }
    after.push_back(
        UnitObservation{u.unit, u.unit.selected ? ApplyRegisterChange(*u.info, change) : *u.info});
  }
  const std::vector<std::string> held_before = HeldWkids(units);
  const std::vector<std::string> held_after = HeldWkids(after);
  auto held = [](const std::vector<std::string>& held_wkids, const std::string& wkid) {
    for (const std::string& h : held_wkids) {
      if (SameId(h, wkid)) return true;
    }
    return false;
  };
  for (const WkidPairCount& q : quarantined) {
    if (q.count == 0 || !held(held_before, q.wkid) || held(held_after, q.wkid)) continue;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeysQuarantined,
                 StrCat("refused: ", q.count, " quarantined key(s) are under master key WKID ",
                        ToHex(q.wkid), ", which no unit would hold afterwards",
                        unknown.empty() ? std::string()
                                        : StrCat(" (unless unit(s) ", absl::StrJoin(unknown, ", "),
                                                 ", which did not answer, hold it)"),
                        ". Quarantined keys are kept on "
                        "purpose, so --force does not override this; restore their blobs and "
                        "release them first (hsmctl keys quarantine --release NAME...)"));
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::host

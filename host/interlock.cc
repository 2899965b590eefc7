#include "host/interlock.h"

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

}  // namespace

// CheckCurrentKept refuses clearing a VALID CURRENT register while keys are
// stored: a unit without CURRENT can neither create keys nor take part in a
// rotation (every pre-check wants CURRENT VALID), and only a reload of that
// same key by hand brings it back, so no recover step leads out of it
// (found by the rotation explorer: set immediate by hand, then mk clrcur).
static absl::Status CheckCurrentKept(const std::vector<UnitObservation>& before,
                                     const std::vector<UnitObservation>& after,
                                     const std::vector<WkidPairCount>& counts) {
  int64_t stored = 0;
  for (const WkidPairCount& c : counts) stored += c.count;
  if (stored == 0) return absl::OkStatus();
  std::string units;
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
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
             "rotation, and only reloading that key by hand brings it back. Use --force "
             "if you accept that outage"));
}

absl::Status CheckInterlock(const std::vector<UnitObservation>& units, RegisterChange change,
                            const std::vector<WkidPairCount>& counts) {
  std::vector<UnitObservation> after;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) {
      return Error(
          absl::StatusCode::kFailedPrecondition, reason::kInterlockUnverified,
          StrCat("cannot prove the change keeps every stored key usable: unit ", u.unit.name,
                 " does not answer (", u.info.status().message(), "); use --force to override"));
    }
    after.push_back(UnitObservation{u.unit, ApplyRegisterChange(*u.info, change)});
  }
  // Only keys this change would strand count; keys already stranded are
  // reported by hsmctl recover.
  const auto new_risk =
      NewlyAtRisk(KeysAtRisk(counts, HeldWkids(units)), KeysAtRisk(counts, HeldWkids(after)));
  int64_t total = 0;
  if (!new_risk.empty()) {
    const std::string list = ListRisk(new_risk, &total);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kInterlock,
                 StrCat("refused: afterwards ", total,
                        " stored key(s) would be under a master key that no unit holds (", list,
                        "). Re-encrypt them first (hsmctl mk rotate / keys upgrade), or use "
                        "--force if you accept losing them"));
  }
  // A master key held only in NEW keeps its keys, but no unit can use them
  // (and no rotation can start from it): clearing the last CURRENT or OLD
  // that serves them is an outage, refused the same way.
  const auto unusable =
      NewlyAtRisk(KeysAtRisk(counts, UsableWkids(units)), KeysAtRisk(counts, UsableWkids(after)));
  if (unusable.empty()) return CheckCurrentKept(units, after, counts);
  const std::string list = ListRisk(unusable, &total);
  return Error(
      absl::StatusCode::kFailedPrecondition, reason::kInterlock,
      StrCat("refused: afterwards ", total, " stored key(s) would be usable on no unit (", list,
             "): no unit would hold their master key in a VALID CURRENT or OLD register. "
             "Use --force if you accept that outage"));
}

absl::Status CheckQuarantineHold(const std::vector<UnitObservation>& units, RegisterChange change,
                                 const std::vector<WkidPairCount>& quarantined) {
  std::vector<UnitObservation> after;
  for (const UnitObservation& u : units) {
    if (u.info.ok()) after.push_back(UnitObservation{u.unit, ApplyRegisterChange(*u.info, change)});
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
                        ToHex(q.wkid),
                        ", which no unit would hold afterwards. Quarantined keys are kept on "
                        "purpose, so --force does not override this; restore their blobs and "
                        "release them first (hsmctl keys quarantine --release NAME...)"));
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::host

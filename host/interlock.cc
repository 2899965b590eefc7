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
  auto before_risk = KeysAtRisk(counts, HeldWkids(units));
  auto risk = KeysAtRisk(counts, HeldWkids(after));
  // Only keys this change would strand count; keys already stranded are
  // reported by hsmctl recover.
  std::vector<std::pair<std::string, int64_t>> new_risk;
  for (const auto& r : risk) {
    bool already = false;
    for (const auto& b : before_risk) already = already || SameId(b.first, r.first);
    if (!already) new_risk.push_back(r);
  }
  if (new_risk.empty()) return absl::OkStatus();
  std::string list;
  int64_t total = 0;
  for (const auto& [wkid, n] : new_risk) {
    total += n;
    list += StrCat(list.empty() ? "" : "; ", n, " key(s) under WKID ", wkid);
  }
  return Error(absl::StatusCode::kFailedPrecondition, reason::kInterlock,
               StrCat("refused: afterwards ", total,
                      " stored key(s) would be under a master key that no unit holds (", list,
                      "). Re-encrypt them first (hsmctl mk rotate / keys upgrade), or use "
                      "--force if you accept losing them"));
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

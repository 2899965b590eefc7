#include "tests/host/explorer/explorer.h"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>

#include "common/status.h"
#include "common/str_cat.h"
#include "host/master_key_id.h"
#include "tests/host/explorer/fleet_world.h"

namespace hsmsim::explorer {
namespace {

using Clock = std::chrono::steady_clock;

// --- The action table.

struct ActionSpec {
  ActionId id;
  const char* name;
  int weight;
};

constexpr ActionSpec kActions[] = {
    {ActionId::kKeysCreate, "keys create", 6},
    {ActionId::kKeysUpgrade, "keys upgrade", 2},
    {ActionId::kAdminAddCarol, "admin add carol", 2},
    {ActionId::kAdminRmCarol, "admin rm carol", 2},
    {ActionId::kMkLoad, "mk load", 5},
    {ActionId::kMkCommit, "mk commit", 5},
    {ActionId::kNextKey, "mk load + mk commit (next key)", 7},
    {ActionId::kMkSetimm, "mk setimm", 3},
    {ActionId::kMkClrnew, "mk clrnew", 3},
    {ActionId::kMkClrold, "mk clrold", 2},
    {ActionId::kMkClrcur, "mk clrcur", 2},
    {ActionId::kZeroize, "zeroize", 1},
    {ActionId::kMkRotate, "mk rotate", 9},
    {ActionId::kMkRotateResume, "mk rotate --resume", 4},
    {ActionId::kRecoverApply, "recover --apply", 6},
    {ActionId::kUnitRm, "unit rm", 1},
    {ActionId::kUnitAdd, "unit add (back to fleet.json)", 2},
    {ActionId::kCrashUnit, "crash unit", 3},
    {ActionId::kRestartUnit, "fleet restart", 4},
    {ActionId::kHangUnit, "hang unit", 1},
    {ActionId::kDropReplies, "lose replies", 3},
    {ActionId::kArmFault, "arm fault", 5},
    {ActionId::kFailStateWrites, "fail state writes", 2},
    {ActionId::kDamageBlob, "damage a blob", 1},
    {ActionId::kForgetParts, "lose the target's parts", 1},
    {ActionId::kMkRotateAbort, "mk rotate --abort", 2},
    {ActionId::kKeysQuarantine, "keys quarantine", 1},
};

constexpr const char* kCheckpoints[] = {
    "journal-written", "reencrypt-batch-stored", "reencrypted", "promoting", "unit-promoted",
    "promoted",        "finalize-chunk",         "done"};
constexpr int kCheckpointCount = 8;
constexpr const char* kFaultPoints[] = {"before-persist", "after-persist", "in-set-immediate",
                                        "reencrypt-after-blobs"};
constexpr const char* kFaultActions[] = {"crash", "hang", "drop-connection", "return-error"};
// recover --apply calls a heal may make before it must have reached DONE.
constexpr int kMaxHealApplies = 6;

const char* ActionName(ActionId id) {
  for (const ActionSpec& a : kActions) {
    if (a.id == id) return a.name;
  }
  if (id == ActionId::kHeal) return "heal";
  if (id == ActionId::kSabotage) return "sabotage";
  return "?";
}

bool Enabled(ActionId id, const Switches& sw) {
  switch (id) {
    case ActionId::kDamageBlob:
      return sw.damaged_blob;
    case ActionId::kForgetParts:
      return sw.lose_parts;
    case ActionId::kFailStateWrites:
      return sw.state_write_fails;
    default:
      return true;
  }
}

bool UsesSigners(ActionId id) {
  switch (id) {
    case ActionId::kAdminAddCarol:
    case ActionId::kAdminRmCarol:
    case ActionId::kMkLoad:
    case ActionId::kMkCommit:
    case ActionId::kMkSetimm:
    case ActionId::kMkClrnew:
    case ActionId::kMkClrold:
    case ActionId::kMkClrcur:
    case ActionId::kZeroize:
    case ActionId::kMkRotate:
    case ActionId::kMkRotateResume:
    case ActionId::kRecoverApply:
      return true;
    default:
      return false;
  }
}

bool UsesEngine(ActionId id) {
  return id == ActionId::kMkRotate || id == ActionId::kMkRotateResume ||
         id == ActionId::kRecoverApply;
}

bool IsPerUnitCommand(ActionId id) { return UsesSigners(id) && !UsesEngine(id); }

Step DrawStep(std::mt19937_64& rng, ActionId id) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  Step s;
  s.action = id;
  s.unit = pick(kUnits);
  s.a = pick(3);
  s.b = pick(4);
  s.c = -1;
  // Signers: mostly valid, else too few, a stranger, carol or none.
  const int r = pick(100);
  s.signers = r < 72   ? static_cast<int>(SignerSet::kPair)
              : r < 82 ? static_cast<int>(SignerSet::kWithCarol)
              : r < 89 ? static_cast<int>(SignerSet::kAliceAlone)
              : r < 95 ? static_cast<int>(SignerSet::kWithStranger)
                       : static_cast<int>(SignerSet::kNone);
  if (UsesEngine(id) && pick(100) < 35) {
    s.c = pick(kCheckpointCount);
    s.b = s.c == 4 ? pick(3) + 1 : pick(30);  // the count the checkpoint fires at
    s.a = (id == ActionId::kRecoverApply ? pick(3) : 0) + (pick(100) < 30 ? 10 : 0);
  } else if (id == ActionId::kRecoverApply) {
    s.a = pick(100) < 80 ? 0 : pick(3);
  }
  if (IsPerUnitCommand(id) && pick(100) < 15) s.c = pick(kUnits);
  if (id == ActionId::kArmFault) {
    s.a = pick(4);
    s.b = pick(4);
    s.c = pick(24);
  }
  if (id == ActionId::kDropReplies) {
    s.a = pick(3) + 1;
    s.b = pick(3);
  }
  if (id == ActionId::kFailStateWrites) s.a = pick(2) + 1;
  if (id == ActionId::kDamageBlob) s.a = pick(1000);
  return s;
}

HsmctlCrash CrashOf(const Step& s) {
  HsmctlCrash crash;
  if (s.c < 0) return crash;
  if (UsesEngine(s.action)) {
    crash.point = kCheckpoints[s.c];
    crash.at = s.b;
    crash.power_loss = s.a >= 10;
  } else {
    crash.after_units = s.c;
  }
  return crash;
}

// --- Executing a step.

struct Runner {
  FleetWorld& world;
  const ExplorerOptions& options;
  RunResult& result;

  bool InProgress() {
    auto journal = world.keystore().ReadJournal();
    return journal.ok() && journal->has_value() && (*journal)->phase != host::RotationPhase::kDone;
  }
  std::optional<host::RotationPhase> Phase() {
    auto journal = world.keystore().ReadJournal();
    if (!journal.ok() || !journal->has_value()) return std::nullopt;
    return (*journal)->phase;
  }

  // SetImmediateAsTheRunbookHasIt: the journal is REENCRYPTED or later and
  // every selected unit's NEW (on its disk) is empty or holds the target.
  bool SetImmediateAsTheRunbookHasIt();
  absl::Status Execute(const Step& s);
  absl::Status ExecuteFault(const Step& s);
  std::optional<Violation> Heal();
  // What the last heal applied, for a violation's message.
  std::string last_heal_trail;
  std::optional<Violation> CheckInvariants();
  std::optional<Violation> CheckStoredKeys(const std::vector<const firmware::CryptoUnit*>& oracles);
  std::optional<Violation> CheckRecoverDecision(
      const std::vector<const firmware::CryptoUnit*>& oracles);
  std::optional<Violation> CheckDone();
};

bool Runner::SetImmediateAsTheRunbookHasIt() {
  auto journal = world.keystore().ReadJournal();
  if (!journal.ok() || !journal->has_value()) return false;
  const host::RotationPhase phase = (*journal)->phase;
  if (phase == host::RotationPhase::kDone || phase == host::RotationPhase::kReencrypting) {
    return false;
  }
  auto oracles = world.Oracles();
  if (!oracles.ok()) return false;
  for (int i = 0; i < kUnits; ++i) {
    if (!world.selected(i)) continue;
    const v1::GetInfoResponse info = (*oracles)[static_cast<size_t>(i)]->Info();
    const auto& nw = info.new_register();
    if (nw.state() != v1::REGISTER_EMPTY && nw.verification_pattern() != (*journal)->target_vp) {
      return false;
    }
  }
  return true;
}

absl::Status Skipped(std::string_view why) {
  return Error(absl::StatusCode::kCancelled, "TEST_SKIPPED", why);
}

absl::Status Runner::Execute(const Step& s) {
  const SignerSet signers = static_cast<SignerSet>(s.signers);
  const HsmctlCrash crash = CrashOf(s);
  const Switches& sw = options.switches;
  switch (s.action) {
    case ActionId::kKeysCreate:
      if (static_cast<int>(world.keys().size()) >= options.max_keys) return Skipped("enough keys");
      return world.KeysCreate(s.a + 1);
    case ActionId::kKeysUpgrade:
      return world.KeysUpgrade();
    case ActionId::kAdminAddCarol:
      return world.AdminAddCarol(signers, crash);
    case ActionId::kAdminRmCarol:
      return world.AdminRmCarol(signers, crash);
    case ActionId::kMkLoad:
      return world.MkLoad(s.a, signers, crash);
    case ActionId::kMkCommit:
      return world.MkCommit(s.a, signers, crash);
    case ActionId::kNextKey: {
      absl::Status loaded = world.MkLoad(0, SignerSet::kPair, HsmctlCrash{});
      absl::Status committed = world.MkCommit(0, SignerSet::kPair, HsmctlCrash{});
      return loaded.ok() ? committed : loaded;
    }
    case ActionId::kMkSetimm:
      if (!sw.setimm_unguarded && !SetImmediateAsTheRunbookHasIt()) {
        return Skipped("setimm_unguarded is off");
      }
      return world.RegisterChange(host::RegisterChange::kSetImmediate, false, signers, crash);
    case ActionId::kMkClrnew:
      return world.RegisterChange(host::RegisterChange::kClearNew, sw.forced_changes && s.b == 0,
                                  signers, crash);
    case ActionId::kMkClrold:
      return world.RegisterChange(host::RegisterChange::kClearOld, sw.forced_changes && s.b == 0,
                                  signers, crash);
    case ActionId::kMkClrcur:
      if (InProgress() && !sw.clrcur_during_rotation) {
        return Skipped("clrcur_during_rotation is off");
      }
      return world.RegisterChange(host::RegisterChange::kClearCurrent,
                                  sw.forced_changes && s.b == 0, signers, crash);
    case ActionId::kZeroize:
      return world.RegisterChange(host::RegisterChange::kZeroize, false, signers, crash);
    case ActionId::kMkRotate:
      return world.MkRotate(false, signers, crash);
    case ActionId::kMkRotateResume:
      return world.MkRotate(true, signers, crash);
    case ActionId::kRecoverApply:
      return world.RecoverApply(s.a % 10, signers, crash);
    case ActionId::kUnitRm:
      if (InProgress() && !sw.deselect_during_rotation) {
        return Skipped("deselect_during_rotation is off");
      }
      world.set_selected(s.unit, false);
      return absl::OkStatus();
    case ActionId::kUnitAdd:
      world.set_selected(s.unit, true);
      return absl::OkStatus();
    case ActionId::kSabotage:
      return world.SabotageClearCurrent();
    case ActionId::kMkRotateAbort:
      return world.MkRotateAbort();
    case ActionId::kKeysQuarantine:
      return world.KeysQuarantine();
    default:
      return ExecuteFault(s);
  }
}

absl::Status Runner::ExecuteFault(const Step& s) {
  testing::InProcessUnit& u = world.unit(s.unit);
  switch (s.action) {
    case ActionId::kCrashUnit:
      u.Crash();
      return absl::OkStatus();
    case ActionId::kRestartUnit:
      if (!u.crashed()) return Skipped("running");
      return u.Restart();
    case ActionId::kHangUnit:
      u.Hang();
      return absl::OkStatus();
    case ActionId::kDropReplies: {
      const v1::Request::BodyCase kinds[] = {v1::Request::BODY_NOT_SET, v1::Request::kSignedCommand,
                                             v1::Request::kReencryptBatch};
      u.DropNextReplies(s.a, kinds[s.b % 3]);
      return absl::OkStatus();
    }
    case ActionId::kArmFault: {
      std::string spec = StrCat(kFaultPoints[s.a % 4], ":", kFaultActions[s.b % 4]);
      if (s.a % 4 == 3) spec += StrCat(":", s.c);
      return u.ArmFault(spec);
    }
    case ActionId::kFailStateWrites:
      u.FailNextStateWrites(s.a);
      return absl::OkStatus();
    case ActionId::kDamageBlob:
      return world.DamageBlob(s.a);
    case ActionId::kForgetParts: {
      auto journal = world.keystore().ReadJournal();
      if (journal.ok() && journal->has_value()) world.ForgetParts((*journal)->target_vp);
      return absl::OkStatus();
    }
    default:
      return Skipped("not an action");
  }
}

// --- Invariants.

bool Holds(const v1::MasterKeyRegisterInfo& r) {
  return !r.verification_pattern().empty() && r.state() != v1::REGISTER_EMPTY &&
         r.state() != v1::REGISTER_PARTIALLY_LOADED;
}

// RegistersOf describes every unit's registers, for a violation's message.
std::string RegistersOf(const std::vector<const firmware::CryptoUnit*>& oracles) {
  std::string out;
  for (size_t i = 0; i < oracles.size(); ++i) {
    const v1::GetInfoResponse info = oracles[i]->Info();
    auto reg = [](const v1::MasterKeyRegisterInfo& r) {
      return r.verification_pattern().empty()
                 ? std::string("-")
                 : host::ShortId(host::WkidOfVp(r.verification_pattern()));
    };
    out += StrCat(i ? "; " : "", "unit", i + 1, " NEW ", reg(info.new_register()), " CURRENT ",
                  reg(info.current_register()), " OLD ", reg(info.old_register()));
  }
  return out;
}

std::optional<Violation> Runner::CheckInvariants() {
  auto oracles = world.Oracles();
  if (!oracles.ok()) {
    return Violation{0, "unit-state",
                     StrCat("a unit's state does not load: ", oracles.status().ToString())};
  }
  if (!world.forced()) {
    std::vector<std::string> held;
    for (const auto& o : *oracles) {
      const v1::GetInfoResponse info = o->Info();
      for (const auto* r : {&info.new_register(), &info.current_register(), &info.old_register()}) {
        if (Holds(*r)) held.push_back(host::WkidOfVp(r->verification_pattern()));
      }
    }
    auto counts = world.keystore().CountByWkid();
    if (!counts.ok()) return Violation{0, "keystore", counts.status().ToString()};
    auto is_held = [&](const std::string& w) {
      return !w.empty() && std::find(held.begin(), held.end(), w) != held.end();
    };
    for (const host::WkidPairCount& c : *counts) {
      if (!is_held(c.wkid) && !is_held(c.pending_wkid)) {
        return Violation{0, "no-stranded-key",
                         StrCat(c.count, " stored key(s) under WKID ", host::ShortId(c.wkid),
                                c.pending_wkid.empty()
                                    ? std::string()
                                    : StrCat(" (pending ", host::ShortId(c.pending_wkid), ")"),
                                " that no unit holds in NEW, CURRENT or OLD; units: ",
                                RegistersOf(*oracles), "; last heal:", last_heal_trail)};
      }
    }
  }
  if (auto v = CheckStoredKeys(*oracles)) return v;
  return CheckRecoverDecision(*oracles);
}

std::optional<Violation> Runner::CheckStoredKeys(
    const std::vector<const firmware::CryptoUnit*>& oracles) {
  auto page = world.keystore().ReadPage(0, 100'000);
  if (!page.ok()) return Violation{0, "keystore", page.status().ToString()};
  std::map<std::string, const host::StoredKey*> by_name;
  for (const host::StoredKey& k : *page) by_name[k.name] = &k;
  if (by_name.size() != world.keys().size()) {
    return Violation{
        0, "key-unwraps",
        StrCat("the keystore holds ", by_name.size(), " key(s), the model ", world.keys().size())};
  }
  for (const ModelKey& m : world.keys()) {
    auto it = by_name.find(m.name);
    if (it == by_name.end()) {
      return Violation{0, "key-unwraps", StrCat("key ", m.name, " is no longer stored")};
    }
    if (m.damaged || world.forced()) continue;
    bool ok = false;
    for (const auto& o : oracles) {
      ok = ok || FleetWorld::Unwraps(*o, it->second->blob, m) ||
           FleetWorld::Unwraps(*o, it->second->pending_blob, m);
    }
    if (!ok) {
      return Violation{0, "key-unwraps",
                       StrCat("key ", m.name, " (blob under ", host::ShortId(it->second->wkid),
                              ") unwraps its data key on no unit")};
    }
  }
  return std::nullopt;
}

std::optional<Violation> Runner::CheckRecoverDecision(
    const std::vector<const firmware::CryptoUnit*>& oracles) {
  // What recover would see: the selected units' states, a crashed unit
  // unreachable.
  std::vector<host::UnitObservation> observed;
  for (int i = 0; i < kUnits; ++i) {
    if (!world.selected(i)) continue;
    host::FleetUnit unit{world.unit(i).name(), "in-process", "", 0, true, false};
    if (world.unit(i).crashed()) {
      observed.push_back(host::UnitObservation{
          unit, Error(absl::StatusCode::kUnavailable, host::kUnitUnreachable, "crashed")});
    } else {
      observed.push_back(host::UnitObservation{unit, oracles[static_cast<size_t>(i)]->Info()});
    }
  }
  auto look = world.LookAt(std::move(observed), SignerSet::kPair);
  if (!look.ok()) return Violation{0, "one-situation", look.status().ToString()};
  const host::RecoveryDecision& d = look->decision;
  const std::string name(host::RecoverySituationName(d.situation));
  ++result.situations[name];
  auto bad = [&](std::string why) {
    return Violation{0, "one-situation",
                     StrCat("recover says ", name, " (", d.observed, "): ", why)};
  };
  const bool in_progress =
      look->journal.has_value() && look->journal->phase != host::RotationPhase::kDone;
  bool all_selected = true;
  for (int i = 0; i < kUnits; ++i) all_selected = all_selected && world.selected(i);
  using S = host::RecoverySituation;
  if (d.situation == S::kKeysAtRisk && !world.forced() && all_selected) {
    return bad("keys at risk although every unit of the instance is selected and answers");
  }
  if (in_progress && d.situation == S::kNothingToDo) return bad("a rotation is in progress");
  if (d.situation == S::kFixAndRotateAgain && in_progress && d.unreachable_units.empty()) {
    return bad("a rotation is in progress and every unit answers");
  }
  if (in_progress && d.situation == S::kSetImmediateUnfinished) {
    return bad("a rotation is journaled");
  }
  if (!in_progress &&
      (d.situation == S::kReencryptionUnfinished || d.situation == S::kSetImmediateAll ||
       d.situation == S::kSetImmediateRest || d.situation == S::kReloadNewRegister ||
       d.situation == S::kFinalizeKeystore)) {
    return bad("no rotation is in progress");
  }
  if ((d.situation == S::kReloadNewRegister) != !d.units_to_reload.empty() && in_progress &&
      d.unreachable_units.empty() && d.keys_at_risk.empty()) {
    return bad("units to reload and the situation disagree");
  }
  if (d.situation == S::kReencryptionUnfinished && d.units_to_promote.empty()) {
    return bad("no unit holds CURRENT and the target in NEW, so --apply cannot re-encrypt");
  }
  return std::nullopt;
}

// Progress of a rotation, for the recover-finishes check.
struct Progress {
  int phase = 0;
  int64_t keys_done = 0;
  int promoted = 0;
  int ready = 0;
  bool AnyAbove(const Progress& o) const {
    return phase > o.phase || keys_done > o.keys_done || promoted > o.promoted || ready > o.ready;
  }
};

Progress ProgressOf(const RecoverLook& look) {
  Progress p;
  if (!look.journal.has_value()) return p;
  p.phase = static_cast<int>(look.journal->phase) + 1;
  p.keys_done = look.journal->keys_done;
  for (const auto& o : look.observed) {
    switch (host::ClassifyUnit(o, look.journal->source_vp, look.journal->target_vp)) {
      case host::UnitRotationState::kPromoted:
        ++p.promoted;
        break;
      case host::UnitRotationState::kReady:
        ++p.ready;
        break;
      default:
        break;
    }
  }
  for (const host::WkidPairCount& c : look.counts) {
    if (c.pending_wkid == host::WkidOfVp(look.journal->target_vp)) p.keys_done += c.count;
  }
  return p;
}

std::optional<Violation> Runner::Heal() {
  // The operator brings every unit back and puts every unit of the
  // instance back in fleet.json.
  for (int i = 0; i < kUnits; ++i) {
    testing::InProcessUnit& u = world.unit(i);
    u.Release();
    u.DropNextReplies(0);
    u.FailNextStateWrites(0);
    if (u.crashed()) {
      if (absl::Status s = u.Restart(); !s.ok()) {
        return Violation{0, "recover-finishes",
                         StrCat("unit", i + 1, " does not restart: ", s.ToString())};
      }
    }
    v1::Request clear;
    clear.mutable_clear_faults();
    (void)u.Call(clear);
    world.set_selected(i, true);
  }
  // After a --force nothing is promised: the operator accepted a loss.
  if (world.forced()) return std::nullopt;
  std::string trail;
  last_heal_trail.clear();
  for (int n = 0; n <= kMaxHealApplies; ++n) {
    auto look = world.Look(SignerSet::kPair);
    if (!look.ok()) return Violation{0, "recover-finishes", look.status().ToString()};
    const bool in_progress =
        look->journal.has_value() && look->journal->phase != host::RotationPhase::kDone;
    const bool unfinished_setimm =
        look->decision.situation == host::RecoverySituation::kSetImmediateUnfinished;
    if (!in_progress && !unfinished_setimm) break;
    if (n == kMaxHealApplies) {
      return Violation{0, "recover-finishes",
                       StrCat("not DONE after ", kMaxHealApplies, " recover --apply:", trail)};
    }
    const Progress before = ProgressOf(*look);
    const std::string situation(host::RecoverySituationName(look->decision.situation));
    // The operator's explicit choices recover names: set unreadable keys
    // aside (keys quarantine), or abandon a rotation nobody promoted whose
    // parts are gone (mk rotate --abort).
    if (look->decision.situation == host::RecoverySituation::kKeysUnreadable) {
      absl::Status q = world.KeysQuarantine();
      trail += StrCat(" [", situation, ": keys quarantine -> ", q.ok() ? "OK" : ReasonOf(q), "]");
    }
    if (look->decision.situation == host::RecoverySituation::kReloadNewRegister &&
        look->decision.abort_possible && !world.PartsOnHand(look->journal->target_vp)) {
      absl::Status a = world.MkRotateAbort();
      trail += StrCat(" [", situation, ": mk rotate --abort -> ", a.ok() ? "OK" : ReasonOf(a), "]");
      if (a.ok()) continue;
    }
    absl::Status applied = world.RecoverApply(0, SignerSet::kPair, HsmctlCrash{});
    trail += StrCat(" [", situation, " -> ", applied.ok() ? "OK" : ReasonOf(applied), "]");
    last_heal_trail = trail;
    if (applied.ok() || IsTransportError(applied)) continue;
    auto after = world.Look(SignerSet::kPair);
    if (!after.ok()) return Violation{0, "recover-finishes", after.status().ToString()};
    if (!ProgressOf(*after).AnyAbove(before)) {
      return Violation{0, "recover-finishes",
                       StrCat("recover says ", situation, " (", look->decision.action,
                              ") but --apply with the parts and signers on hand made no "
                              "progress: ",
                              applied.ToString(), "; trail:", trail)};
    }
  }
  return CheckDone();
}

std::optional<Violation> Runner::CheckDone() {
  auto bad = [](std::string why) { return Violation{0, "recover-finishes", std::move(why)}; };
  auto oracles = world.Oracles();
  if (!oracles.ok()) return bad(oracles.status().ToString());
  std::string current;
  for (int i = 0; i < kUnits; ++i) {
    const v1::GetInfoResponse info = (*oracles)[static_cast<size_t>(i)]->Info();
    const auto& cur = info.current_register();
    if (cur.state() != v1::REGISTER_VALID) {
      return bad(StrCat("after recovery unit", i + 1, "'s CURRENT is not VALID"));
    }
    if (i > 0 && cur.verification_pattern() != current) {
      return bad(StrCat("after recovery the units' CURRENT differ (unit", i + 1, ": ",
                        host::ShortId(cur.verification_pattern()),
                        ", unit1: ", host::ShortId(current), ")"));
    }
    current = cur.verification_pattern();
  }
  auto page = world.keystore().ReadPage(0, 100'000);
  if (!page.ok()) return bad(page.status().ToString());
  std::map<std::string, const host::StoredKey*> by_name;
  for (const host::StoredKey& k : *page) by_name[k.name] = &k;
  for (const ModelKey& m : world.keys()) {
    if (m.damaged) continue;
    const host::StoredKey* k = by_name[m.name];
    if (k == nullptr) return bad(StrCat("key ", m.name, " is no longer stored"));
    if (!k->pending_blob.empty()) {
      return bad(StrCat("after recovery key ", m.name, " still has a pending blob"));
    }
    for (int i = 0; i < kUnits; ++i) {
      if (!FleetWorld::Unwraps(*(*oracles)[static_cast<size_t>(i)], k->blob, m)) {
        return bad(StrCat("after recovery key ", m.name, " does not unwrap on unit", i + 1));
      }
    }
  }
  return std::nullopt;
}

}  // namespace

// --- Switches.

namespace {
struct SwitchEntry {
  const char* name;
  bool Switches::*field;
};
constexpr SwitchEntry kSwitchEntries[] = {
    {"setimm_unguarded", &Switches::setimm_unguarded},
    {"clrcur_during_rotation", &Switches::clrcur_during_rotation},
    {"deselect_during_rotation", &Switches::deselect_during_rotation},
    {"damaged_blob", &Switches::damaged_blob},
    {"lose_parts", &Switches::lose_parts},
    {"state_write_fails", &Switches::state_write_fails},
    {"forced_changes", &Switches::forced_changes},
};
}  // namespace

Switches Switches::FromEnv(std::string* bad) {
  Switches sw;
  const char* env = std::getenv("HSMSIM_EXPLORER_SWITCHES");
  if (env == nullptr) return sw;
  std::stringstream in(env);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const bool on = item[0] != '-';
    const std::string name = (item[0] == '+' || item[0] == '-') ? item.substr(1) : item;
    bool found = false;
    for (const SwitchEntry& e : kSwitchEntries) {
      if (name == e.name) {
        sw.*e.field = on;
        found = true;
      }
    }
    if (!found && bad != nullptr) *bad += StrCat(bad->empty() ? "" : ", ", name);
  }
  return sw;
}

std::string Switches::Describe() const {
  std::string out;
  for (const SwitchEntry& e : kSwitchEntries) {
    out += StrCat(out.empty() ? "" : " ", this->*e.field ? "+" : "-", e.name);
  }
  return out;
}

// --- Steps.

std::string Step::Describe() const {
  const SignerSet signer_set = static_cast<SignerSet>(signers);
  std::string out = ActionName(action);
  const std::string unit_name = StrCat("unit", unit + 1);
  switch (action) {
    case ActionId::kKeysCreate:
      return StrCat(out, " --count ", a + 1);
    case ActionId::kMkLoad:
      out += a == 0   ? " --parts (a fresh key)"
             : a == 1 ? " --parts (the newest key)"
                      : " --parts (unit's CURRENT key)";
      break;
    case ActionId::kMkCommit:
      out += a == 0 ? "" : a == 1 ? " --vp (the newest key)" : " --vp (a wrong VP)";
      break;
    case ActionId::kRecoverApply:
      out += (a % 10) == 0   ? " --parts (target's)"
             : (a % 10) == 1 ? ""
                             : " --parts (another key's)";
      break;
    case ActionId::kUnitRm:
    case ActionId::kUnitAdd:
    case ActionId::kCrashUnit:
    case ActionId::kRestartUnit:
      return StrCat(out, " ", unit_name);
    case ActionId::kHangUnit:
      return StrCat(out, " ", unit_name, " (for the next step)");
    case ActionId::kDropReplies:
      return StrCat(out, ": the next ", a, " ",
                    b % 3 == 0   ? "replies"
                    : b % 3 == 1 ? "signed command replies"
                                 : "re-encryption replies",
                    " of ", unit_name);
    case ActionId::kArmFault:
      return StrCat(out, " on ", unit_name, ": ", kFaultPoints[a % 4], ":", kFaultActions[b % 4],
                    a % 4 == 3 ? StrCat(":", c) : std::string());
    case ActionId::kFailStateWrites:
      return StrCat(out, ": the next ", a, " of ", unit_name);
    case ActionId::kDamageBlob:
      return StrCat(out, " (model key #", a, ")");
    default:
      break;
  }
  if (UsesSigners(action)) out += StrCat(" --sign ", SignerSetName(signer_set));
  if (c >= 0 && UsesEngine(action)) {
    out += StrCat(" (hsmctl dies at ", kCheckpoints[c], ":", b, a >= 10 ? ", power loss" : "", ")");
  } else if (c >= 0 && IsPerUnitCommand(action)) {
    out += StrCat(" (hsmctl dies after ", c, " unit(s))");
  }
  return out;
}

std::string FormatSteps(const std::vector<Step>& steps) {
  std::string out;
  for (size_t i = 0; i < steps.size(); ++i) {
    out += StrCat("  ", i + 1, ". ", steps[i].Describe(), "\n");
  }
  return out;
}

std::vector<Step> GenerateSteps(const ExplorerOptions& options) {
  std::mt19937_64 rng(options.seed);
  std::vector<ActionSpec> table;
  int total_weight = 0;
  for (const ActionSpec& a : kActions) {
    if (!Enabled(a.id, options.switches)) continue;
    table.push_back(a);
    total_weight += a.weight;
  }
  std::vector<Step> steps;
  int64_t made = 0;
  while (made < options.steps) {
    const int64_t episode = std::min<int64_t>(
        options.steps - made,
        1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(options.max_episode)));
    for (int64_t i = 0; i < episode; ++i) {
      int r = static_cast<int>(rng() % static_cast<uint64_t>(total_weight));
      ActionId id = table.back().id;
      for (const ActionSpec& a : table) {
        if (r < a.weight) {
          id = a.id;
          break;
        }
        r -= a.weight;
      }
      steps.push_back(DrawStep(rng, id));
    }
    made += episode;
    if (options.include_sabotage && rng() % 50 == 0) steps.push_back(Step{ActionId::kSabotage});
    steps.push_back(Step{ActionId::kHeal});
  }
  return steps;
}

RunResult RunSteps(const std::vector<Step>& steps, const ExplorerOptions& options) {
  RunResult result;
  const auto start = Clock::now();
  absl::StatusOr<std::unique_ptr<FleetWorld>> world =
      absl::InternalError("no keystore for the world");
  if (!options.new_keystore) {
    world = FleetWorld::Create(options.initial_keys);
  } else if (absl::StatusOr<std::string> location = options.new_keystore(); location.ok()) {
    world = FleetWorld::Create(options.initial_keys, *location);
  } else {
    world = location.status();
  }
  if (!world.ok()) {
    result.violation = Violation{0, "setup", world.status().ToString()};
    return result;
  }
  Runner runner{**world, options, result, {}};
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    std::optional<Violation> v;
    if (s.action == ActionId::kHeal) {
      ++result.heals;
      v = runner.Heal();
    } else {
      absl::Status done = runner.Execute(s);
      auto& tally = result.outcomes[ActionName(s.action)];
      ++tally.first;
      if (done.ok()) ++tally.second;
      if (s.action != ActionId::kHangUnit) {
        for (int u = 0; u < kUnits; ++u) (*world)->unit(u).Release();
      }
    }
    ++result.steps_run;
    if (!v.has_value()) v = runner.CheckInvariants();
    if (v.has_value()) {
      v->step_index = static_cast<int64_t>(i);
      result.violation = v;
      break;
    }
    if (options.progress && result.steps_run % options.progress_every == 0) {
      options.progress(result.steps_run,
                       std::chrono::duration<double>(Clock::now() - start).count());
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

std::vector<Step> Shrink(std::vector<Step> steps, const ExplorerOptions& options,
                         const Violation& violation, std::chrono::seconds budget) {
  const auto deadline = Clock::now() + budget;
  steps.resize(std::min(steps.size(), static_cast<size_t>(violation.step_index) + 1));
  size_t n = 2;
  while (steps.size() >= 2 && Clock::now() < deadline) {
    const size_t chunk = (steps.size() + n - 1) / n;
    bool reduced = false;
    for (size_t start = 0; start < steps.size() && Clock::now() < deadline; start += chunk) {
      std::vector<Step> candidate(steps.begin(), steps.begin() + static_cast<ptrdiff_t>(start));
      candidate.insert(
          candidate.end(),
          steps.begin() + static_cast<ptrdiff_t>(std::min(steps.size(), start + chunk)),
          steps.end());
      if (candidate.empty()) continue;
      RunResult r = RunSteps(candidate, options);
      if (r.violation.has_value() && r.violation->invariant == violation.invariant) {
        candidate.resize(static_cast<size_t>(r.violation->step_index) + 1);
        steps = std::move(candidate);
        n = std::max<size_t>(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= steps.size()) break;
      n = std::min(steps.size(), 2 * n);
    }
  }
  return steps;
}

}  // namespace hsmsim::explorer

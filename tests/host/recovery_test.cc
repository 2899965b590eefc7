// Pre-checks, recovery decisions and interlocks as pure functions of what
// was observed: every row of the recovery table in docs/rotation.md without processes.
#include "host/recovery.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/status.h"
#include "host/interlock.h"
#include "host/rotation.h"

namespace hsmsim::host {
namespace {

const std::string kSrc = std::string(16, 'S') + std::string(16, 's');  // a source VP
const std::string kTgt = std::string(16, 'T') + std::string(16, 't');  // a target VP
const std::string kOther = std::string(16, 'O') + std::string(16, 'o');

v1::MasterKeyRegisterInfo Reg(v1::RegisterState state, const std::string& vp = "") {
  v1::MasterKeyRegisterInfo r;
  r.set_state(state);
  r.set_verification_pattern(vp);
  return r;
}

// A unit in normal mode with two admins, threshold 2, and the given registers.
UnitObservation Unit(const std::string& name, v1::MasterKeyRegisterInfo nw,
                     v1::MasterKeyRegisterInfo cur,
                     v1::MasterKeyRegisterInfo old = Reg(v1::REGISTER_EMPTY)) {
  v1::GetInfoResponse info;
  info.set_instance("prod");
  info.set_mode(v1::MODE_NORMAL);
  info.set_signature_threshold(2);
  info.set_revocation_threshold(2);
  for (const char* admin : {"alice-key-id", "bob-key-id"}) {
    auto* a = info.add_administrators();
    a->set_name(admin);
    a->set_key_id(admin);
  }
  *info.mutable_new_register() = nw;
  *info.mutable_current_register() = cur;
  *info.mutable_old_register() = old;
  FleetUnit unit;
  unit.name = name;
  return UnitObservation{unit, info};
}

UnitObservation Ready(const std::string& name) {
  return Unit(name, Reg(v1::REGISTER_FULL_COMMITTED, kTgt), Reg(v1::REGISTER_VALID, kSrc));
}
UnitObservation Promoted(const std::string& name) {
  return Unit(name, Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kTgt),
              Reg(v1::REGISTER_VALID, kSrc));
}
UnitObservation NewLost(const std::string& name) {
  return Unit(name, Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc));
}
UnitObservation Unreachable(const std::string& name) {
  FleetUnit unit;
  unit.name = name;
  unit.endpoint = "127.0.0.1:1";
  return UnitObservation{unit, Error(absl::StatusCode::kUnavailable, "UNIT_UNREACHABLE",
                                     "unit " + name + " at 127.0.0.1:1: connection refused")};
}

RotationJournal Journal(RotationPhase phase) {
  RotationJournal j;
  j.phase = phase;
  j.source_vp = kSrc;
  j.target_vp = kTgt;
  j.keys_total = 100;
  j.keys_done = phase == RotationPhase::kReencrypting ? 40 : 100;
  return j;
}

std::vector<WkidPairCount> Counts(int64_t under_src, int64_t pending_tgt) {
  std::vector<WkidPairCount> c;
  if (under_src > pending_tgt) c.push_back({WkidOfVp(kSrc), "", under_src - pending_tgt});
  if (pending_tgt > 0) c.push_back({WkidOfVp(kSrc), WkidOfVp(kTgt), pending_tgt});
  return c;
}

RecoverySituation Decide(std::optional<RotationJournal> j, std::vector<UnitObservation> units,
                         std::vector<WkidPairCount> counts) {
  return DecideRecovery(j, units, counts, {}).situation;
}

// --- the recovery table -----------------------------------------------------

TEST(RecoveryTest, NoRotationConsistentFleetNothingToDo) {
  auto units = {Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc)),
                Unit("u2", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc))};
  EXPECT_EQ(Decide(std::nullopt, units, Counts(100, 0)), RecoverySituation::kNothingToDo);
}

TEST(RecoveryTest, ErrorBeforeAnythingChangedFixAndRotateAgain) {
  std::vector<UnitObservation> units = {Ready("u1"), Ready("u2")};
  std::vector<Finding> findings = {Finding{
      "u2", "equal-thresholds",
      Error(absl::StatusCode::kFailedPrecondition, "THRESHOLDS_DIFFER", "unit u2: differs")}};
  auto d = DecideRecovery(std::nullopt, units, Counts(100, 0), findings);
  EXPECT_EQ(d.situation, RecoverySituation::kFixAndRotateAgain);
  EXPECT_NE(d.action.find("run it again"), std::string::npos) << d.action;
}

// Issue 16, item 5: a unit that does not answer mid-rotation was
// FIX_AND_ROTATE_AGAIN, although rotating again is refused. The unit is the
// thing to fix: named with its endpoint and error, started, never taken out
// of the selection while the rotation is open.
TEST(RecoveryTest, UnreachableUnitMidRotationIsNamedAsTheThingToFix) {
  for (RotationPhase phase : {RotationPhase::kReencrypting, RotationPhase::kReencrypted,
                              RotationPhase::kPromoting, RotationPhase::kFinalizing}) {
    auto d = DecideRecovery(Journal(phase), {Ready("u1"), Unreachable("u2")}, Counts(100, 100), {});
    EXPECT_EQ(d.situation, RecoverySituation::kUnitsUnreachable) << RotationPhaseName(phase);
    EXPECT_EQ(RecoverySituationName(d.situation), "UNITS_UNREACHABLE");
    EXPECT_EQ(d.unreachable_units, std::vector<std::string>{"u2"});
    EXPECT_NE(d.observed.find("u2 at 127.0.0.1:1 (UNIT_UNREACHABLE: connection refused)"),
              std::string::npos)
        << d.observed;
    EXPECT_NE(d.observed.find(std::string(RotationPhaseName(phase))), std::string::npos);
    EXPECT_NE(d.action.find("Start u2: hsmctl fleet restart u2 (a unit this host launched)"),
              std::string::npos)
        << d.action;
    EXPECT_NE(d.action.find("Do not take it out of the selection"), std::string::npos) << d.action;
    EXPECT_EQ(d.action.find("unit rm"), std::string::npos) << d.action;
    EXPECT_EQ(d.action.find("rotate again"), std::string::npos) << d.action;
  }
  // With no rotation open, taking it out of the selection is named, with
  // what it does not allow.
  auto idle = DecideRecovery(std::nullopt, {Ready("u1"), Unreachable("u2")}, Counts(100, 0), {});
  EXPECT_EQ(idle.situation, RecoverySituation::kUnitsUnreachable);
  EXPECT_NE(idle.action.find("hsmctl unit rm NAME"), std::string::npos) << idle.action;
  EXPECT_NE(idle.action.find("mk rotate needs every unit"), std::string::npos) << idle.action;
}

// Issue 16, item 5: a fleet whose NEW holds the next key committed
// everywhere, with no journal and nothing wrong, is ready to rotate (mk
// rotate is the next command), not NOTHING_TO_DO.
TEST(RecoveryTest, FleetWithNewCommittedIsReadyToRotate) {
  auto d = DecideRecovery(std::nullopt, {Ready("u1"), Ready("u2")}, Counts(100, 0), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReadyToRotate);
  EXPECT_EQ(RecoverySituationName(d.situation), "READY_TO_ROTATE");
  EXPECT_NE(d.action.find("hsmctl mk rotate"), std::string::npos) << d.action;
  EXPECT_EQ(d.source_vp, kSrc);
  EXPECT_EQ(d.target_vp, kTgt);
  // NEW empty: nothing to do.
  auto empty = DecideRecovery(std::nullopt,
                              {Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc)),
                               Unit("u2", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc))},
                              Counts(100, 0), {});
  EXPECT_EQ(empty.situation, RecoverySituation::kNothingToDo);
  // NEW committed on one unit only: a failed pre-check, not ready.
  Finding differs{"u2", "new-committed",
                  Error(absl::StatusCode::kFailedPrecondition, "NEW_NOT_COMMITTED", "u2: NEW")};
  auto one = DecideRecovery(std::nullopt, {Ready("u1"), NewLost("u2")}, Counts(100, 0), {differs});
  EXPECT_EQ(one.situation, RecoverySituation::kFixAndRotateAgain);
  // Keys under a third key would stop mk rotate: not ready either.
  std::vector<WkidPairCount> third = Counts(100, 0);
  third.push_back({WkidOfVp(kOther), "", 3});
  auto held_third = Unit("u2", Reg(v1::REGISTER_FULL_COMMITTED, kTgt),
                         Reg(v1::REGISTER_VALID, kSrc), Reg(v1::REGISTER_VALID, kOther));
  auto blocked = DecideRecovery(std::nullopt, {Ready("u1"), held_third}, third, {});
  EXPECT_EQ(blocked.situation, RecoverySituation::kFixAndRotateAgain);
  EXPECT_NE(blocked.observed.find("3 stored key(s)"), std::string::npos) << blocked.observed;
}

// Issue 16, item 5: the plan --dry-run shows. After every unit promoted,
// only finalizing is left and nothing is signed (--sign not needed).
TEST(RecoveryTest, RotationPlanNamesStepsUnitsAndCounts) {
  RotationJournal fresh = Journal(RotationPhase::kReencrypting);
  fresh.keys_done = 0;
  auto plan = PlanRotation(fresh, {Ready("u1"), Ready("u2")}, Counts(100, 0));
  EXPECT_EQ(plan.keys_to_reencrypt, 100);
  EXPECT_EQ(plan.units_reencrypting, (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(plan.units_to_promote, (std::vector<std::string>{"u1", "u2"}));
  ASSERT_EQ(plan.steps.size(), 3u);
  EXPECT_NE(plan.steps[0].find("re-encrypt 100 key(s)"), std::string::npos) << plan.steps[0];
  EXPECT_NE(plan.steps[1].find("set immediate (signed) on unit(s) u1, u2"), std::string::npos);
  EXPECT_NE(plan.steps[2].find("finalize the keystore"), std::string::npos);

  auto half = PlanRotation(Journal(RotationPhase::kPromoting), {Promoted("u1"), Ready("u2")},
                           Counts(100, 100));
  EXPECT_EQ(half.units_to_promote, std::vector<std::string>{"u2"});
  EXPECT_EQ(half.units_promoted, std::vector<std::string>{"u1"});
  EXPECT_EQ(half.pending_blobs, 100);

  for (RotationPhase phase : {RotationPhase::kFinalizing, RotationPhase::kPromoting}) {
    auto last = PlanRotation(Journal(phase), {Promoted("u1"), Promoted("u2")}, Counts(100, 100));
    EXPECT_TRUE(last.units_to_promote.empty()) << RotationPhaseName(phase);
    ASSERT_EQ(last.steps.size(), 1u);
    EXPECT_NE(last.steps[0].find("finalize the keystore"), std::string::npos);
  }
  // A unit whose NEW recover --apply reloads first counts as ready.
  auto reload = PlanRotation(Journal(RotationPhase::kReencrypted), {Ready("u1"), NewLost("u2")},
                             Counts(100, 100), {"u2"});
  EXPECT_EQ(reload.units_to_promote, (std::vector<std::string>{"u1", "u2"}));
}

// Issue 16, item 6: a reload of NEW whose commit the unit would refuse
// (fewer signatures of its administrators than its signature threshold) is
// refused before any part is loaded, naming the threshold and the
// signatures given.
TEST(RecoveryTest, ReloadWithTooFewSignaturesIsRefusedNamingTheThreshold) {
  AdminKey alice;
  alice.name = "alice";
  std::string id = "alice-key-id";
  id.resize(32, '\0');
  std::copy(id.begin(), id.end(), alice.key_id.begin());
  auto lost = NewLost("u2");
  lost.info->mutable_administrators(0)->set_key_id(id);
  absl::Status s = CheckReloadSignatures({Ready("u1"), lost}, {"u2"}, {&alice});
  EXPECT_EQ(ReasonOf(s), "INSUFFICIENT_SIGNATURES") << s;
  EXPECT_NE(s.message().find("unit u2"), std::string::npos) << s;
  EXPECT_NE(s.message().find("needs 2 signature(s)"), std::string::npos) << s;
  EXPECT_NE(s.message().find("gave 1 signature(s), 1 of its administrators (alice)"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("Nothing was loaded"), std::string::npos) << s;
  lost.info->set_signature_threshold(1);
  EXPECT_TRUE(CheckReloadSignatures({Ready("u1"), lost}, {"u2"}, {&alice}).ok());
  // A unit that is not reloaded is not judged.
  EXPECT_TRUE(CheckReloadSignatures({Ready("u1"), lost}, {}, {}).ok());
}

TEST(RecoveryTest, ReencryptionNotFinishedRunRotateAgain) {
  auto d = DecideRecovery(Journal(RotationPhase::kReencrypting), {Ready("u1"), Ready("u2")},
                          Counts(100, 40), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReencryptionUnfinished);
  EXPECT_NE(d.action.find("skips blobs already under NEW"), std::string::npos);
}

TEST(RecoveryTest, ReencryptionFinishedAllReadySetImmediateEverywhere) {
  auto d = DecideRecovery(Journal(RotationPhase::kReencrypted),
                          {Ready("u1"), Ready("u2"), Ready("u3")}, Counts(100, 100), {});
  EXPECT_EQ(d.situation, RecoverySituation::kSetImmediateAll);
  EXPECT_EQ(d.units_to_promote.size(), 3u);
}

TEST(RecoveryTest, SomeUnitsPromotedSetImmediateOnTheRestOnly) {
  auto d = DecideRecovery(Journal(RotationPhase::kPromoting),
                          {Promoted("u1"), Ready("u2"), Ready("u3")}, Counts(100, 100), {});
  EXPECT_EQ(d.situation, RecoverySituation::kSetImmediateRest);
  EXPECT_EQ(d.units_promoted, std::vector<std::string>{"u1"});
  EXPECT_EQ(d.units_to_promote, (std::vector<std::string>{"u2", "u3"}));
}

TEST(RecoveryTest, NewRegisterLostReloadFirstNeverPromote) {
  auto d = DecideRecovery(Journal(RotationPhase::kReencrypted),
                          {Ready("u1"), NewLost("u2"), Ready("u3")}, Counts(100, 100), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReloadNewRegister);
  EXPECT_EQ(d.units_to_reload, std::vector<std::string>{"u2"});
  EXPECT_NE(d.action.find("Do not promote u2"), std::string::npos) << d.action;
}

// A unit that answers with another id than fleet.json pins (a blank unit
// where its state was): never judged, never advised to reload parts.
UnitObservation Foreign(const std::string& name) {
  FleetUnit unit;
  unit.name = name;
  return UnitObservation{unit, Error(absl::StatusCode::kFailedPrecondition, "UNIT_ID_MISMATCH",
                                     "unit " + name + " answers with unit id 01 but ...")};
}

// A new unit in imprint mode: no administrators, no master keys.
UnitObservation Blank(const std::string& name) {
  UnitObservation o = Unit(name, Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_EMPTY));
  o.info->set_mode(v1::MODE_IMPRINT);
  o.info->clear_administrators();
  o.info->clear_instance();
  return o;
}

TEST(RecoveryTest, AUnitWithAnotherIdIsNamedAndNothingIsApplied) {
  for (RotationPhase phase : {RotationPhase::kReencrypting, RotationPhase::kReencrypted,
                              RotationPhase::kPromoting, RotationPhase::kFinalizing}) {
    auto d = DecideRecovery(Journal(phase), {Ready("u1"), Foreign("u2"), Ready("u3")},
                            Counts(100, 100), {});
    EXPECT_EQ(d.situation, RecoverySituation::kFixAndRotateAgain) << RotationPhaseName(phase);
    EXPECT_NE(d.observed.find("u2 answer with another unit id"), std::string::npos) << d.observed;
    EXPECT_NE(d.action.find("--new-unit"), std::string::npos) << d.action;
    EXPECT_EQ(d.action.find("--parts"), std::string::npos) << d.action;
  }
  // Even with no rotation journaled.
  auto idle = DecideRecovery(std::nullopt, {Ready("u1"), Foreign("u2")}, Counts(100, 0), {});
  EXPECT_EQ(idle.situation, RecoverySituation::kFixAndRotateAgain);
  EXPECT_NE(idle.observed.find("u2"), std::string::npos);
}

TEST(RecoveryTest, ABlankUnitMidRotationIsSetUpFirstNotReloaded) {
  // Issue 11, input 5: recover advised reloading parts on a blank unit,
  // which refuses them (UNKNOWN_SIGNER: it has no administrators).
  for (RotationPhase phase :
       {RotationPhase::kReencrypting, RotationPhase::kReencrypted, RotationPhase::kPromoting}) {
    auto d = DecideRecovery(Journal(phase), {Ready("u1"), Ready("u2"), Blank("u3")},
                            Counts(100, 40), {});
    EXPECT_EQ(d.situation, RecoverySituation::kFixAndRotateAgain) << RotationPhaseName(phase);
    EXPECT_NE(d.observed.find("u3 are in imprint mode"), std::string::npos) << d.observed;
    EXPECT_NE(d.action.find("admin add"), std::string::npos) << d.action;
    EXPECT_EQ(d.action.find("recover --apply --parts"), std::string::npos) << d.action;
    EXPECT_TRUE(d.units_to_reload.empty());
  }
}

TEST(RecoveryTest, NewRegisterHoldingAnotherKeyCountsAsLost) {
  auto other = Unit("u2", Reg(v1::REGISTER_FULL_COMMITTED, kOther), Reg(v1::REGISTER_VALID, kSrc));
  auto d = DecideRecovery(Journal(RotationPhase::kReencrypted), {Ready("u1"), other},
                          Counts(100, 100), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReloadNewRegister);
}

// Issue 11, input 4: mk setimm reached unit u1 only, with no rotation
// journaled. recover used to say FIX_AND_ROTATE_AGAIN with nothing to
// apply; the split is an unfinished set immediate, which --apply journals
// as a rotation from the split's source to its target and finishes.
TEST(RecoveryTest, SetImmediateThatReachedSomeUnitsOutsideARotationIsFinished) {
  for (auto done :
       {std::optional<RotationJournal>(), std::optional(Journal(RotationPhase::kDone))}) {
    auto d = DecideRecovery(done, {Promoted("u1"), Ready("u2"), Ready("u3")}, Counts(100, 0), {});
    EXPECT_EQ(d.situation, RecoverySituation::kSetImmediateUnfinished);
    EXPECT_EQ(d.source_vp, kSrc);
    EXPECT_EQ(d.target_vp, kTgt);
    EXPECT_EQ(d.units_promoted, std::vector<std::string>{"u1"});
    EXPECT_EQ(d.units_to_promote, (std::vector<std::string>{"u2", "u3"}));
    EXPECT_TRUE(d.units_to_reload.empty());
    EXPECT_NE(d.observed.find("u2, u3 still CURRENT"), std::string::npos) << d.observed;
    EXPECT_NE(d.action.find("recover --apply --sign"), std::string::npos) << d.action;
    EXPECT_EQ(d.action.find("--parts"), std::string::npos) << d.action;
    EXPECT_FALSE(d.abort_possible);
  }
  // The same split seen from the units not promoted only: their committed
  // NEW shows the direction.
  auto no_old = Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kTgt));
  auto d = DecideRecovery(std::nullopt, {no_old, Ready("u2")}, Counts(100, 0), {});
  EXPECT_EQ(d.situation, RecoverySituation::kSetImmediateUnfinished);
  EXPECT_EQ(d.target_vp, kTgt);
}

TEST(RecoveryTest, UnfinishedSetImmediateWithNewLostNamesTheParts) {
  auto d = DecideRecovery(std::nullopt, {Promoted("u1"), Ready("u2"), NewLost("u3")},
                          Counts(100, 0), {});
  EXPECT_EQ(d.situation, RecoverySituation::kSetImmediateUnfinished);
  EXPECT_EQ(d.units_to_promote, std::vector<std::string>{"u2"});
  EXPECT_EQ(d.units_to_reload, std::vector<std::string>{"u3"});
  EXPECT_NE(d.action.find("--parts"), std::string::npos) << d.action;
}

TEST(RecoveryTest, UnfinishedSetImmediateWithKeysUnderAThirdKeyUpgradesThemFirst) {
  // Keys still under the OLD key of the units not promoted: finishing the
  // set immediate would leave them under a key no unit holds (explorer,
  // seed 11 with setimm_unguarded).
  std::vector<WkidPairCount> counts = Counts(100, 0);
  counts.push_back({WkidOfVp(kOther), "", 7});
  auto u2 = Unit("u2", Reg(v1::REGISTER_FULL_COMMITTED, kTgt), Reg(v1::REGISTER_VALID, kSrc),
                 Reg(v1::REGISTER_VALID, kOther));
  auto d = DecideRecovery(std::nullopt, {Promoted("u1"), u2}, counts, {});
  EXPECT_EQ(d.situation, RecoverySituation::kFixAndRotateAgain);
  EXPECT_NE(d.observed.find("7 stored key(s)"), std::string::npos) << d.observed;
  EXPECT_NE(d.action.find("keys upgrade"), std::string::npos) << d.action;
}

TEST(RecoveryTest, CurrentSplitOfAnotherShapeIsNamedNotGuessed) {
  // Three keys in CURRENT, or two with nothing showing the direction.
  auto third = Unit("u3", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kOther));
  auto plain_tgt = Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kTgt));
  auto plain_src = Unit("u2", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc));
  for (const auto& units : {std::vector<UnitObservation>{Promoted("u1"), Ready("u2"), third},
                            std::vector<UnitObservation>{plain_tgt, plain_src}}) {
    auto d = DecideRecovery(std::nullopt, units, Counts(100, 0), {});
    EXPECT_EQ(d.situation, RecoverySituation::kFixAndRotateAgain);
    EXPECT_NE(d.observed.find("CURRENT registers hold different master keys"), std::string::npos)
        << d.observed;
    EXPECT_TRUE(d.target_vp.empty());
  }
}

TEST(RecoveryTest, AllPromotedFinalizeKeystore) {
  auto d = DecideRecovery(Journal(RotationPhase::kPromoting), {Promoted("u1"), Promoted("u2")},
                          Counts(100, 100), {});
  EXPECT_EQ(d.situation, RecoverySituation::kFinalizeKeystore);
}

TEST(RecoveryTest, KeysUnderAWkidNoUnitHoldsStop) {
  // Every unit lost both the source and the target: NEW cleared, CURRENT cleared.
  auto gone = Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_EMPTY));
  auto d = DecideRecovery(Journal(RotationPhase::kReencrypted), {gone}, Counts(100, 100), {});
  EXPECT_EQ(d.situation, RecoverySituation::kKeysAtRisk);
  ASSERT_EQ(d.keys_at_risk.size(), 1u);
  EXPECT_EQ(d.keys_at_risk[0].second, 100);
  EXPECT_NE(d.action.find("STOP"), std::string::npos);
}

TEST(RecoveryTest, UnreachableUnitsComeBeforeJudgingKeysAtRisk) {
  auto gone = Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_EMPTY));
  auto d = DecideRecovery(Journal(RotationPhase::kReencrypting), {gone, Unreachable("u2")},
                          Counts(100, 10), {});
  EXPECT_EQ(d.situation, RecoverySituation::kUnitsUnreachable);
  EXPECT_FALSE(d.keys_at_risk.empty()) << "still reported, for the operator";
}

TEST(RecoveryTest, KeysAtRiskWinsOverEverythingElse) {
  std::vector<WkidPairCount> counts = Counts(100, 100);
  counts.push_back({WkidOfVp(kOther), "", 5});
  auto d =
      DecideRecovery(Journal(RotationPhase::kPromoting), {Promoted("u1"), Ready("u2")}, counts, {});
  EXPECT_EQ(d.situation, RecoverySituation::kKeysAtRisk);
  EXPECT_EQ(d.keys_at_risk[0].second, 5);
}

TEST(RecoveryTest, PendingBlobUnderAHeldKeySavesTheKey) {
  // The source key is gone everywhere, but every key has a pending blob under
  // the target, which the units hold: nothing is at risk.
  auto u = Unit("u1", Reg(v1::REGISTER_FULL_COMMITTED, kTgt), Reg(v1::REGISTER_EMPTY));
  EXPECT_TRUE(KeysAtRisk(Counts(100, 100), HeldWkids({u})).empty());
  EXPECT_EQ(KeysAtRisk(Counts(100, 60), HeldWkids({u}))[0].second, 40);
}

// --- pre-checks: one per condition of the seed page -------------------------

std::vector<Finding> Precheck(std::vector<UnitObservation> units, FleetManifest m = {}) {
  if (m.units.empty()) {
    m.instance = "prod";
    for (const auto& u : units) m.units.push_back(u.unit);
  }
  static AdminKey alice = [] {
    AdminKey k;
    k.name = "alice";
    std::string id = "alice-key-id";
    std::copy(id.begin(), id.end(), k.key_id.begin());
    return k;
  }();
  // The signer's key id must match the fake admin ids: pad to 32 bytes.
  std::vector<UnitObservation> padded;
  for (auto u : units) {
    if (u.info.ok()) {
      for (auto& a : *u.info->mutable_administrators())
        a.set_key_id(a.key_id() + std::string(32 - a.key_id().size(), '\0'));
    }
    padded.push_back(u);
  }
  return PrecheckRotation(m, padded, {&alice});
}

std::vector<std::string> Reasons(const std::vector<Finding>& f) {
  std::vector<std::string> out;
  for (const auto& x : f) out.push_back(ReasonOf(x.status));
  return out;
}

TEST(PrecheckTest, HealthyFleetPasses) {
  EXPECT_TRUE(Precheck({Ready("u1"), Ready("u2"), Ready("u3")}).empty());
}

TEST(PrecheckTest, NotAllUnitsOfTheInstanceSelected) {
  FleetManifest m;
  m.instance = "prod";
  auto u1 = Ready("u1");
  m.units.push_back(u1.unit);
  FleetUnit u2;
  u2.name = "u2";
  u2.selected = false;
  m.units.push_back(u2);
  auto f = Precheck({u1}, m);
  ASSERT_EQ(Reasons(f), std::vector<std::string>{"UNIT_NOT_SELECTED"});
  EXPECT_NE(std::string(f[0].status.message()).find("unit u2"), std::string::npos);
}

// Issue 16, item 5: UNIT_NOT_SELECTED said a unit of instance "staging"
// belongs to "payments". It names the instance fleet.json says and the one
// the unit reports.
TEST(PrecheckTest, NotSelectedNamesFleetJsonsInstanceAndTheUnitsOwn) {
  FleetManifest m;
  m.instance = "payments";
  UnitObservation u1 = Ready("u1");
  u1.info->set_instance("payments");
  UnitObservation u2 = Ready("u2");
  u2.info->set_instance("staging");
  u2.unit.selected = false;
  m.units = {u1.unit, u2.unit};
  auto f = PrecheckRotation(m, {u1, u2}, {});
  std::vector<std::string> not_selected;
  for (const Finding& x : f) {
    if (ReasonOf(x.status) == "UNIT_NOT_SELECTED") not_selected.emplace_back(x.status.message());
  }
  ASSERT_EQ(not_selected.size(), 1u);
  const std::string& msg = not_selected[0];
  EXPECT_NE(msg.find("unit u2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fleet.json, whose instance is 'payments'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("it reports instance 'staging' itself"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("belongs to"), std::string::npos) << msg;
  // The unselected unit is not checked otherwise (no WRONG_INSTANCE for it).
  for (const Finding& x : f) {
    if (x.subject == "u2") {
      EXPECT_EQ(ReasonOf(x.status), "UNIT_NOT_SELECTED") << x.status;
    }
  }
  // Not read (or not answering): its own instance is unknown, not guessed.
  auto unread = PrecheckRotation(m, {u1}, {});
  ASSERT_FALSE(unread.empty());
  EXPECT_NE(unread[0].status.message().find("its own instance is unknown"), std::string::npos)
      << unread[0].status;
}

TEST(PrecheckTest, UnitsOfMoreThanOneInstance) {
  auto u2 = Ready("u2");
  u2.info->set_instance("staging");
  auto f = Precheck({Ready("u1"), u2});
  ASSERT_EQ(Reasons(f), std::vector<std::string>{"WRONG_INSTANCE"});
  EXPECT_EQ(f[0].subject, "u2");
}

TEST(PrecheckTest, UnitInImprintMode) {
  auto u2 = Ready("u2");
  u2.info->set_mode(v1::MODE_IMPRINT);
  EXPECT_EQ(Reasons(Precheck({Ready("u1"), u2})), std::vector<std::string>{"IMPRINT_MODE"});
}

TEST(PrecheckTest, SignatureThresholdsDiffer) {
  auto u2 = Ready("u2");
  u2.info->set_signature_threshold(1);
  EXPECT_EQ(Reasons(Precheck({Ready("u1"), u2})), std::vector<std::string>{"THRESHOLDS_DIFFER"});
}

TEST(PrecheckTest, NoCommonAdministratorSetLargeEnough) {
  auto u2 = Ready("u2");
  u2.info->mutable_administrators(1)->set_key_id("carol-key-id");
  auto r = Reasons(Precheck({Ready("u1"), u2}));
  EXPECT_EQ(r, std::vector<std::string>{"NO_COMMON_ADMINISTRATORS"});
}

TEST(PrecheckTest, CurrentNotValidOrDifferentVp) {
  auto u2 = Ready("u2");
  *u2.info->mutable_current_register() = Reg(v1::REGISTER_EMPTY);
  EXPECT_EQ(Reasons(Precheck({Ready("u1"), u2})), std::vector<std::string>{"CURRENT_NOT_VALID"});
  auto u3 = Ready("u3");
  *u3.info->mutable_current_register() = Reg(v1::REGISTER_VALID, kOther);
  EXPECT_EQ(Reasons(Precheck({Ready("u1"), u3})), std::vector<std::string>{"CURRENT_VP_DIFFERS"});
}

TEST(PrecheckTest, NewNotCommittedOrDifferentVp) {
  auto u2 = Ready("u2");
  *u2.info->mutable_new_register() = Reg(v1::REGISTER_FULL_UNCOMMITTED, kTgt);
  EXPECT_EQ(Reasons(Precheck({Ready("u1"), u2})), std::vector<std::string>{"NEW_NOT_COMMITTED"});
  auto u3 = Ready("u3");
  *u3.info->mutable_new_register() = Reg(v1::REGISTER_FULL_COMMITTED, kOther);
  EXPECT_EQ(Reasons(Precheck({Ready("u1"), u3})), std::vector<std::string>{"NEW_VP_DIFFERS"});
  auto same = Unit("u4", Reg(v1::REGISTER_FULL_COMMITTED, kSrc), Reg(v1::REGISTER_VALID, kSrc));
  auto same2 = Unit("u5", Reg(v1::REGISTER_FULL_COMMITTED, kSrc), Reg(v1::REGISTER_VALID, kSrc));
  auto r = Reasons(Precheck({same, same2}));
  EXPECT_EQ(r, (std::vector<std::string>{"NEW_EQUALS_CURRENT", "NEW_EQUALS_CURRENT"}));
}

TEST(PrecheckTest, UnreachableUnitReported) {
  auto f = Precheck({Ready("u1"), Unreachable("u2")});
  ASSERT_EQ(Reasons(f), std::vector<std::string>{"UNIT_UNREACHABLE"});
  EXPECT_EQ(f[0].subject, "u2");
}

TEST(PrecheckTest, KeysUnderAnotherKeyWouldBeStranded) {
  std::vector<WkidPairCount> counts = {{WkidOfVp(kSrc), "", 10}, {WkidOfVp(kOther), "", 3}};
  auto f = PrecheckKeystore(counts, WkidOfVp(kSrc), WkidOfVp(kTgt));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(ReasonOf(f[0].status), "KEYS_UNDER_OTHER_KEY");
  EXPECT_TRUE(PrecheckKeystore({{WkidOfVp(kSrc), "", 10}}, WkidOfVp(kSrc), WkidOfVp(kTgt)).empty());
}

// --- interlocks ------------------------------------------------------------------

TEST(InterlockTest, ClearCurrentWithKeysUnderItRefused) {
  auto units = {Unit("u1", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc)),
                Unit("u2", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc))};
  absl::Status s = CheckInterlock(units, RegisterChange::kClearCurrent, Counts(10, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  EXPECT_NE(std::string(s.message()).find("10 stored key(s)"), std::string::npos);
  // Without keys, the same change is fine.
  EXPECT_TRUE(CheckInterlock(units, RegisterChange::kClearCurrent, {}).ok());
}

// Found by the rotation explorer: with the CURRENT key also loaded (not
// committed) in NEW, clearing CURRENT stranded nothing but left every key
// usable on no unit, and nothing could set it right.
TEST(InterlockTest, ClearCurrentLeavingTheKeyOnlyInNewRefused) {
  auto units = {
      Unit("u1", Reg(v1::REGISTER_FULL_UNCOMMITTED, kSrc), Reg(v1::REGISTER_VALID, kSrc)),
      Unit("u2", Reg(v1::REGISTER_FULL_UNCOMMITTED, kSrc), Reg(v1::REGISTER_VALID, kSrc))};
  absl::Status s = CheckInterlock(units, RegisterChange::kClearCurrent, Counts(10, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  EXPECT_NE(std::string(s.message()).find("usable on no unit"), std::string::npos) << s;
  // Once re-encrypted, the pending blobs under the target in NEW are not
  // usable either: clearing CURRENT before set immediate is refused.
  EXPECT_EQ(ReasonOf(CheckInterlock({Ready("u1"), Ready("u2")}, RegisterChange::kClearCurrent,
                                    Counts(10, 10))),
            "INTERLOCK");
}

TEST(InterlockTest, ClearNewAfterReencryptionBeforePromotionIsSafeWhileSourceHeld) {
  // Keys still have their blob under the source, so clearing NEW loses nothing.
  EXPECT_TRUE(
      CheckInterlock({Ready("u1"), Ready("u2")}, RegisterChange::kClearNew, Counts(10, 10)).ok());
}

TEST(InterlockTest, ClearNewOnPromotedHalfwayFleetAfterFinalizeRefused) {
  // Keys finalized under the target; u1 promoted, u2 still holds it in NEW only.
  std::vector<WkidPairCount> counts = {{WkidOfVp(kTgt), "", 10}};
  auto u1 = Promoted("u1");
  auto u2 = Ready("u2");
  // Clearing CURRENT on u1 and NEW on u2 would each be fine alone; clearing
  // both CURRENTs strands the target only if no NEW holds it.
  EXPECT_TRUE(CheckInterlock({u1, u2}, RegisterChange::kClearNew, counts).ok());
  EXPECT_EQ(ReasonOf(CheckInterlock({Promoted("u1")}, RegisterChange::kClearCurrent, counts)),
            "INTERLOCK");
}

TEST(InterlockTest, SetImmediateThatPushesKeysOutOfOldRefused) {
  // CURRENT = T, OLD = S, keys still under S; NEW = other: set immediate drops S.
  auto u = Unit("u1", Reg(v1::REGISTER_FULL_COMMITTED, kOther), Reg(v1::REGISTER_VALID, kTgt),
                Reg(v1::REGISTER_VALID, kSrc));
  EXPECT_EQ(ReasonOf(CheckInterlock({u}, RegisterChange::kSetImmediate, Counts(10, 0))),
            "INTERLOCK");
  EXPECT_TRUE(CheckInterlock({u}, RegisterChange::kSetImmediate, {{WkidOfVp(kTgt), "", 10}}).ok());
}

TEST(InterlockTest, ZeroizeWithStoredKeysRefused) {
  EXPECT_EQ(ReasonOf(CheckInterlock({Ready("u1")}, RegisterChange::kZeroize, Counts(1, 0))),
            "INTERLOCK");
}

// OldSource is a unit promoted to T that keeps S in OLD.
UnitObservation OldSource(const std::string& name) {
  return Unit(name, Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kTgt),
              Reg(v1::REGISTER_VALID, kSrc));
}

TEST(InterlockTest, UnreachableUnitCannotBeVerified) {
  // Clearing OLD S on u1 is safe only if u2, which does not answer, holds S.
  absl::Status s =
      CheckInterlock({OldSource("u1"), Unreachable("u2")}, RegisterChange::kClearOld, Counts(1, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK_UNVERIFIED") << s;
  EXPECT_NE(std::string(s.message()).find("u2, which did not answer"), std::string::npos) << s;
}

// --- the interlock over the instance: every unit of fleet.json --------------

// NotSelected is `u` as a unit of fleet.json the command does not change.
UnitObservation NotSelected(UnitObservation u) {
  u.unit.selected = false;
  return u;
}
UnitObservation Serving(const std::string& name) {
  return Unit(name, Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kSrc));
}

TEST(InterlockInstanceTest, ZeroizingOneUnitWhileTheOthersHoldTheKeyIsRefusedTruthfully) {
  std::vector<UnitObservation> fleet = {Serving("u1"), NotSelected(Serving("u2")),
                                        NotSelected(Serving("u3")), NotSelected(Serving("u4")),
                                        NotSelected(Serving("u5"))};
  // Not "no unit holds" (four do): u1 would lose the master key of stored
  // keys, which no recover step gives back.
  absl::Status one = CheckInterlock(fleet, RegisterChange::kZeroize, Counts(10, 0));
  EXPECT_EQ(ReasonOf(one), "INTERLOCK") << one;
  EXPECT_NE(std::string(one.message()).find("u1 would have no CURRENT master key"),
            std::string::npos)
      << one;
  EXPECT_EQ(std::string(one.message()).find("keys upgrade"), std::string::npos) << one;
  EXPECT_EQ(std::string(one.message()).find("no unit holds"), std::string::npos) << one;
  EXPECT_NE(std::string(one.message())
                .find("changed by this command: u1; not selected (read, not changed): u2, u3, "
                      "u4, u5"),
            std::string::npos)
      << one;
  // Without stored keys it goes ahead.
  EXPECT_TRUE(CheckInterlock(fleet, RegisterChange::kZeroize, {}).ok());
  // Zeroizing every unit strands the keys; the refusal names what it saw.
  for (UnitObservation& u : fleet) u.unit.selected = true;
  absl::Status s = CheckInterlock(fleet, RegisterChange::kZeroize, Counts(10, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  EXPECT_NE(std::string(s.message()).find("changed by this command: u1, u2, u3, u4, u5"),
            std::string::npos)
      << s;
}

TEST(InterlockInstanceTest, AUnitNotSelectedHoldsItsKeyButIsNotChanged) {
  // u2 is not selected and keeps S: clearing OLD S on u1 strands nothing,
  // so the refusal is not "no unit holds"; but u1 could no longer use the
  // keys and only a reload by hand gives S back (the rotation explorer:
  // mk setimm, unit rm unit2, mk clrold, heal).
  absl::Status s = CheckInterlock({OldSource("u1"), NotSelected(Serving("u2"))},
                                  RegisterChange::kClearOld, Counts(10, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  EXPECT_EQ(std::string(s.message()).find("no unit holds"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("only on units it does not change"), std::string::npos)
      << s;
  // Without u2 nothing holds S afterwards.
  absl::Status alone = CheckInterlock({OldSource("u1")}, RegisterChange::kClearOld, Counts(10, 0));
  EXPECT_NE(std::string(alone.message()).find("no unit holds"), std::string::npos) << alone;
  // u2 not selected is not changed: clearing NEW on u1 only is fine.
  EXPECT_TRUE(CheckInterlock({Ready("u1"), NotSelected(Serving("u2"))}, RegisterChange::kClearNew,
                             Counts(10, 0))
                  .ok());
}

TEST(InterlockInstanceTest, AUnitThatWouldRefuseTheChangeIsNotChangedEither) {
  // Set immediate by hand left every unit at CURRENT T, OLD S with keys
  // still under S; then u2's NEW load failed (its state write), so u2 would
  // refuse set immediate while u1 takes it and drops S from OLD. The keys
  // under S would be usable on u2 only, whose CURRENT then differs from
  // u1's: no recover step re-encrypts them (the rotation explorer, seed 11).
  auto u1 = Unit("u1", Reg(v1::REGISTER_FULL_COMMITTED, kOther), Reg(v1::REGISTER_VALID, kTgt),
                 Reg(v1::REGISTER_VALID, kSrc));
  auto u2 = Unit("u2", Reg(v1::REGISTER_EMPTY), Reg(v1::REGISTER_VALID, kTgt),
                 Reg(v1::REGISTER_VALID, kSrc));
  absl::Status s = CheckInterlock({u1, u2}, RegisterChange::kSetImmediate, Counts(10, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  EXPECT_NE(std::string(s.message()).find("only on units it does not change"), std::string::npos)
      << s;
  // Keys under T are served by both units afterwards: allowed.
  EXPECT_TRUE(
      CheckInterlock({u1, u2}, RegisterChange::kSetImmediate, {{WkidOfVp(kTgt), "", 10}}).ok());
}

TEST(InterlockInstanceTest, ASelectedUnitThatDoesNotAnswerMayStillTakeTheChange) {
  // Every unit's answer lost (the explorer, seed 5): "holds nothing before
  // and after" let clearing CURRENT pass as stranding nothing. A selected
  // unit that does not answer may hold every key and still take the
  // command: the verdict is unverified, never OK.
  auto lost = [](UnitObservation u) {
    u.info = Error(absl::StatusCode::kDeadlineExceeded, "UNIT_TIMEOUT", "reply lost");
    return u;
  };
  const std::vector<UnitObservation> all_lost = {lost(Serving("u1")), lost(Serving("u2"))};
  for (RegisterChange c : {RegisterChange::kClearCurrent, RegisterChange::kZeroize}) {
    EXPECT_EQ(ReasonOf(CheckInterlock(all_lost, c, Counts(10, 0))), "INTERLOCK_UNVERIFIED");
  }
  // With a unit that answers and serves the keys, clearing NEW is safe
  // whatever the other holds.
  EXPECT_TRUE(
      CheckInterlock({Serving("u1"), lost(Serving("u2"))}, RegisterChange::kClearNew, Counts(10, 0))
          .ok());
  // Set immediate while one selected unit does not answer would split the
  // fleet's CURRENT keys: never, whatever the keys.
  absl::Status setimm =
      CheckInterlock({Ready("u1"), lost(Ready("u2"))}, RegisterChange::kSetImmediate, {});
  EXPECT_EQ(ReasonOf(setimm), "INTERLOCK_UNVERIFIED") << setimm;
  EXPECT_NE(std::string(setimm.message()).find("changes no unit while u2 does not answer"),
            std::string::npos)
      << setimm;
  // A unit left out that does not answer is not changed by it.
  EXPECT_TRUE(CheckInterlock({Ready("u1"), NotSelected(lost(Ready("u2")))},
                             RegisterChange::kSetImmediate, {})
                  .ok());
}

TEST(InterlockInstanceTest, AUnitThatDoesNotAnswerIsUnknownNeverHoldsNothing) {
  // Safe whatever u3 holds: clearing NEW on u1 strands nothing.
  EXPECT_TRUE(CheckInterlock({Ready("u1"), NotSelected(Serving("u2")), Unreachable("u3")},
                             RegisterChange::kClearNew, Counts(10, 0))
                  .ok());
  // Safe whatever u2 holds: clearing NEW on u1 strands nothing.
  EXPECT_TRUE(
      CheckInterlock({Ready("u1"), Unreachable("u2")}, RegisterChange::kClearNew, Counts(10, 0))
          .ok());
  // Unsafe whatever u2 holds (u1 would lose its CURRENT while keys are
  // stored): INTERLOCK, not INTERLOCK_UNVERIFIED; the message says u2
  // could not be checked.
  absl::Status s = CheckInterlock({Serving("u1"), Unreachable("u2")}, RegisterChange::kClearCurrent,
                                  Counts(10, 0));
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  EXPECT_NE(std::string(s.message()).find("did not answer (could not be checked): u2"),
            std::string::npos)
      << s;
  // Depends on u2: unverified, naming it.
  absl::Status d = CheckInterlock({OldSource("u1"), Unreachable("u2")}, RegisterChange::kClearOld,
                                  Counts(10, 0));
  EXPECT_EQ(ReasonOf(d), "INTERLOCK_UNVERIFIED") << d;
  EXPECT_NE(std::string(d.message()).find("unit(s) u2"), std::string::npos) << d;
}

TEST(InterlockInstanceTest, QuarantineHoldCountsUnitsNotSelected) {
  const std::vector<WkidPairCount> quarantined = {{WkidOfVp(kSrc), "", 3}};
  EXPECT_TRUE(CheckQuarantineHold({Serving("u1"), NotSelected(Serving("u2"))},
                                  RegisterChange::kZeroize, quarantined)
                  .ok());
  EXPECT_EQ(ReasonOf(CheckQuarantineHold({Serving("u1"), Serving("u2")}, RegisterChange::kZeroize,
                                         quarantined)),
            "KEYS_QUARANTINED");
}

TEST(InterlockInstanceTest, AForcedChangeTheInterlockRefusesNeedsTheSignatureThreshold) {
  // Units have signature threshold 2 (Unit()).
  const std::vector<UnitObservation> fleet = {Serving("u1"), Serving("u2")};
  absl::Status one = CheckForcedChange(fleet, RegisterChange::kZeroize, Counts(10, 0), 1);
  EXPECT_EQ(ReasonOf(one), "FORCE_NEEDS_SIGNATURE_THRESHOLD") << one;
  EXPECT_NE(std::string(one.message()).find("(2 on u1), got 1"), std::string::npos) << one;
  EXPECT_NE(std::string(one.message()).find("INTERLOCK"), std::string::npos) << one;
  EXPECT_TRUE(CheckForcedChange(fleet, RegisterChange::kZeroize, Counts(10, 0), 2).ok());
  // A forced change the interlock would allow anyway: one administrator.
  EXPECT_TRUE(CheckForcedChange(fleet, RegisterChange::kClearNew, Counts(10, 0), 1).ok());
  // The keystore cannot be read: anything may be at stake.
  const absl::StatusOr<std::vector<WkidPairCount>> unreadable =
      Error(absl::StatusCode::kDataLoss, "BAD_KEYSTORE", "keystore.db: not a database");
  EXPECT_EQ(ReasonOf(CheckForcedChange(fleet, RegisterChange::kClearNew, unreadable, 1)),
            "FORCE_NEEDS_SIGNATURE_THRESHOLD");
}

TEST(InterlockTest, ApplyRegisterChangeFollowsTheFirmware) {
  auto after = ApplyRegisterChange(*Ready("u1").info, RegisterChange::kSetImmediate);
  EXPECT_EQ(after.new_register().state(), v1::REGISTER_EMPTY);
  EXPECT_EQ(after.current_register().state(), v1::REGISTER_VALID);
  EXPECT_EQ(after.current_register().verification_pattern(), kTgt);
  EXPECT_EQ(after.old_register().verification_pattern(), kSrc);
  // Set immediate without a committed NEW changes nothing (the unit refuses).
  auto lost = ApplyRegisterChange(*NewLost("u1").info, RegisterChange::kSetImmediate);
  EXPECT_EQ(lost.current_register().verification_pattern(), kSrc);
}

}  // namespace
}  // namespace hsmsim::host

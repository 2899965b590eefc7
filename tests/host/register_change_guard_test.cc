// The register change guard, abandoning a rotation, and the recovery
// decisions for the states a forced or direct register change leaves: every
// row of docs/rotation.md's "Register changes during a rotation" table
// without processes (issue 11, items 1, 3 and 6).
#include "host/register_change_guard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"
#include "host/recovery.h"
#include "host/rotation.h"
#include "host/rotation_abort.h"

namespace hsmsim::host {
namespace {

const std::string kSrc = std::string(16, 'S') + std::string(16, 's');  // a source VP
const std::string kTgt = std::string(16, 'T') + std::string(16, 't');  // a target VP
const std::string kOther = std::string(16, 'X') + std::string(16, 'x');

v1::MasterKeyRegisterInfo Reg(v1::RegisterState state, const std::string& vp = "") {
  v1::MasterKeyRegisterInfo r;
  r.set_state(state);
  r.set_verification_pattern(vp);
  return r;
}
v1::MasterKeyRegisterInfo Empty() { return Reg(v1::REGISTER_EMPTY); }

// A unit in normal mode with `admins` administrators (admin0, admin1, ...),
// thresholds 2, and the given registers.
UnitObservation Unit(const std::string& name, v1::MasterKeyRegisterInfo nw,
                     v1::MasterKeyRegisterInfo cur, v1::MasterKeyRegisterInfo old = Empty(),
                     int admins = 2) {
  v1::GetInfoResponse info;
  info.set_instance("prod");
  info.set_mode(v1::MODE_NORMAL);
  info.set_signature_threshold(2);
  info.set_revocation_threshold(2);
  for (int i = 0; i < admins; ++i) {
    auto* a = info.add_administrators();
    a->set_name("admin" + std::to_string(i));
    a->set_key_id("key-id-" + std::to_string(i));
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
  return Unit(name, Empty(), Reg(v1::REGISTER_VALID, kTgt), Reg(v1::REGISTER_VALID, kSrc));
}
UnitObservation NewLost(const std::string& name) {
  return Unit(name, Empty(), Reg(v1::REGISTER_VALID, kSrc));
}
// A unit where someone cleared NEW and loaded (and maybe committed) X.
UnitObservation HoldsOther(const std::string& name, v1::RegisterState state) {
  return Unit(name, Reg(state, kOther), Reg(v1::REGISTER_VALID, kSrc));
}
UnitObservation Unreachable(const std::string& name) {
  FleetUnit unit;
  unit.name = name;
  return UnitObservation{unit, Error(absl::StatusCode::kUnavailable, "UNIT_UNREACHABLE",
                                     "unit " + name + " at 127.0.0.1:1: connection refused")};
}

RotationJournal Journal(RotationPhase phase) {
  RotationJournal j;
  j.phase = phase;
  j.source_vp = kSrc;
  j.target_vp = kTgt;
  j.keys_total = 3000;
  j.keys_done = phase == RotationPhase::kReencrypting ? 1000 : 3000;
  return j;
}

RegisterChangeVerdict Check(std::optional<RotationJournal> j, std::vector<UnitObservation> units,
                            OperatorCommand command, std::string new_vp = "") {
  return CheckRegisterChange(j, units, RequestedChange::Of(command).WithNewVp(new_vp));
}

bool Mentions(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

// --- no rotation open ------------------------------------------------------------

TEST(RegisterChangeGuardTest, WithoutAnOpenRotationRegisterChangesAreLeftToTheInterlock) {
  const std::vector<UnitObservation> fleet = {Ready("u1"), Ready("u2")};
  for (auto journal :
       {std::optional<RotationJournal>(), std::optional(Journal(RotationPhase::kDone))}) {
    for (OperatorCommand c :
         {OperatorCommand::kClearNew, OperatorCommand::kClearCurrent, OperatorCommand::kClearOld,
          OperatorCommand::kZeroize, OperatorCommand::kSetImmediate, OperatorCommand::kAddAdmin,
          OperatorCommand::kRemoveAdmin, OperatorCommand::kLoadNew}) {
      EXPECT_TRUE(Check(journal, fleet, c, kOther).allowed()) << OperatorCommandName(c);
    }
  }
}

// Issue 11, input 4: a mk setimm that reached u1 only, with no rotation
// journaled. Until recover --apply finishes it, the split is guarded like a
// rotation whose re-encryption is done: only what finishes it goes.
TEST(RegisterChangeGuardTest, UnfinishedSetImmediateOutsideARotationIsGuardedLikeOne) {
  const std::vector<UnitObservation> split = {Promoted("u1"), Ready("u2"), Ready("u3")};
  for (auto journal :
       {std::optional<RotationJournal>(), std::optional(Journal(RotationPhase::kDone))}) {
    // Finishing it: set immediate on the rest, adding an administrator.
    EXPECT_TRUE(Check(journal, split, OperatorCommand::kSetImmediate).allowed());
    EXPECT_TRUE(Check(journal, split, OperatorCommand::kAddAdmin).allowed());
    // Clearing the target from NEW on u2, u3 would need the parts again;
    // clearing OLD on u1 would drop the key storage's key there; another
    // key into NEW would split the fleet three ways.
    for (OperatorCommand c : {OperatorCommand::kClearNew, OperatorCommand::kClearOld,
                              OperatorCommand::kClearCurrent, OperatorCommand::kZeroize}) {
      const auto v = Check(journal, split, c);
      EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION") << OperatorCommandName(c);
      EXPECT_TRUE(Mentions(v.status, "set immediate from")) << v.status;
      EXPECT_NE(v.advice.find("recover --apply"), std::string::npos) << v.advice;
      EXPECT_EQ(v.advice.find("--abort"), std::string::npos) << v.advice;
    }
    EXPECT_EQ(ReasonOf(Check(journal, split, OperatorCommand::kLoadNew, kOther).status),
              "WOULD_WEDGE_ROTATION");
  }
}

TEST(RegisterChangeGuardTest, SetImmediateNeedsEveryUnitOfTheFleetSelected) {
  FleetManifest manifest;
  for (const char* name : {"unit1", "unit2", "unit3"}) {
    FleetUnit u;
    u.name = name;
    manifest.units.push_back(u);
  }
  const auto setimm = RequestedChange::Of(OperatorCommand::kSetImmediate);
  EXPECT_TRUE(CheckSelection(manifest, setimm).allowed());
  manifest.units[1].selected = false;
  const auto v = CheckSelection(manifest, setimm);
  EXPECT_EQ(ReasonOf(v.status), "UNIT_NOT_SELECTED") << v.status;
  EXPECT_TRUE(Mentions(v.status, "unit2 are not selected")) << v.status;
  EXPECT_NE(v.advice.find("hsmctl unit add unit2"), std::string::npos) << v.advice;
  // Loading or clearing NEW on some units only is how one unit is fixed.
  for (OperatorCommand c : {OperatorCommand::kLoadNew, OperatorCommand::kCommitNew,
                            OperatorCommand::kClearNew, OperatorCommand::kAddAdmin}) {
    EXPECT_TRUE(CheckSelection(manifest, RequestedChange::Of(c)).allowed())
        << OperatorCommandName(c);
  }
}

TEST(RegisterChangeGuardTest, SetImmediateOfAUnitCatchingUpWithTheFleetsCurrentIsAllowed) {
  FleetManifest manifest;
  for (const char* name : {"unit1", "unit2", "unit3"}) {
    FleetUnit u;
    u.name = name;
    u.selected = std::string(name) == "unit3";
    manifest.units.push_back(u);
  }
  const auto setimm = RequestedChange::Of(OperatorCommand::kSetImmediate);
  auto left_out = [](UnitObservation o) {
    o.unit.selected = false;
    return o;
  };
  auto selected = [](UnitObservation o) {
    o.unit.selected = true;
    return o;
  };
  // unit3 was replaced (blank) and set up again: its NEW holds the key that
  // unit1 and unit2 hold in CURRENT; set immediate on unit3 alone catches up.
  const auto caught_up = selected(Unit("unit3", Reg(v1::REGISTER_FULL_COMMITTED, kSrc), Empty()));
  EXPECT_TRUE(CheckSelection(manifest, setimm,
                             {left_out(NewLost("unit1")), left_out(NewLost("unit2")), caught_up})
                  .allowed());
  // Any other key in unit3's NEW moves the fleet's CURRENT: refused.
  EXPECT_EQ(ReasonOf(CheckSelection(manifest, setimm,
                                    {left_out(NewLost("unit1")), left_out(NewLost("unit2")),
                                     selected(Ready("unit3"))})
                         .status),
            "UNIT_NOT_SELECTED");
  // So is a catch-up to a key the units left out do not all hold, or that
  // cannot be checked (a unit left out does not answer).
  EXPECT_FALSE(CheckSelection(manifest, setimm,
                              {left_out(NewLost("unit1")), left_out(Promoted("unit2")), caught_up})
                   .allowed());
  EXPECT_FALSE(
      CheckSelection(manifest, setimm,
                     {left_out(NewLost("unit1")), left_out(Unreachable("unit2")), caught_up})
          .allowed());
  // Keys stored under another key than the one caught up with (left in OLD
  // by a set immediate by hand) would not be usable on unit3: refused, and
  // keys upgrade is named (found trying issue 16 as an operator).
  const std::vector<UnitObservation> fleet = {left_out(NewLost("unit1")),
                                              left_out(NewLost("unit2")), caught_up};
  EXPECT_TRUE(CheckSelection(manifest, setimm, fleet, {{WkidOfVp(kSrc), "", 10}}).allowed());
  const auto under_old = CheckSelection(manifest, setimm, fleet,
                                        {{WkidOfVp(kSrc), "", 10}, {WkidOfVp(kOther), "", 3}});
  EXPECT_EQ(ReasonOf(under_old.status), "UNIT_NOT_SELECTED") << under_old.status;
  EXPECT_TRUE(Mentions(under_old.status, "keys upgrade")) << under_old.status;
}

// --unit cannot hide a split of the fleet's CURRENT keys: the guard finds
// it over every unit of fleet.json (found trying issue 16 as an operator:
// mk clrnew --unit unit4,unit5 cleared the target where the split needed it).
TEST(RegisterChangeGuardTest, ASplitIsFoundOverEveryUnitNotOnlyTheSelectedOnes) {
  const std::vector<UnitObservation> instance = {Promoted("u1"), Ready("u2"), Ready("u3")};
  const std::vector<UnitObservation> selected = {Ready("u2"), Ready("u3")};
  // Without the instance the two selected units look like a fleet ready to
  // set immediate, and clearing NEW there looks harmless.
  EXPECT_TRUE(
      CheckRegisterChange(std::nullopt, selected, RequestedChange::Of(OperatorCommand::kClearNew))
          .allowed());
  const auto v = CheckRegisterChange(std::nullopt, selected,
                                     RequestedChange::Of(OperatorCommand::kClearNew), instance);
  EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION") << v.status;
  EXPECT_TRUE(CheckRegisterChange(std::nullopt, selected,
                                  RequestedChange::Of(OperatorCommand::kSetImmediate), instance)
                  .allowed());
}

TEST(RegisterChangeGuardTest, SetImmediateRefusedWhenUnitsHoldDifferentNewKeys) {
  const auto v =
      Check(std::nullopt, {Ready("u1"), HoldsOther("u2", v1::REGISTER_FULL_COMMITTED), Ready("u3")},
            OperatorCommand::kSetImmediate);
  ASSERT_FALSE(v.allowed());
  EXPECT_EQ(ReasonOf(v.status), "NEW_VP_DIFFERS");
  // Names each unit with its VP.
  EXPECT_TRUE(Mentions(v.status, "u1 NEW VP " + ShortId(kTgt))) << v.status;
  EXPECT_TRUE(Mentions(v.status, "u2 NEW VP " + ShortId(kOther))) << v.status;
}

TEST(RegisterChangeGuardTest, CommitRefusesUnitsWithDifferentNewKeysEvenUncommitted) {
  // Input 6: a third administrator cleared NEW on u3 and loaded her own X.
  const std::vector<UnitObservation> fleet = {
      Unit("u1", Reg(v1::REGISTER_FULL_UNCOMMITTED, kTgt), Reg(v1::REGISTER_VALID, kSrc)),
      Unit("u2", Reg(v1::REGISTER_FULL_UNCOMMITTED, kTgt), Reg(v1::REGISTER_VALID, kSrc)),
      HoldsOther("u3", v1::REGISTER_FULL_UNCOMMITTED)};
  const auto v = Check(std::nullopt, fleet, OperatorCommand::kCommitNew);
  EXPECT_EQ(ReasonOf(v.status), "NEW_VP_DIFFERS") << v.status;
  EXPECT_TRUE(Mentions(v.status, "u3 NEW VP " + ShortId(kOther))) << v.status;
}

TEST(RegisterChangeGuardTest, CommitRefusesAKeyOtherThanTheCustodiansParts) {
  // Input 6: X loaded everywhere; the parts (or --vp) say B.
  const std::vector<UnitObservation> fleet = {HoldsOther("u1", v1::REGISTER_FULL_UNCOMMITTED),
                                              HoldsOther("u2", v1::REGISTER_FULL_UNCOMMITTED)};
  const auto v = Check(std::nullopt, fleet, OperatorCommand::kCommitNew, kTgt);
  EXPECT_EQ(ReasonOf(v.status), "VP_MISMATCH") << v.status;
  EXPECT_TRUE(Mentions(v.status, "u1 (NEW VP " + ShortId(kOther) + ")")) << v.status;
  EXPECT_TRUE(Mentions(v.status, ShortId(kTgt))) << v.status;
  // The same VP as the parts is allowed.
  EXPECT_TRUE(Check(std::nullopt, fleet, OperatorCommand::kCommitNew, kOther).allowed());
}

// --- set immediate during a rotation (input 1) ----------------------------------

TEST(RegisterChangeGuardTest, SetImmediateMidReencryptionRefusedWithPointerToRecover) {
  const auto v = Check(Journal(RotationPhase::kReencrypting),
                       {Ready("u1"), Ready("u2"), Ready("u3")}, OperatorCommand::kSetImmediate);
  ASSERT_FALSE(v.allowed());
  EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION");
  EXPECT_TRUE(Mentions(v.status, "1000 of 3000")) << v.status;
  EXPECT_NE(v.advice.find("hsmctl recover --apply"), std::string::npos) << v.advice;
  EXPECT_NE(v.advice.find("mk rotate --resume"), std::string::npos) << v.advice;
}

TEST(RegisterChangeGuardTest, SetImmediateMidReencryptionOnPromotedUnitsOnlyIsAlreadyDone) {
  // Nothing left to promote: every unit already is (the command reports "already").
  EXPECT_TRUE(Check(Journal(RotationPhase::kReencrypting), {Promoted("u1"), Promoted("u2")},
                    OperatorCommand::kSetImmediate)
                  .allowed());
}

TEST(RegisterChangeGuardTest, SetImmediateAfterReencryptionAllowedUnlessANewKeyDiffers) {
  const RotationJournal j = Journal(RotationPhase::kReencrypted);
  EXPECT_TRUE(Check(j, {Ready("u1"), Promoted("u2")}, OperatorCommand::kSetImmediate).allowed());
  const auto v =
      Check(j, {HoldsOther("u1", v1::REGISTER_FULL_COMMITTED)}, OperatorCommand::kSetImmediate);
  EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION") << v.status;
}

// --- clearing registers during a rotation ------------------------------------------

TEST(RegisterChangeGuardTest, ClearNewHoldingTheTargetRefusedNamingAbortWhileNoUnitPromoted) {
  const auto v = Check(Journal(RotationPhase::kReencrypting), {Ready("u1"), Ready("u2")},
                       OperatorCommand::kClearNew);
  ASSERT_FALSE(v.allowed());
  EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION");
  EXPECT_TRUE(Mentions(v.status, "u1, u2")) << v.status;
  EXPECT_NE(v.advice.find("mk rotate --abort"), std::string::npos) << v.advice;
}

TEST(RegisterChangeGuardTest, ClearNewOnAHalfPromotedFleetDoesNotOfferAbort) {
  const auto v = Check(Journal(RotationPhase::kPromoting), {Promoted("u1"), Ready("u2")},
                       OperatorCommand::kClearNew);
  ASSERT_FALSE(v.allowed());
  EXPECT_TRUE(Mentions(v.status, "u2")) << v.status;
  EXPECT_EQ(v.advice.find("--abort"), std::string::npos) << v.advice;
}

TEST(RegisterChangeGuardTest, ClearNewAlreadyEmptyOrOnPromotedUnitsAllowed) {
  EXPECT_TRUE(Check(Journal(RotationPhase::kReencrypting), {NewLost("u1"), NewLost("u2")},
                    OperatorCommand::kClearNew)
                  .allowed());
  EXPECT_TRUE(Check(Journal(RotationPhase::kFinalizing), {Promoted("u1"), Promoted("u2")},
                    OperatorCommand::kClearNew)
                  .allowed());
  // A NEW register holding another key is no part of the rotation: clearing
  // it is the first step of reloading the target.
  EXPECT_TRUE(Check(Journal(RotationPhase::kReencrypting),
                    {NewLost("u1"), HoldsOther("u2", v1::REGISTER_FULL_COMMITTED)},
                    OperatorCommand::kClearNew)
                  .allowed());
}

TEST(RegisterChangeGuardTest, ClearCurrentAndZeroizeRefusedDuringARotation) {
  for (OperatorCommand c : {OperatorCommand::kClearCurrent, OperatorCommand::kZeroize}) {
    const auto v = Check(Journal(RotationPhase::kReencrypted), {Ready("u1")}, c);
    EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION") << OperatorCommandName(c);
  }
}

TEST(RegisterChangeGuardTest, ClearOldRefusedOnlyWhereOldHoldsTheSource) {
  // Before promotion OLD holds an older key: no part of the rotation.
  EXPECT_TRUE(Check(Journal(RotationPhase::kReencrypting),
                    {Unit("u1", Reg(v1::REGISTER_FULL_COMMITTED, kTgt),
                          Reg(v1::REGISTER_VALID, kSrc), Reg(v1::REGISTER_VALID, kOther))},
                    OperatorCommand::kClearOld)
                  .allowed());
  // Promoted: OLD holds the source, which finalization still needs.
  const auto v =
      Check(Journal(RotationPhase::kFinalizing), {Promoted("u1")}, OperatorCommand::kClearOld);
  EXPECT_EQ(ReasonOf(v.status), "WOULD_WEDGE_ROTATION") << v.status;
  EXPECT_NE(v.advice.find("recover --apply"), std::string::npos);
}

// --- loading and committing during a rotation -----------------------------------

TEST(RegisterChangeGuardTest, LoadOrCommitOfAnotherKeyDuringARotationRefused) {
  const RotationJournal j = Journal(RotationPhase::kReencrypting);
  for (OperatorCommand c : {OperatorCommand::kLoadNew, OperatorCommand::kCommitNew}) {
    EXPECT_EQ(ReasonOf(Check(j, {NewLost("u1")}, c, kOther).status), "WOULD_WEDGE_ROTATION")
        << OperatorCommandName(c);
    // Reloading the target itself is how a lost NEW is repaired.
    EXPECT_TRUE(Check(j, {NewLost("u1")}, c, kTgt).allowed()) << OperatorCommandName(c);
  }
  // A commit that quotes nothing commits what the units hold: X is refused.
  EXPECT_EQ(ReasonOf(Check(j, {HoldsOther("u1", v1::REGISTER_FULL_UNCOMMITTED)},
                           OperatorCommand::kCommitNew)
                         .status),
            "WOULD_WEDGE_ROTATION");
}

// --- administrators during a rotation ------------------------------------------------

TEST(RegisterChangeGuardTest, AdminChangesThatLeaveTooFewCommonSignersRefused) {
  const RotationJournal j = Journal(RotationPhase::kReencrypted);
  // Three administrators, threshold 2: removing one leaves two.
  const std::vector<UnitObservation> three = {
      Unit("u1", Reg(v1::REGISTER_FULL_COMMITTED, kTgt), Reg(v1::REGISTER_VALID, kSrc), Empty(), 3),
      Unit("u2", Reg(v1::REGISTER_FULL_COMMITTED, kTgt), Reg(v1::REGISTER_VALID, kSrc), Empty(),
           3)};
  EXPECT_TRUE(
      CheckRegisterChange(
          j, three, RequestedChange::Of(OperatorCommand::kRemoveAdmin).WithAdminName("admin2"))
          .allowed());
  const auto rm = CheckRegisterChange(
      j, {Ready("u1"), Ready("u2")},
      RequestedChange::Of(OperatorCommand::kRemoveAdmin).WithAdminName("admin0"));
  EXPECT_EQ(ReasonOf(rm.status), "WOULD_WEDGE_ROTATION") << rm.status;
  const auto th = CheckRegisterChange(
      j, three, RequestedChange::Of(OperatorCommand::kSetThresholds).WithSignatureThreshold(4));
  EXPECT_EQ(ReasonOf(th.status), "WOULD_WEDGE_ROTATION") << th.status;
  EXPECT_TRUE(
      CheckRegisterChange(
          j, three, RequestedChange::Of(OperatorCommand::kSetThresholds).WithSignatureThreshold(3))
          .allowed());
  EXPECT_TRUE(Check(j, three, OperatorCommand::kAddAdmin).allowed());
}

TEST(RegisterChangeGuardTest, UnitsThatDoNotAnswerAreLeftOut) {
  EXPECT_TRUE(Check(Journal(RotationPhase::kReencrypting), {Unreachable("u1"), NewLost("u2")},
                    OperatorCommand::kClearNew)
                  .allowed());
  EXPECT_FALSE(Check(Journal(RotationPhase::kReencrypting), {Unreachable("u1"), Ready("u2")},
                     OperatorCommand::kClearNew)
                   .allowed());
}

// --- abandoning a rotation (input 3) -----------------------------------------------

std::vector<WkidPairCount> Counts(int64_t under_src, int64_t pending_tgt) {
  std::vector<WkidPairCount> c;
  if (under_src > pending_tgt) c.push_back({WkidOfVp(kSrc), "", under_src - pending_tgt});
  if (pending_tgt > 0) c.push_back({WkidOfVp(kSrc), WkidOfVp(kTgt), pending_tgt});
  return c;
}

TEST(RotationAbortTest, AbortPossibleWhileNoUnitPromoted) {
  const auto counts = Counts(3000, 1000);
  // Input 3: NEW cleared everywhere, parts gone.
  EXPECT_TRUE(CheckAbort(Journal(RotationPhase::kReencrypting),
                         {NewLost("u1"), NewLost("u2"), NewLost("u3")}, counts)
                  .ok());
  EXPECT_TRUE(
      CheckAbort(Journal(RotationPhase::kReencrypted), {Ready("u1"), Ready("u2")}, counts).ok());
  EXPECT_TRUE(CheckAbort(Journal(RotationPhase::kPromoting), {Ready("u1")}, counts).ok());
}

TEST(RotationAbortTest, RefusedOnceAUnitPromotedOrWithoutARotation) {
  const auto counts = Counts(3000, 3000);
  absl::Status s =
      CheckAbort(Journal(RotationPhase::kPromoting), {Ready("u1"), Promoted("u2")}, counts);
  EXPECT_EQ(ReasonOf(s), "ROTATION_PROMOTED");
  EXPECT_TRUE(Mentions(s, "unit(s) u2")) << s;
  EXPECT_TRUE(Mentions(s, "recover --apply")) << s;
  EXPECT_EQ(ReasonOf(CheckAbort(Journal(RotationPhase::kFinalizing), {Ready("u1")}, counts)),
            "ROTATION_PROMOTED");
  EXPECT_EQ(ReasonOf(CheckAbort(std::nullopt, {Ready("u1")}, counts)), "NO_ROTATION_IN_PROGRESS");
  EXPECT_EQ(ReasonOf(CheckAbort(Journal(RotationPhase::kDone), {Ready("u1")}, counts)),
            "NO_ROTATION_IN_PROGRESS");
  // A unit that does not answer might have promoted.
  EXPECT_EQ(ReasonOf(CheckAbort(Journal(RotationPhase::kReencrypting),
                                {Ready("u1"), Unreachable("u2")}, counts)),
            "UNIT_UNREACHABLE");
}

TEST(RotationAbortTest, RefusedWhenAKeyWouldBeUnderAKeyNoUnitHolds) {
  // A key stored under the target only (no source blob) needs the target.
  std::vector<WkidPairCount> counts = Counts(10, 5);
  counts.push_back({WkidOfVp(kTgt), "", 2});
  absl::Status s =
      CheckAbort(Journal(RotationPhase::kReencrypting), {NewLost("u1"), NewLost("u2")}, counts);
  EXPECT_EQ(ReasonOf(s), "INTERLOCK") << s;
  // While a unit still holds the target in NEW, that key is safe.
  EXPECT_TRUE(CheckAbort(Journal(RotationPhase::kReencrypting), {Ready("u1")}, counts).ok());
}

class RotationAbortKeystoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hsmsim-abort-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    auto store = OpenSqliteKeystore((dir_ / "keystore.db").string(), true);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<Keystore> store_;
};

TEST_F(RotationAbortKeystoreTest, AbortDropsPendingBlobsClosesJournalAndKeepsEveryBlob) {
  std::vector<NewKey> keys;
  for (int i = 0; i < 30; ++i) {
    keys.push_back(NewKey{"key-" + std::to_string(i), "blob-" + std::to_string(i), WkidOfVp(kSrc)});
  }
  ASSERT_TRUE(store_->AddKeys(keys).ok());
  RotationJournal j = Journal(RotationPhase::kReencrypting);
  j.keys_total = 30;
  j.keys_done = 0;
  ASSERT_TRUE(store_->WriteJournal(j).ok());
  auto page = store_->ReadPage(0, 10);
  ASSERT_TRUE(page.ok());
  std::vector<RewrappedKey> pending;
  for (const StoredKey& k : *page) pending.push_back({k.id, "new-" + k.blob, WkidOfVp(kTgt)});
  ASSERT_TRUE(store_->StorePending(pending).ok());

  auto aborted = AbortRotation(*store_, {NewLost("u1"), NewLost("u2"), NewLost("u3")});
  ASSERT_TRUE(aborted.ok()) << aborted.status();
  EXPECT_EQ(aborted->pending_dropped, 10);
  EXPECT_EQ(aborted->journal.keys_done, 10);
  auto journal = store_->ReadJournal();
  ASSERT_TRUE(journal.ok());
  EXPECT_FALSE(journal->has_value());
  auto all = store_->ReadPage(0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 30u);
  for (size_t i = 0; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].blob, keys[i].blob);
    EXPECT_EQ((*all)[i].wkid, WkidOfVp(kSrc));
    EXPECT_TRUE((*all)[i].pending_blob.empty());
  }
  // A second abort finds nothing open.
  EXPECT_EQ(ReasonOf(AbortRotation(*store_, {NewLost("u1")}).status()), "NO_ROTATION_IN_PROGRESS");
}

TEST_F(RotationAbortKeystoreTest, RefusedAbortChangesNothing) {
  ASSERT_TRUE(store_->AddKeys({NewKey{"k", "b", WkidOfVp(kSrc)}}).ok());
  ASSERT_TRUE(store_->WriteJournal(Journal(RotationPhase::kPromoting)).ok());
  ASSERT_TRUE(store_->StorePending({{1, "nb", WkidOfVp(kTgt)}}).ok());
  EXPECT_EQ(ReasonOf(AbortRotation(*store_, {Promoted("u1"), Ready("u2")}).status()),
            "ROTATION_PROMOTED");
  auto journal = store_->ReadJournal();
  ASSERT_TRUE(journal.ok() && journal->has_value());
  EXPECT_EQ((*journal)->phase, RotationPhase::kPromoting);
  auto k = store_->FindKey("k");
  ASSERT_TRUE(k.ok() && k->has_value());
  EXPECT_EQ((*k)->pending_blob, "nb");
}

// --- recover from the states a forced or direct change leaves --------------------------

TEST(RecoveryAfterRegisterChangeTest, SetImmediateEverywhereMidReencryptionFinalizes) {
  // Input 1: set immediate accepted on every unit with 1000 of 3000 done.
  const RecoveryDecision d =
      DecideRecovery(Journal(RotationPhase::kReencrypting),
                     {Promoted("u1"), Promoted("u2"), Promoted("u3")}, Counts(3000, 1000), {});
  EXPECT_EQ(d.situation, RecoverySituation::kFinalizeKeystore) << d.observed;
  EXPECT_NE(d.observed.find("1000 of 3000"), std::string::npos) << d.observed;
  EXPECT_NE(d.action.find("OLD -> CURRENT"), std::string::npos) << d.action;
  EXPECT_FALSE(d.abort_possible);
}

TEST(RecoveryAfterRegisterChangeTest, SetImmediateOnSomeUnitsMidReencryptionContinues) {
  // The units still ready re-encrypt the rest, then promote.
  const RecoveryDecision d = DecideRecovery(Journal(RotationPhase::kReencrypting),
                                            {Promoted("u1"), Ready("u2")}, Counts(3000, 1000), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReencryptionUnfinished) << d.observed;
  EXPECT_FALSE(d.abort_possible);
}

TEST(RecoveryAfterRegisterChangeTest, NewClearedEverywhereNamesTheAbort) {
  // Input 3: NEW cleared, the parts gone: recover names the abort.
  const RecoveryDecision d =
      DecideRecovery(Journal(RotationPhase::kReencrypting),
                     {NewLost("u1"), NewLost("u2"), NewLost("u3")}, Counts(3000, 1000), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReloadNewRegister);
  EXPECT_TRUE(d.abort_possible);
  EXPECT_NE(d.action.find("hsmctl mk rotate --abort"), std::string::npos) << d.action;
}

TEST(RecoveryAfterRegisterChangeTest, NoAbortOfferedOnceAUnitPromoted) {
  const RecoveryDecision d = DecideRecovery(
      Journal(RotationPhase::kPromoting), {Promoted("u1"), NewLost("u2")}, Counts(3000, 3000), {});
  EXPECT_EQ(d.situation, RecoverySituation::kReloadNewRegister);
  EXPECT_FALSE(d.abort_possible);
  EXPECT_EQ(d.action.find("--abort"), std::string::npos) << d.action;
}

}  // namespace
}  // namespace hsmsim::host

// Issue 11, item 2, without processes: the keystore's record of unreadable
// and quarantined keys, recover's KEYS_UNREADABLE situation, and the
// interlock that keeps a quarantined key's master key held.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/interlock.h"
#include "host/keystore.h"
#include "host/recovery.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

const std::string kSrc(32, 'S');
const std::string kTgt(32, 'T');

v1::MasterKeyRegisterInfo Reg(v1::RegisterState state, const std::string& vp = "") {
  v1::MasterKeyRegisterInfo r;
  r.set_state(state);
  r.set_verification_pattern(vp);
  return r;
}

UnitObservation Unit(const std::string& name, const std::string& current_vp,
                     const std::string& old_vp) {
  v1::GetInfoResponse info;
  *info.mutable_new_register() = Reg(v1::REGISTER_EMPTY);
  *info.mutable_current_register() = Reg(v1::REGISTER_VALID, current_vp);
  *info.mutable_old_register() =
      old_vp.empty() ? Reg(v1::REGISTER_EMPTY) : Reg(v1::REGISTER_VALID, old_vp);
  FleetUnit unit;
  unit.name = name;
  return UnitObservation{unit, info};
}

class KeystoreQuarantineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqliteKeystore(tmp_.Join("keystore.db"), true);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    std::vector<NewKey> keys;
    for (int i = 1; i <= 5; ++i) keys.push_back(NewKey{StrCat("k", i), StrCat("blob", i), src_});
    ASSERT_TRUE(store_->AddKeys(keys).ok());
  }
  int64_t Id(const std::string& name) { return (*store_->FindKey(name))->id; }
  std::vector<std::string> NeedingRewrap() {
    std::vector<std::string> names;
    // The StatusOr must outlive the loop (a range-for over *temporary dangles).
    absl::StatusOr<std::vector<StoredKey>> page = store_->ReadNeedingRewrap(0, 100, src_, tgt_);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return names;
    for (const StoredKey& k : *page) names.push_back(k.name);
    return names;
  }

  test_support::TempDir tmp_;
  std::unique_ptr<Keystore> store_;
  const std::string src_ = WkidOfVp(kSrc);
  const std::string tgt_ = WkidOfVp(kTgt);
};

TEST_F(KeystoreQuarantineTest, OnlyAKeyWithARecordedProblemCanBeQuarantinedAllOrNothing) {
  EXPECT_EQ(ReasonOf(store_->SetQuarantined({"k2"}, true)), reason::kKeyNotUnreadable);
  ASSERT_TRUE(store_->RecordBlobProblems({{Id("k2"), "BLOB_AUTHENTICATION_FAILED"}}).ok());
  EXPECT_EQ((*store_->FindKey("k2"))->problem, "BLOB_AUTHENTICATION_FAILED");
  EXPECT_EQ(ReasonOf(store_->SetQuarantined({"k2", "k9"}, true)), reason::kNoSuchKey);
  EXPECT_EQ(ReasonOf(store_->SetQuarantined({"k2", "k3"}, true)), reason::kKeyNotUnreadable);
  EXPECT_FALSE((*store_->FindKey("k2"))->quarantined) << "nothing changes on a refusal";
  ASSERT_TRUE(store_->SetQuarantined({"k2"}, true).ok());
  EXPECT_TRUE((*store_->FindKey("k2"))->quarantined);
}

TEST_F(KeystoreQuarantineTest, QuarantinedKeysAreSkippedKeptAndCountedUntilReleased) {
  ASSERT_TRUE(store_
                  ->RecordBlobProblems(
                      {{Id("k2"), "BLOB_AUTHENTICATION_FAILED"}, {Id("k4"), "UNKNOWN_WKID"}})
                  .ok());
  ASSERT_TRUE(store_->SetQuarantined({"k2"}, true).ok());
  EXPECT_EQ(NeedingRewrap(), (std::vector<std::string>{"k1", "k3", "k4", "k5"}));
  EXPECT_TRUE(store_->ReadUnder(0, 100, src_)->size() == 4u);
  // A new check forgets k4's problem but keeps the quarantine.
  ASSERT_TRUE(store_->ClearBlobProblems().ok());
  EXPECT_EQ((*store_->FindKey("k4"))->problem, "");
  StoredKey k2 = **store_->FindKey("k2");
  EXPECT_TRUE(k2.quarantined);
  EXPECT_EQ(k2.blob, "blob2");
  EXPECT_EQ(k2.wkid, src_);
  auto counted = *store_->CountQuarantined();
  ASSERT_EQ(counted.size(), 1u);
  EXPECT_EQ(counted[0].wkid, src_);
  EXPECT_EQ(counted[0].count, 1);
  EXPECT_EQ(*store_->CountKeys(), 5) << "nothing is dropped";
  ASSERT_TRUE(store_->SetQuarantined({"k2"}, false).ok());
  EXPECT_EQ(NeedingRewrap().size(), 5u);
  EXPECT_TRUE(store_->CountQuarantined()->empty());
}

TEST(UnreadableKeysRecoveryTest, UnfinishedReencryptionWithUnreadableKeysNamesThemAndTheChoice) {
  RecoveryDecision d;
  d.situation = RecoverySituation::kReencryptionUnfinished;
  d.observed = "re-encryption not finished: 59 of 60 key(s) done";
  NoteUnreadableKeys(UnreadableKeys{1, {"key-7 (BLOB_AUTHENTICATION_FAILED)"}, 0}, d);
  EXPECT_EQ(d.situation, RecoverySituation::kKeysUnreadable);
  EXPECT_EQ(RecoverySituationName(d.situation), "KEYS_UNREADABLE");
  EXPECT_THAT(d.observed, HasSubstr("key-7 (BLOB_AUTHENTICATION_FAILED)"));
  EXPECT_THAT(d.action, HasSubstr("hsmctl keys quarantine"));
  EXPECT_THAT(d.action, HasSubstr("restore"));
  EXPECT_THAT(d.action, HasSubstr("recover --apply"));
}

TEST(UnreadableKeysRecoveryTest, OtherSituationsStayButListTheKeys) {
  RecoveryDecision d;
  d.situation = RecoverySituation::kSetImmediateAll;
  d.observed = "re-encryption finished";
  NoteUnreadableKeys(UnreadableKeys{2, {"a (X)", "b (Y)"}, 3}, d);
  EXPECT_EQ(d.situation, RecoverySituation::kSetImmediateAll);
  EXPECT_THAT(d.observed, HasSubstr("a (X), b (Y)"));
  EXPECT_THAT(d.observed, HasSubstr("3 key(s) are quarantined"));
  EXPECT_EQ(d.quarantined_count, 3);
  RecoveryDecision idle;
  NoteUnreadableKeys(UnreadableKeys{}, idle);
  EXPECT_EQ(idle.situation, RecoverySituation::kNothingToDo);
}

TEST(QuarantineHoldTest, ClearingTheOnlyCopyOfAQuarantinedKeysMasterKeyIsRefused) {
  // After a rotation S -> T: CURRENT T, OLD S, one quarantined key under S.
  std::vector<UnitObservation> units = {Unit("u1", kTgt, kSrc), Unit("u2", kTgt, kSrc)};
  std::vector<WkidPairCount> quarantined = {{WkidOfVp(kSrc), "", 1}};
  absl::Status s = CheckQuarantineHold(units, RegisterChange::kClearOld, quarantined);
  EXPECT_EQ(ReasonOf(s), reason::kKeysQuarantined) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("1 quarantined key(s)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("--release"));
  EXPECT_EQ(ReasonOf(CheckQuarantineHold(units, RegisterChange::kZeroize, quarantined)),
            reason::kKeysQuarantined);
  // Changes that keep S held are fine, and so is anything without quarantined keys.
  EXPECT_TRUE(CheckQuarantineHold(units, RegisterChange::kClearNew, quarantined).ok());
  EXPECT_TRUE(CheckQuarantineHold(units, RegisterChange::kClearCurrent, quarantined).ok());
  EXPECT_TRUE(CheckQuarantineHold(units, RegisterChange::kClearOld, {}).ok());
  // One unit still holding S is enough.
  EXPECT_TRUE(CheckQuarantineHold({Unit("u1", kTgt, kSrc), Unit("u2", kSrc, "")},
                                  RegisterChange::kClearOld, quarantined)
                  .ok());
}

}  // namespace
}  // namespace hsmsim::host

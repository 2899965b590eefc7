// Workloads and rotations sharing one keystore, with real processes: one
// rotation at a time (the keystore's rotation lock, naming its holder), keys
// create when the units disagree on CURRENT, and new key names that never
// collide with stored ones (issue 11, items 4, 8, 11 and 12).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

class WorkloadIntegrationTest : public RotationFixture {
 protected:
  std::unique_ptr<Keystore> Store() {
    auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", false);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
};

// Another process holds the rotation lock (this test, as a running mk
// rotate would): mk rotate, --resume and recover --apply are refused naming
// it and change nothing; once it is released the rotation runs.
TEST_F(WorkloadIntegrationTest, SecondRotationIsRefusedNamingTheHolder) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(300);
  auto store = Store();
  ASSERT_NE(store, nullptr);
  auto lock = store->LockRotation(RotationLockHolder::Self("mk rotate"));
  ASSERT_TRUE(lock.ok()) << lock.status();
  const std::string holder = StrCat("pid ", ::getpid(), " on ", (*lock)->holder().host);
  for (std::vector<std::string> args : {std::vector<std::string>{"mk", "rotate", "--sign", sign_},
                                        {"mk", "rotate", "--resume", "--sign", sign_},
                                        {"recover", "--apply", "--sign", sign_},
                                        {"mk", "rotate", "--abort"}}) {
    RunResult r = Hsmctl(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("ROTATION_LOCKED")) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(holder)) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("(mk rotate)")) << Describe(r);
  }
  EXPECT_EQ(JournalPhase(), "NONE");
  RunResult look = Hsmctl({"recover"});
  EXPECT_THAT(look.err, HasSubstr("a rotation is running now (" + holder)) << Describe(look);
  lock->reset();
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("reply was lost")));
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Two mk rotate started at the same time on one fleet: one rotates, the
// other changes nothing (refused by the lock while the first runs, or by
// the pre-checks once it finished: NEW is empty then). Never two runs with
// contradictory counts, never a lost reply that did not happen.
TEST_F(WorkloadIntegrationTest, TwoRotationsStartedTogetherOnlyOneRuns) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(3'000);
  RunResult results[2];
  std::thread second([&] { results[1] = Hsmctl({"mk", "rotate", "--sign", sign_}); });
  results[0] = Hsmctl({"mk", "rotate", "--sign", sign_});
  second.join();
  const int winner = results[0].exit_code == 0 ? 0 : 1;
  const RunResult& won = results[winner];
  const RunResult& lost = results[1 - winner];
  ASSERT_EQ(won.exit_code, 0) << Describe(won) << Describe(lost);
  EXPECT_EQ(lost.exit_code, 1) << Describe(lost);
  const bool locked = lost.err.find("ROTATION_LOCKED") != std::string::npos;
  const bool nothing_to_rotate = lost.err.find("nothing was changed") != std::string::npos;
  EXPECT_TRUE(locked || nothing_to_rotate) << Describe(lost);
  EXPECT_THAT(lost.out, ::testing::Not(HasSubstr("set immediate")));
  for (const RunResult* r : {&won, &lost}) {
    EXPECT_THAT(r->out + r->err, ::testing::Not(HasSubstr("reply was lost")));
  }
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// hsmctl dies in the middle of a rotation (as kill -9): its lock goes with
// it, and --resume takes it and finishes.
TEST_F(WorkloadIntegrationTest, RotationLockDiesWithItsHolder) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(300);
  RunResult r = HsmctlWithEnv({"mk", "rotate", "--sign", sign_, "--batch-size", "50"},
                              {"HSMSIM_TEST_CRASH_AT=reencrypt-batch-stored:100"});
  ASSERT_EQ(r.exit_code, 137) << Describe(r);
  auto holder = Store()->FindRotationLockHolder();
  ASSERT_TRUE(holder.ok());
  EXPECT_FALSE(holder->has_value());
  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  ExpectNoKeyLost();
}

// A set immediate done by hand that failed on unit3 (unit1 and unit2 on the
// next key, unit3 still on the first): keys create stores nothing rather
// than keys under two master keys, and says why and what to do.
TEST_F(WorkloadIntegrationTest, KeysCreateRefusesWhenUnitsDisagreeOnCurrent) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(50, /*faults=*/true);
  MustRun({"fault", "inject", "unit3", "before-persist", "return-error"});
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", sign_});
  ASSERT_NE(setimm.exit_code, 0) << Describe(setimm);
  RunResult create = Hsmctl({"keys", "create", "--count", "30"});
  EXPECT_EQ(create.exit_code, 1) << Describe(create);
  EXPECT_THAT(create.err, HasSubstr("CURRENT_VP_DIFFERS"));
  EXPECT_THAT(create.err, HasSubstr("unit3 hold CURRENT"));
  EXPECT_THAT(create.err, HasSubstr("hsmctl recover"));
  EXPECT_THAT(create.err, HasSubstr("no key was stored"));
  auto count = Store()->CountKeys();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 50);
}

// Input 4 led out: recover names the set immediate that reached unit1 and
// unit2 only (no rotation journaled), the guard refuses what would make the
// split worse, and recover --apply journals it as a rotation and finishes
// it: every unit on the next key, every key under it and unwrapping to the
// same bytes, keys create working again.
TEST_F(WorkloadIntegrationTest, SetImmediateThatFailedOnOneUnitIsFinishedByRecover) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(300, /*faults=*/true);
  MustRun({"fault", "inject", "unit3", "before-persist", "return-error"});
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", sign_});
  ASSERT_NE(setimm.exit_code, 0) << Describe(setimm);

  RunResult look = Hsmctl({"recover", "--json"});
  EXPECT_EQ(look.exit_code, 1) << Describe(look);
  json doc = json::parse(look.out);
  EXPECT_EQ(doc["situation"], "SET_IMMEDIATE_UNFINISHED") << look.out;
  EXPECT_EQ(doc["units_promoted"], json::array({"unit1", "unit2"})) << look.out;
  EXPECT_EQ(doc["units_to_promote"], json::array({"unit3"})) << look.out;
  EXPECT_EQ(doc["target_vp"], target_vp_) << look.out;
  EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("recover --apply --sign"));

  // What would make it worse is refused and changes nothing.
  RunResult clrnew = Hsmctl({"mk", "clrnew", "--sign", sign_});
  EXPECT_EQ(clrnew.exit_code, 1) << Describe(clrnew);
  EXPECT_THAT(clrnew.err, HasSubstr("WOULD_WEDGE_ROTATION"));
  EXPECT_THAT(clrnew.err, HasSubstr("reached some units only"));
  MustRun({"unit", "rm", "unit3"});
  RunResult partial = Hsmctl({"mk", "setimm", "--sign", sign_});
  EXPECT_EQ(partial.exit_code, 1) << Describe(partial);
  EXPECT_THAT(partial.err, HasSubstr("UNIT_NOT_SELECTED"));
  EXPECT_THAT(partial.err, HasSubstr("hsmctl unit add unit3"));
  MustRun({"unit", "add", "unit3"});

  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_THAT(apply.out, HasSubstr("journaled the unfinished set immediate"));
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
  MustRun({"keys", "create", "--count", "5", "--prefix", "after-"});
  num_keys_ += 5;
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

// An interrupted keys create left a gap: 20 keys key-1..key-20 and key-22.
// New names start above the highest stored number, not at count + 1.
TEST_F(WorkloadIntegrationTest, KeysCreateAfterAGapNeverCollides) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  {
    auto store = Store();
    auto first = store->FindKey("key-1");
    ASSERT_TRUE(first.ok() && first->has_value());
    ASSERT_TRUE(store->AddKeys({NewKey{"key-22", (*first)->blob, (*first)->wkid}}).ok());
  }
  RunResult create = Hsmctl({"keys", "create", "--count", "5"});
  ASSERT_EQ(create.exit_code, 0) << Describe(create);
  EXPECT_THAT(create.out, HasSubstr("created 5 key(s)"));
  auto store = Store();
  for (int n = 23; n <= 27; ++n) {
    auto key = store->FindKey(StrCat("key-", n));
    ASSERT_TRUE(key.ok());
    EXPECT_TRUE(key->has_value()) << n;
  }
  auto count = store->CountKeys();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 26);
}

// Issue 16, item 4: an operator's Ctrl-C during re-encryption stops the
// rotation at its next checkpoint with the journal at the phase reached and
// says so; every line printed before is in the output, even when hsmctl is
// killed outright with its output going to a pipe; mk rotate --status shows
// the journal; --resume finishes with no key lost.
TEST_F(WorkloadIntegrationTest, InterruptedRotationLeavesItsLinesAndItsJournal) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(2'000);
  RunResult killed = HsmctlWithEnv({"mk", "rotate", "--sign", sign_, "--batch-size", "250"},
                                   {"HSMSIM_TEST_CRASH_AT=reencrypt-batch-stored:500"});
  ASSERT_EQ(killed.exit_code, 137) << Describe(killed);
  EXPECT_THAT(killed.out, HasSubstr("pre-checks passed on 3 unit(s); rotating 2000 key(s)"))
      << Describe(killed);

  RunResult stopped =
      HsmctlWithEnv({"mk", "rotate", "--resume", "--sign", sign_, "--batch-size", "250"},
                    {"HSMSIM_TEST_INTERRUPT_AT=reencrypt-batch-stored:1000"});
  EXPECT_EQ(stopped.exit_code, 1) << Describe(stopped);
  EXPECT_THAT(stopped.out, HasSubstr("resuming the rotation at phase REENCRYPTING"));
  EXPECT_THAT(stopped.err, HasSubstr("INTERRUPTED: interrupted by SIGINT (Ctrl-C) at "
                                     "reencrypt-batch-stored"));
  EXPECT_THAT(stopped.err, HasSubstr("journaled at phase REENCRYPTING"));
  EXPECT_EQ(JournalPhase(), "REENCRYPTING");

  RunResult status = Hsmctl({"mk", "rotate", "--status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  json doc = json::parse(status.out);
  EXPECT_EQ(doc["journal_phase"], "REENCRYPTING") << status.out;
  EXPECT_GE(doc["keys_done"].get<int64_t>(), 1000) << status.out;
  EXPECT_EQ(doc["keys_total"].get<int64_t>(), 2000) << status.out;
  EXPECT_EQ(doc["target_vp"], target_vp_) << status.out;
  EXPECT_TRUE(doc["lock_holder"].is_null()) << status.out;
  // What stopped it is kept beside the journal, after its output is gone.
  ASSERT_TRUE(doc["last_error"].is_object()) << status.out;
  EXPECT_THAT(doc["last_error"]["error"].get<std::string>(),
              HasSubstr("INTERRUPTED: interrupted by SIGINT (Ctrl-C) at reencrypt-batch-stored"));
  EXPECT_EQ(doc["last_error"]["phase"], "REENCRYPTING") << status.out;
  EXPECT_FALSE(doc["last_error"]["recorded_at"].get<std::string>().empty()) << status.out;
  RunResult text = Hsmctl({"mk", "rotate", "--status"});
  EXPECT_THAT(text.out, HasSubstr("rotation lock: free"));
  EXPECT_THAT(text.out, HasSubstr("last error: INTERRUPTED: "));
  EXPECT_THAT(text.out, HasSubstr("(at phase REENCRYPTING, "));

  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  EXPECT_EQ(JournalPhase(), "DONE");
  // A rotation that finished drops the record.
  RunResult done = Hsmctl({"mk", "rotate", "--status", "--json"});
  const json done_doc = json::parse(done.out);
  EXPECT_TRUE(done_doc["last_error"].is_null()) << done.out;
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

}  // namespace
}  // namespace hsmsim::host

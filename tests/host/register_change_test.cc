// Register-changing commands against an open rotation, abandoning a
// rotation, the commit's verification pattern, and re-running a command
// after a partial failure (issue 11, inputs 1, 3, 6 and 10), with real
// hsmctl and hsmsim-unit processes. Each case ends with proof that no key
// was lost (keys verify, sample data keys unwrap to the same bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

class RegisterChangeTest : public RotationFixture {
 protected:
  // InterruptReencryption starts mk rotate and kills hsmctl once about
  // `done` keys are re-encrypted (HSMSIM_TEST_CRASH_AT).
  void InterruptReencryption(int done) {
    RunResult r = HsmctlWithEnv({"mk", "rotate", "--sign", sign_, "--batch-size", "250"},
                                {StrCat("HSMSIM_TEST_CRASH_AT=reencrypt-batch-stored:", done)});
    ASSERT_EQ(r.exit_code, 137) << Describe(r);
    ASSERT_EQ(JournalPhase(), "REENCRYPTING");
  }

  json RecoverJson() {
    RunResult r = Hsmctl({"recover", "--json"});
    EXPECT_FALSE(r.out.empty()) << Describe(r);
    return r.out.empty() ? json::object() : json::parse(r.out);
  }

  // SelectOnly changes the fleet's selection to `names` (all units when
  // empty), as an operator working on some units does.
  void SelectOnly(const std::vector<std::string>& names) {
    FleetManifest m = Manifest();
    for (FleetUnit& u : m.units) {
      u.selected = names.empty() || std::find(names.begin(), names.end(), u.name) != names.end();
    }
    ASSERT_TRUE(SaveFleetManifest(fleet_, m).ok());
  }

  std::string Keygen(const std::string& name) {
    const std::string file = tmp_.Join(name + ".key");
    RunResult r =
        RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file, "--kdf-cost", "10000"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return file;
  }

  v1::GetInfoResponse Info(const std::string& unit) {
    auto info = Client(unit)->GetInfo();
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : v1::GetInfoResponse{};
  }

  // ExpectAlready checks a --json report: the units in `already` report
  // "already", the others did the change, and every unit succeeded.
  static void ExpectAlready(const RunResult& r, const std::vector<std::string>& already) {
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    json doc = json::parse(r.out);
    EXPECT_TRUE(doc["ok"].get<bool>()) << r.out;
    for (const json& u : doc["units"]) {
      const std::string name = u["unit"];
      const bool expected = std::find(already.begin(), already.end(), name) != already.end();
      EXPECT_EQ(u.value("already", false), expected) << name << ": " << r.out;
    }
  }
};

// Input 1: set immediate during re-encryption is refused and points to
// recover; when it happens anyway (an older hsmctl, --force), recover
// finishes the rotation and keys create works again.
TEST_F(RegisterChangeTest, SetImmediateMidReencryptionRefusedAndRecoverFinishesWhenForced) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(3'000);
  InterruptReencryption(1'000);

  RunResult refused = Hsmctl({"mk", "setimm", "--sign", sign_});
  EXPECT_EQ(refused.exit_code, 1) << Describe(refused);
  EXPECT_THAT(refused.err, HasSubstr("WOULD_WEDGE_ROTATION"));
  EXPECT_THAT(refused.err, HasSubstr("of 3000 key(s)"));
  EXPECT_THAT(refused.err, HasSubstr("hsmctl recover --apply"));
  for (const std::string& unit : UnitNames()) {
    EXPECT_EQ(ToHex(Info(unit).new_register().verification_pattern()), target_vp_) << unit;
  }

  RunResult forced = Hsmctl({"mk", "setimm", "--force", "--sign", sign_});
  ASSERT_EQ(forced.exit_code, 0) << Describe(forced);
  json look = RecoverJson();
  EXPECT_EQ(look["situation"], "FINALIZE_KEYSTORE") << look.dump();

  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
  MustRun({"keys", "create", "--count", "5", "--prefix", "after-"});
  num_keys_ += 5;
  ExpectNoKeyLost();
}

// Input 1 through the units themselves (a direct, signed SET_IMMEDIATE on
// every unit): mk rotate --resume finishes it too.
TEST_F(RegisterChangeTest, SetImmediateIssuedDirectlyToEveryUnitResumeFinishes) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(3'000);
  InterruptReencryption(1'000);
  for (const std::string& unit : UnitNames()) {
    v1::Command op;
    op.mutable_set_immediate();
    ASSERT_TRUE(Issue(unit, op).ok()) << unit;
  }
  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  EXPECT_THAT(resume.out, HasSubstr("every unit already promoted"));
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Input 3: NEW cleared mid-rotation and the parts gone: recover names the
// abort, the abort drops the pending blobs and keeps every key under A,
// and a rotation to a fresh key C then works.
TEST_F(RegisterChangeTest, RotationNoUnitPromotedIsAbandonedThenRotatesToAFreshKey) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(3'000);
  InterruptReencryption(1'000);

  RunResult clrnew = Hsmctl({"mk", "clrnew", "--sign", sign_});
  EXPECT_EQ(clrnew.exit_code, 1) << Describe(clrnew);
  EXPECT_THAT(clrnew.err, HasSubstr("WOULD_WEDGE_ROTATION"));
  EXPECT_THAT(clrnew.err, HasSubstr("hsmctl mk rotate --abort"));
  MustRun({"mk", "clrnew", "--force", "--sign", sign_});
  for (const std::string& part : next_parts_) std::filesystem::remove(part);

  json look = RecoverJson();
  EXPECT_EQ(look["situation"], "RELOAD_NEW_REGISTER") << look.dump();
  EXPECT_TRUE(look["abort_possible"].get<bool>());
  EXPECT_THAT(look["action"].get<std::string>(), HasSubstr("hsmctl mk rotate --abort"));
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_NE(apply.exit_code, 0);
  EXPECT_THAT(apply.err, HasSubstr("hsmctl mk rotate --abort"));
  RunResult fresh = Hsmctl({"mk", "rotate", "--sign", sign_});
  EXPECT_THAT(fresh.err, HasSubstr("ROTATION_IN_PROGRESS"));
  EXPECT_THAT(fresh.err, HasSubstr("hsmctl mk rotate --abort"));

  RunResult abort = Hsmctl({"mk", "rotate", "--abort", "--json"});
  ASSERT_EQ(abort.exit_code, 0) << Describe(abort);
  json doc = json::parse(abort.out);
  EXPECT_GE(doc["pending_blobs_dropped"].get<int>(), 1'000) << abort.out;
  EXPECT_EQ(JournalPhase(), "NONE");
  ExpectNoKeyLost(/*rotated=*/false);
  RunResult again = Hsmctl({"mk", "rotate", "--abort"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("NO_ROTATION_IN_PROGRESS"));

  next_parts_ = MakeParts("fresh");
  target_vp_ = VpOfXor(next_parts_);
  MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});
  MustRun({"mk", "commit", "--parts", Join(next_parts_), "--sign", sign_});
  MustRun({"mk", "rotate", "--sign", sign_});
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Item 3's other side: once a unit promoted, abort is refused with a reason
// and recover finishes the rotation.
TEST_F(RegisterChangeTest, AbortRefusedOnceAUnitPromoted) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(500);
  RunResult r =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=unit-promoted:1"});
  ASSERT_EQ(r.exit_code, 137) << Describe(r);
  RunResult abort = Hsmctl({"mk", "rotate", "--abort"});
  EXPECT_EQ(abort.exit_code, 1) << Describe(abort);
  EXPECT_THAT(abort.err, HasSubstr("ROTATION_PROMOTED"));
  EXPECT_THAT(abort.err, HasSubstr("unit1"));
  json look = RecoverJson();
  EXPECT_FALSE(look["abort_possible"].get<bool>()) << look.dump();
  MustRun({"recover", "--apply", "--sign", sign_});
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Input 6: a third administrator alone clears NEW and loads her own key X;
// the commit signed by the other two quotes the custodians' VP (or asks for
// confirmation) and commits nothing.
TEST_F(RegisterChangeTest, CommitCatchesAKeyOtherThanTheCustodiansParts) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(100);
  const std::string carol = Keygen("carol");
  MustRun({"admin", "add", carol, "--sign", sign_});
  MustRun({"mk", "clrnew", "--sign", sign_});
  MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});  // B, uncommitted
  // Carol alone replaces B with X.
  const std::vector<std::string> x_parts = MakeParts("carol");
  const std::string x_vp = VpOfXor(x_parts);
  MustRun({"mk", "clrnew", "--sign", carol});
  MustRun({"mk", "load", "--parts", Join(x_parts), "--sign", carol});

  RunResult no_vp = Hsmctl({"mk", "commit", "--sign", sign_});
  EXPECT_EQ(no_vp.exit_code, 1) << Describe(no_vp);
  EXPECT_THAT(no_vp.err, HasSubstr("CONFIRMATION_REQUIRED"));
  EXPECT_THAT(no_vp.err, HasSubstr(x_vp));  // shown, so the operator can compare
  RunResult parts = Hsmctl({"mk", "commit", "--parts", Join(next_parts_), "--sign", sign_});
  EXPECT_EQ(parts.exit_code, 1) << Describe(parts);
  EXPECT_THAT(parts.err, HasSubstr("VP_MISMATCH"));
  EXPECT_THAT(parts.err, HasSubstr("unit3"));
  RunResult vp = Hsmctl({"mk", "commit", "--vp", target_vp_, "--sign", sign_});
  EXPECT_EQ(vp.exit_code, 1) << Describe(vp);
  EXPECT_THAT(vp.err, HasSubstr("VP_MISMATCH"));
  for (const std::string& unit : UnitNames()) {
    EXPECT_EQ(Info(unit).new_register().state(), v1::REGISTER_FULL_UNCOMMITTED) << unit;
  }
  // The custodians reload B; the commit quoting their parts goes through.
  MustRun({"mk", "clrnew", "--sign", sign_});
  MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});
  MustRun({"mk", "commit", "--parts", Join(next_parts_), "--sign", sign_});
  MustRun({"mk", "rotate", "--sign", sign_});
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Input 6: units with different NEW values are never committed (or
// promoted) together, whatever the commit quotes; --yes commits an agreed
// NEW without asking.
TEST_F(RegisterChangeTest, UnitsWithDifferentNewKeysAreNeverCommittedTogether) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(100);
  MustRun({"mk", "clrnew", "--sign", sign_});
  MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});
  const std::vector<std::string> x_parts = MakeParts("other");
  SelectOnly({"unit3"});
  MustRun({"mk", "clrnew", "--sign", sign_});
  MustRun({"mk", "load", "--parts", Join(x_parts), "--sign", sign_});
  SelectOnly({});
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"mk", "commit", "--yes", "--sign", sign_},
        std::vector<std::string>{"mk", "commit", "--parts", Join(next_parts_), "--sign", sign_}}) {
    RunResult r = Hsmctl(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("NEW_VP_DIFFERS"));
    EXPECT_THAT(r.err, HasSubstr("unit3 NEW VP " + VpOfXor(x_parts).substr(0, 16)));
    EXPECT_THAT(r.err, HasSubstr("unit1 NEW VP " + target_vp_.substr(0, 16)));
  }
  for (const std::string& unit : UnitNames()) {
    EXPECT_EQ(Info(unit).new_register().state(), v1::REGISTER_FULL_UNCOMMITTED) << unit;
  }
  SelectOnly({"unit3"});
  MustRun({"mk", "clrnew", "--sign", sign_});
  MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});
  SelectOnly({});
  RunResult yes = Hsmctl({"mk", "commit", "--yes", "--sign", sign_});
  ASSERT_EQ(yes.exit_code, 0) << Describe(yes);
  MustRun({"mk", "rotate", "--sign", sign_});
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Input 10: after a command reached only some units, running it again on
// every unit reports "already" for those and exits 0.
TEST_F(RegisterChangeTest, RerunAfterPartialFailureReportsAlreadyAndSucceeds) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(100);
  const std::string carol = Keygen("carol");
  auto partly_then_all = [&](const std::vector<std::string>& args) {
    SelectOnly({"unit1"});
    MustRun(args);
    SelectOnly({});
    std::vector<std::string> all = args;
    all.push_back("--json");
    ExpectAlready(Hsmctl(all), {"unit1"});
  };
  partly_then_all({"admin", "add", carol, "--sign", sign_});
  partly_then_all({"thresholds", "set", "--signature", "2", "--revocation", "1", "--sign", sign_});
  // Set immediate on some units only is refused (UNIT_NOT_SELECTED: it
  // would split the fleet's CURRENT); forced, the rerun on every unit
  // finishes it and unit1 reports "already".
  SelectOnly({"unit1"});
  RunResult partial = Hsmctl({"mk", "setimm", "--sign", sign_});
  EXPECT_EQ(partial.exit_code, 1) << Describe(partial);
  EXPECT_THAT(partial.err, HasSubstr("UNIT_NOT_SELECTED"));
  MustRun({"mk", "setimm", "--force", "--sign", sign_});
  SelectOnly({});
  ExpectAlready(Hsmctl({"mk", "setimm", "--sign", sign_, "--json"}), {"unit1"});
  MustRun({"keys", "upgrade"});  // the keys leave OLD, so OLD may be cleared
  partly_then_all({"mk", "clrold", "--sign", sign_});
  const std::vector<std::string> c_parts = MakeParts("c");
  partly_then_all({"mk", "load", "--parts", Join(c_parts), "--sign", sign_});
  partly_then_all({"mk", "commit", "--parts", Join(c_parts), "--sign", sign_});
  partly_then_all({"mk", "clrnew", "--sign", sign_});
  partly_then_all({"admin", "rm", "carol", "--sign", sign_});
  // Everything is done everywhere: a rerun of mk clrnew is "already" on
  // every unit; admin rm of a name no unit knows is refused (a misspelt
  // name must not read as done).
  ExpectAlready(Hsmctl({"mk", "clrnew", "--sign", sign_, "--json"}), UnitNames());
  RunResult rm = Hsmctl({"admin", "rm", "carol", "--sign", sign_});
  EXPECT_EQ(rm.exit_code, 1) << Describe(rm);
  EXPECT_THAT(rm.err, HasSubstr("NO_SUCH_ADMIN"));
  // The text form says it too.
  RunResult text = Hsmctl({"mk", "clrnew", "--sign", sign_});
  EXPECT_EQ(text.exit_code, 0) << Describe(text);
  EXPECT_THAT(text.out, HasSubstr("unit2: ok: already empty: NEW EMPTY"));
  partly_then_all({"mk", "clrcur", "--force", "--sign", sign_});
}

// Input 10 with a real partial failure: a unit that was down misses the
// change; after it is restarted the same command finishes the job.
TEST_F(RegisterChangeTest, RerunAfterAUnitWasDownFinishesTheJob) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(100);
  KillUnits({"unit2"});
  // (--force: the interlock cannot be checked while unit2 is down.)
  RunResult partial = Hsmctl({"mk", "clrnew", "--force", "--sign", sign_, "--timeout-ms", "2000"});
  EXPECT_EQ(partial.exit_code, 3) << Describe(partial);
  MustRun({"fleet", "restart", "unit2"});
  RunResult again = Hsmctl({"mk", "clrnew", "--sign", sign_, "--json"});
  ExpectAlready(again, {"unit1", "unit3"});
  for (const std::string& unit : UnitNames()) {
    EXPECT_EQ(Info(unit).new_register().state(), v1::REGISTER_EMPTY) << unit;
  }
  ExpectNoKeyLost(/*rotated=*/false);
}

// What else shares input 1's cause: every register change that would wedge
// the open rotation is refused, changes nothing, and names the way out.
TEST_F(RegisterChangeTest, EveryWedgingChangeDuringARotationIsRefused) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(1'000);
  InterruptReencryption(250);
  const std::vector<std::string> x_parts = MakeParts("x");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"mk", "clrcur", "--sign", sign_},
        std::vector<std::string>{"zeroize", "--sign", sign_},
        std::vector<std::string>{"mk", "clrnew", "--sign", sign_},
        std::vector<std::string>{"mk", "setimm", "--sign", sign_},
        std::vector<std::string>{"mk", "load", "--parts", Join(x_parts), "--sign", sign_},
        std::vector<std::string>{"admin", "rm", "alice", "--sign", sign_},
        std::vector<std::string>{"thresholds", "set", "--signature", "3", "--revocation", "2",
                                 "--sign", sign_}}) {
    RunResult r = Hsmctl(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("WOULD_WEDGE_ROTATION")) << args[0] << " " << args[1];
    EXPECT_THAT(r.err, AnyOf(HasSubstr("hsmctl recover"), HasSubstr("mk rotate --resume")));
  }
  EXPECT_EQ(RecoverJson()["situation"], "REENCRYPTION_UNFINISHED");
  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

}  // namespace
}  // namespace hsmsim::host

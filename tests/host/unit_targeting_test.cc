// Addressing units and the interlock over the whole instance, end to end
// (real hsmctl and hsmsim-unit processes): --unit overrides the selection
// for one command, unit add / rm take several names all or nothing, the
// interlock counts every unit of fleet.json (selected or not, answering or
// not), and a forced change the interlock would refuse needs the signature
// threshold.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class UnitTargetingTest : public RotationFixture {
 protected:
  // Status returns each unit's status document by name (status --json);
  // `extra` adds options such as --unit.
  std::map<std::string, json> Status(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"status", "--json", "--long"};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult st = Hsmctl(args);
    EXPECT_EQ(st.exit_code, 0) << Describe(st);
    std::map<std::string, json> out;
    if (st.exit_code != 0) return out;
    const json doc = json::parse(st.out);  // kept alive across the loop
    for (const json& u : doc["units"]) out[u["unit"].get<std::string>()] = u;
    return out;
  }

  std::map<std::string, bool> Selected() {
    std::map<std::string, bool> out;
    for (const FleetUnit& u : Manifest().units) out[u.name] = u.selected;
    return out;
  }
};

const std::map<std::string, bool> kAllSelected = {
    {"unit1", true}, {"unit2", true}, {"unit3", true}};

TEST_F(UnitTargetingTest, UnitOptionSelectsTheNamedUnitsForOneCommandOnly) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  // A read: only the units named.
  std::map<std::string, json> two = Status({"--unit", "unit2,unit3"});
  EXPECT_EQ(two.size(), 2u);
  EXPECT_EQ(two.count("unit1"), 0u);
  // A change: only unit3's NEW is cleared.
  MustRun({"mk", "clrnew", "--unit", "unit3", "--sign", sign_});
  std::map<std::string, json> all = Status();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all["unit3"]["registers"]["new"]["state"], "EMPTY");
  EXPECT_EQ(all["unit1"]["registers"]["new"]["state"], "FULL_COMMITTED");
  EXPECT_EQ(all["unit2"]["registers"]["new"]["state"], "FULL_COMMITTED");
  // fleet.json's selection is what it was.
  EXPECT_EQ(Selected(), kAllSelected);
}

TEST_F(UnitTargetingTest, AnUnknownUnitNameIsRefusedBeforeAnythingIsDone) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  RunResult r = Hsmctl({"mk", "clrnew", "--unit", "unit1,unit9", "--sign", sign_});
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("NO_SUCH_UNIT"));
  EXPECT_THAT(r.err, HasSubstr("unit9"));
  EXPECT_THAT(r.out, Not(HasSubstr("unit1: ok")));
  EXPECT_EQ(Status()["unit1"]["registers"]["new"]["state"], "FULL_COMMITTED");
}

// Set immediate on some units only would split the fleet's CURRENT:
// the units --unit leaves out count as not selected.
TEST_F(UnitTargetingTest, SetImmediateAndRotationOnASubsetAreRefused) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  RunResult setimm = Hsmctl({"mk", "setimm", "--unit", "unit1", "--sign", sign_});
  EXPECT_EQ(setimm.exit_code, 1) << Describe(setimm);
  EXPECT_THAT(setimm.err, HasSubstr("UNIT_NOT_SELECTED"));
  EXPECT_THAT(setimm.err, HasSubstr("unit2, unit3"));
  EXPECT_THAT(setimm.err, HasSubstr("in --unit too"));
  RunResult rotate = Hsmctl({"mk", "rotate", "--unit", "unit1,unit2", "--sign", sign_});
  EXPECT_EQ(rotate.exit_code, 1) << Describe(rotate);
  EXPECT_THAT(rotate.out + rotate.err, HasSubstr("all-units-selected"));
  EXPECT_EQ(JournalPhase(), "NONE");
  for (const auto& [name, u] : Status()) {
    EXPECT_EQ(u["registers"]["new"]["state"], "FULL_COMMITTED") << name;
  }
  // Naming every unit is the same as fleet.json's selection.
  MustRun({"mk", "setimm", "--unit", "unit1,unit2,unit3", "--sign", sign_});
}

// Resuming, finishing (recover --apply) or abandoning a rotation works on
// every unit of the fleet: with units left out it would promote some units
// and finalize the keystore, or drop pending blobs, behind the others' back
// (found trying issue 16 as an operator: mk rotate --resume --unit).
TEST_F(UnitTargetingTest, ResumeRecoverAndAbortOfARotationNeedEveryUnit) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(2'000);
  RunResult stopped = HsmctlWithEnv({"mk", "rotate", "--sign", sign_, "--batch-size", "250"},
                                    {"HSMSIM_TEST_INTERRUPT_AT=reencrypt-batch-stored:500"});
  ASSERT_EQ(stopped.exit_code, 1) << Describe(stopped);
  ASSERT_EQ(JournalPhase(), "REENCRYPTING");
  const std::map<std::string, json> before = Status();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"mk", "rotate", "--resume", "--unit", "unit1,unit2", "--sign",
                                 sign_},
        std::vector<std::string>{"recover", "--apply", "--unit", "unit1", "--sign", sign_},
        std::vector<std::string>{"mk", "rotate", "--abort", "--unit", "unit2,unit3"}}) {
    RunResult r = Hsmctl(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("UNIT_NOT_SELECTED")) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("Nothing was changed")) << Describe(r);
    EXPECT_EQ(JournalPhase(), "REENCRYPTING");
  }
  // fleet.json's own selection counts the same.
  MustRun({"unit", "rm", "unit3"});
  RunResult deselected = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  EXPECT_EQ(deselected.exit_code, 1) << Describe(deselected);
  EXPECT_THAT(deselected.err, HasSubstr("hsmctl unit add unit3"));
  MustRun({"unit", "add", "unit3"});
  const std::map<std::string, json> after = Status();
  for (const auto& [name, u] : before) {
    EXPECT_EQ(u["registers"], after.at(name)["registers"]) << name;
  }
  MustRun({"mk", "rotate", "--resume", "--sign", sign_});
  ExpectNoKeyLost();
}

// Set immediate changes no unit while a selected unit does not answer (it
// would split the fleet's CURRENT keys); and it must be signed, which is
// said once before any unit is asked.
TEST_F(UnitTargetingTest, SetImmediateNeedsEveryUnitAnsweringAndSignatures) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  RunResult unsigned_setimm = Hsmctl({"mk", "setimm"});
  EXPECT_EQ(unsigned_setimm.exit_code, 1) << Describe(unsigned_setimm);
  EXPECT_THAT(unsigned_setimm.err, HasSubstr("NO_SIGNERS"));
  EXPECT_THAT(unsigned_setimm.out, Not(HasSubstr("INSUFFICIENT_SIGNATURES")));
  KillUnits({"unit3"});
  RunResult down = Hsmctl({"mk", "setimm", "--sign", sign_, "--timeout-ms", "2000"});
  EXPECT_EQ(down.exit_code, 3) << Describe(down);
  EXPECT_THAT(down.err, HasSubstr("changes no unit while unit3 does not answer"));
  MustRun({"fleet", "restart", "unit3"});
  for (const auto& [name, u] : Status()) {
    EXPECT_EQ(u["registers"]["new"]["state"], "FULL_COMMITTED") << name;
    EXPECT_NE(u["registers"]["current"]["verification_pattern"], target_vp_) << name;
  }
  // With NEW empty everywhere no key moves: no warning, the units refuse.
  MustRun({"mk", "clrnew", "--sign", sign_});
  RunResult empty = Hsmctl({"mk", "setimm", "--sign", sign_});
  EXPECT_EQ(empty.exit_code, 1) << Describe(empty);
  EXPECT_THAT(empty.err, Not(HasSubstr("moves")));
}

// An empty --unit is refused, not taken as "no unit". (CLI11 drops the
// empty item of "unit1,,unit2", leaving the two names.)
TEST_F(UnitTargetingTest, AnEmptyUnitNameIsRefused) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  RunResult r = Hsmctl({"mk", "clrnew", "--unit", "", "--sign", sign_});
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("empty unit name")) << Describe(r);
  EXPECT_EQ(Status()["unit1"]["registers"]["new"]["state"], "FULL_COMMITTED");
}

TEST_F(UnitTargetingTest, UnitAddAndRmTakeSeveralNamesAllOrNothing) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "3", "--instance", "it"});
  MustRun({"unit", "rm", "unit2", "unit3"});
  EXPECT_EQ(Selected(),
            (std::map<std::string, bool>{{"unit1", true}, {"unit2", false}, {"unit3", false}}));
  RunResult bad = Hsmctl({"unit", "add", "unit2", "unit7"});
  EXPECT_EQ(bad.exit_code, 4) << Describe(bad);
  EXPECT_THAT(bad.err, HasSubstr("NO_SUCH_UNIT"));
  EXPECT_THAT(bad.err, HasSubstr("unit7"));
  EXPECT_FALSE(Selected()["unit2"]) << "an unknown name must change nothing";
  RunResult add = Hsmctl({"unit", "add", "unit1", "unit2", "unit3", "--json"});
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  json doc = json::parse(add.out);
  ASSERT_EQ(doc["units"].size(), 3u);
  EXPECT_EQ(doc["units"][0]["already"], true);
  EXPECT_EQ(doc["units"][1]["already"], false);
  EXPECT_EQ(Selected(), kAllSelected);
}

// The case: zeroizing one unit while the others hold the key. The
// refusal is true now: not "no unit holds" the key (the others do), but the
// unit would lose the master key of stored keys, which no recover step gives
// back (the rotation explorer: unit rm, zeroize, heal); --force with the
// signature threshold takes it out of service.
TEST_F(UnitTargetingTest, ZeroizeOneUnitWhileTheOthersHoldTheKeyIsRefusedTruthfully) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  RunResult one = Hsmctl({"zeroize", "--unit", "unit3", "--sign", sign_});
  EXPECT_EQ(one.exit_code, 1) << Describe(one);
  // The truth: unit3 would lose its CURRENT (other units hold the key).
  EXPECT_THAT(one.err, HasSubstr("unit3 would have no CURRENT master key while 20 key(s)"));
  EXPECT_THAT(one.err, Not(HasSubstr("no unit holds")));
  EXPECT_THAT(one.err, Not(HasSubstr("keys upgrade")));
  EXPECT_THAT(one.err,
              HasSubstr("changed by this command: unit3; not selected (read, not changed): "
                        "unit1, unit2"));
  // Units left out of fleet.json's selection are read the same way.
  MustRun({"unit", "rm", "unit1", "unit2"});
  RunResult rm = Hsmctl({"zeroize", "--sign", sign_});
  EXPECT_EQ(rm.exit_code, 1) << Describe(rm);
  EXPECT_THAT(rm.err, Not(HasSubstr("no unit holds")));
  MustRun({"unit", "add", "unit1", "unit2"});
  MustRun({"zeroize", "--unit", "unit3", "--force", "--sign", sign_});
  std::map<std::string, json> st = Status();
  EXPECT_EQ(st["unit3"]["mode"], "IMPRINT");
  EXPECT_EQ(st["unit1"]["mode"], "NORMAL");
}

TEST_F(UnitTargetingTest, AUnitThatDoesNotAnswerIsUnknownNotEmpty) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  KillUnits({"unit2"});
  // Safe whatever unit2 holds: clearing NEW strands nothing.
  RunResult safe =
      Hsmctl({"mk", "clrnew", "--unit", "unit1", "--sign", sign_, "--timeout-ms", "2000"});
  EXPECT_EQ(safe.exit_code, 0) << Describe(safe);
  // Unsafe whatever unit2 holds: INTERLOCK (exit 1), not unverified; the
  // message says unit2 could not be checked.
  RunResult unsafe =
      Hsmctl({"mk", "clrcur", "--unit", "unit3", "--sign", sign_, "--timeout-ms", "2000"});
  EXPECT_EQ(unsafe.exit_code, 1) << Describe(unsafe);
  EXPECT_THAT(unsafe.err, HasSubstr("INTERLOCK: refused"));
  EXPECT_THAT(unsafe.err, HasSubstr("did not answer (could not be checked): unit2"));
}

// With --force one administrator alone could destroy the only copy of a
// master key; the fleet's signature threshold is 2.
TEST_F(UnitTargetingTest, AForcedDestructiveChangeNeedsTheSignatureThreshold) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  RunResult alone = Hsmctl({"zeroize", "--force", "--sign", alice_});
  EXPECT_EQ(alone.exit_code, 1) << Describe(alone);
  EXPECT_THAT(alone.err, HasSubstr("FORCE_NEEDS_SIGNATURE_THRESHOLD"));
  EXPECT_THAT(alone.err, HasSubstr("got 1 distinct administrator(s)"));
  for (const auto& [name, u] : Status()) EXPECT_EQ(u["mode"], "NORMAL") << name;
  // The same key twice is still one administrator.
  RunResult twice = Hsmctl({"mk", "clrcur", "--force", "--sign", alice_ + "," + alice_});
  EXPECT_EQ(twice.exit_code, 1) << Describe(twice);
  EXPECT_THAT(twice.err, HasSubstr("FORCE_NEEDS_SIGNATURE_THRESHOLD"));
  // A forced change the interlock would allow anyway needs one signature.
  MustRun({"mk", "clrnew", "--force", "--sign", alice_});
  // With the threshold, --force goes ahead.
  MustRun({"mk", "clrcur", "--force", "--unit", "unit1", "--sign", sign_});
  EXPECT_EQ(Status()["unit1"]["registers"]["current"]["state"], "EMPTY");
}

}  // namespace
}  // namespace hsmsim::host

// Master key rotation end to end: real hsmctl and hsmsim-unit processes on
// ephemeral loopback ports, a SQLite keystore, failures injected on purpose,
// and after every case proof that no key was lost (keys verify, sample data
// keys unwrap to the same bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>

#include "host/tls_certificates.h"
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

// The rotation suite on both keystores (issue 14, item 5): the fleet's
// SQLite file, and a database of a throwaway PostgreSQL cluster.
class RotationIntegrationTest : public RotationFixture,
                                public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    RotationFixture::SetUp();
    if (GetParam() == "postgresql") {
      ASSERT_NO_FATAL_FAILURE(UsePostgres());
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Keystores, RotationIntegrationTest,
                         ::testing::Values(std::string("sqlite"), std::string("postgresql")),
                         [](const auto& param_info) { return param_info.param; });

TEST_P(RotationIntegrationTest, RotatesThreeUnitsTenThousandKeys) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(10'000);
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("\nKMS CRK rewrap successful, waiting on cryptounit-mk-setimm.\n"));
  // The message comes after re-encryption and before set immediate.
  EXPECT_LT(r.out.find("KMS CRK rewrap successful"), r.out.find("set immediate"));
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
  // Right after a finished rotation (every NEW empty) there is nothing to do.
  RunResult rec = Hsmctl({"recover", "--json"});
  EXPECT_EQ(rec.exit_code, 0) << Describe(rec);
  EXPECT_EQ(json::parse(rec.out)["situation"], "NOTHING_TO_DO") << rec.out;
}

// The same ceremony, rotation and verification on a fleet that speaks only
// mutual TLS (fleet up --tls; docs/tls.md), with a unit killed and
// restarted on the way: every unit's certificate names its pinned unit id.
TEST_P(RotationIntegrationTest, RotatesAMutualTlsFleet) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(3'000, /*faults=*/false, /*tls=*/true);
  FleetManifest m = Manifest();
  ASSERT_FALSE(m.tls.empty());
  for (const FleetUnit& u : m.units) {
    EXPECT_TRUE(u.tls) << u.name;
    auto cert = ReadFileBytes(u.state_dir + "/tls-cert.pem");
    ASSERT_TRUE(cert.ok()) << cert.status();
    EXPECT_EQ(UnitIdOfCertificatePem(*cert), u.unit_id) << u.name;
  }
  for (const std::string& key : {m.tls.client_key, std::string("tls/ca.key")}) {
    EXPECT_EQ(fs::status(fleet_ + "/" + key).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write)
        << key;
  }
  ASSERT_NO_FATAL_FAILURE(KillUnits({"unit2"}));
  MustRun({"fleet", "restart", "unit2"});
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
  RunResult status = Hsmctl({"fleet", "status"});
  EXPECT_EQ(status.exit_code, 0) << Describe(status);
}

TEST_P(RotationIntegrationTest, UnitKilledDuringReencryptionResumeCompletes) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(6'000, /*faults=*/true);
  // Every unit dies in the middle of re-encryption: nothing is left to
  // re-encrypt with, so the rotation stops journaled at REENCRYPTING.
  for (const char* unit : {"unit1", "unit2", "unit3"}) {
    MustRun({"fault", "inject", unit, "reencrypt-after-blobs", "crash", "1500"});
  }
  RunResult r =
      Hsmctl({"mk", "rotate", "--sign", sign_, "--batch-size", "500", "--timeout-ms", "3000"});
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("KMS CRK rewrap successful")));
  EXPECT_EQ(JournalPhase(), "REENCRYPTING");
  RunResult rec = Hsmctl({"recover", "--json"});
  // Units are down: recover names them as the thing to fix.
  EXPECT_THAT(rec.out, HasSubstr("UNITS_UNREACHABLE")) << Describe(rec);
  for (const char* unit : {"unit1", "unit2", "unit3"}) MustRun({"fleet", "restart", unit});
  RunResult rec2 = Hsmctl({"recover", "--json"});
  EXPECT_THAT(rec2.out, HasSubstr("REENCRYPTION_UNFINISHED")) << Describe(rec2);
  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_, "--json"});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  json doc = json::parse(resume.out);
  // Blobs re-encrypted before the crash were skipped.
  EXPECT_GT(doc["keys_already_done"].get<int>(), 0) << resume.out;
  EXPECT_LT(doc["keys_rewrapped"].get<int>(), num_keys_) << resume.out;
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

TEST_P(RotationIntegrationTest, OneUnitDiesOthersFinishReencryptionThenRecoverPromotes) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(4'000, /*faults=*/true);
  MustRun({"fault", "inject", "unit2", "reencrypt-after-blobs", "crash", "500"});
  RunResult r =
      Hsmctl({"mk", "rotate", "--sign", sign_, "--batch-size", "250", "--timeout-ms", "3000"});
  // Re-encryption finishes on the other units; promotion stops before
  // touching any unit because unit2 does not answer.
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm."));
  EXPECT_EQ(JournalPhase(), "REENCRYPTED");
  MustRun({"fleet", "restart", "unit2"});
  RunResult rec = Hsmctl({"recover"});
  EXPECT_THAT(rec.out, HasSubstr("SET_IMMEDIATE_ALL")) << Describe(rec);
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

TEST_P(RotationIntegrationTest, SetImmediateReachedOnlySomeUnitsRecoverFinishesIt) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(3'000, /*faults=*/true);
  // Set immediate fails on unit1 (the first the rotation promotes).
  MustRun({"fault", "inject", "unit1", "before-persist", "return-error"});
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm."));
  // An operator then promotes unit2 by hand.
  v1::Command setimm;
  setimm.mutable_set_immediate();
  ASSERT_TRUE(Issue("unit2", setimm).ok());
  RunResult rec = Hsmctl({"recover", "--json"});
  EXPECT_EQ(rec.exit_code, 1) << Describe(rec);
  json doc = json::parse(rec.out);
  EXPECT_EQ(doc["situation"], "SET_IMMEDIATE_REST") << rec.out;
  EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("unit1, unit3 only"));
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_THAT(apply.out, HasSubstr("unit unit2: already promoted"));
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

TEST_P(RotationIntegrationTest, LostNewRegisterIsReloadedFromTheSamePartsBeforePromotion) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(2'000, /*faults=*/true);
  MustRun({"fault", "inject", "unit3", "before-persist", "return-error"});
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_NE(r.exit_code, 0) << Describe(r);
  // unit1 and unit2 were promoted before unit3 refused; now unit3 loses NEW.
  v1::Command clear;
  clear.mutable_clear_new_master_key();
  ASSERT_TRUE(Issue("unit3", clear).ok());
  RunResult rec = Hsmctl({"recover", "--json"});
  json doc = json::parse(rec.out);
  EXPECT_EQ(doc["situation"], "RELOAD_NEW_REGISTER") << rec.out;
  EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("Do not promote unit3"));
  // Other parts are refused without loading anything.
  RunResult wrong = Hsmctl({"recover", "--apply", "--sign", sign_, "--parts", Join(first_parts_)});
  EXPECT_EQ(wrong.exit_code, 4) << Describe(wrong);  // bad input: the part files
  EXPECT_THAT(wrong.err, HasSubstr("PARTS_DO_NOT_MATCH"));
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_, "--parts", Join(next_parts_)});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// One test per pre-check condition of the seed page: each is detected with a
// message that names the unit and the condition, and nothing changes.
struct PrecheckCase {
  const char* name;
  const char* reason;
  const char* unit;  // the unit the message must name ("" for fleet-wide)
};

// PrintTo names a case in test output and ctest -N instead of a hex dump of
// its pointers.
void PrintTo(const PrecheckCase& c, std::ostream* os) {
  *os << c.name << " (" << c.reason << (*c.unit != '\0' ? " on " : "") << c.unit << ")";
}

class RotationPrecheckTest : public RotationFixture,
                             public ::testing::WithParamInterface<PrecheckCase> {};

TEST_P(RotationPrecheckTest, DetectedNamedAndNothingChanged) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(500);
  const std::string c = GetParam().name;
  if (c == "not_all_selected") {
    MustRun({"unit", "rm", "unit3"});
  } else if (c == "other_instance") {
    v1::Command op;
    op.mutable_assign_instance()->set_instance("another-instance");
    ASSERT_TRUE(Issue("unit2", op).ok());
  } else if (c == "imprint_mode") {
    // Zeroize unit3 (forced past the interlock: its keys live on elsewhere).
    v1::Command op;
    op.mutable_zeroize();
    ASSERT_TRUE(Issue("unit3", op).ok());
  } else if (c == "thresholds_differ") {
    v1::Command op;
    op.mutable_set_thresholds()->set_signature_threshold(1);
    op.mutable_set_thresholds()->set_revocation_threshold(2);
    ASSERT_TRUE(Issue("unit2", op).ok());
  } else if (c == "no_common_admins") {
    const std::string carol = tmp_.Join("carol.key");
    ASSERT_EQ(RunHsmctl(tmp_, {"admin", "keygen", "--name", "carol", "--out", carol, "--kdf-cost",
                               "10000"})
                  .exit_code,
              0);
    auto key = ReadAdminKeyFile(carol, kPassword);
    ASSERT_TRUE(key.ok());
    v1::Command add;
    add.mutable_add_admin()->set_name("carol");
    add.mutable_add_admin()->set_public_key(key->public_key_der);
    ASSERT_TRUE(Issue("unit2", add).ok());
    auto bob = ReadAdminKeyFile(bob_, kPassword);
    v1::Command rm;
    rm.mutable_remove_admin()->set_key_id(crypto::AsString(bob->key_id));
    ASSERT_TRUE(Issue("unit2", rm).ok());
  } else if (c == "current_differs") {
    v1::Command op;
    op.mutable_clear_current_master_key();
    ASSERT_TRUE(Issue("unit2", op).ok());
  } else if (c == "new_not_committed") {
    v1::Command op;
    op.mutable_clear_new_master_key();
    ASSERT_TRUE(Issue("unit3", op).ok());
  }
  RunResult before = Hsmctl({"status", "--json", "--long"});
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(GetParam().reason)) << Describe(r);
  if (*GetParam().unit) {
    // The finding's line names the unit once, as its subject.
    EXPECT_THAT(r.err, HasSubstr(StrCat("pre-check failed: ", GetParam().unit, ": ")));
  }
  EXPECT_THAT(r.err, HasSubstr("nothing was changed"));
  EXPECT_EQ(JournalPhase(), "NONE");
  RunResult after = Hsmctl({"status", "--json", "--long"});
  EXPECT_EQ(before.out, after.out) << "a refused rotation changed a unit";
  if (c != "current_differs" && c != "imprint_mode") {
    ExpectNoKeyLost(/*rotated=*/false);
  }
}

INSTANTIATE_TEST_SUITE_P(
    SeedConditions, RotationPrecheckTest,
    ::testing::Values(PrecheckCase{"not_all_selected", "UNIT_NOT_SELECTED", "unit3"},
                      PrecheckCase{"other_instance", "WRONG_INSTANCE", "unit2"},
                      PrecheckCase{"imprint_mode", "IMPRINT_MODE", "unit3"},
                      PrecheckCase{"thresholds_differ", "THRESHOLDS_DIFFER", "unit2"},
                      PrecheckCase{"no_common_admins", "NO_COMMON_ADMINISTRATORS", ""},
                      PrecheckCase{"current_differs", "CURRENT_NOT_VALID", "unit2"},
                      PrecheckCase{"new_not_committed", "NEW_NOT_COMMITTED", "unit3"}),
    [](const ::testing::TestParamInfo<PrecheckCase>& param_info) {
      return std::string(param_info.param.name);
    });

TEST_P(RotationIntegrationTest, InterlocksRefuseToStrandKeys) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(1'000);
  // Before the rotation every key is under CURRENT: clearing it is refused,
  // and so is zeroizing.
  RunResult clrcur = Hsmctl({"mk", "clrcur", "--sign", sign_});
  EXPECT_EQ(clrcur.exit_code, 1) << Describe(clrcur);
  EXPECT_THAT(clrcur.err, HasSubstr("INTERLOCK"));
  EXPECT_THAT(clrcur.err, HasSubstr("1000 stored key(s)"));
  RunResult zeroize = Hsmctl({"zeroize", "--sign", sign_});
  EXPECT_EQ(zeroize.exit_code, 1) << Describe(zeroize);
  EXPECT_THAT(zeroize.err, HasSubstr("INTERLOCK"));
  // Clearing NEW strands nothing (keys are under CURRENT): allowed.
  RunResult clrnew = Hsmctl({"mk", "clrnew", "--sign", sign_});
  EXPECT_EQ(clrnew.exit_code, 0) << Describe(clrnew);
  ExpectNoKeyLost(/*rotated=*/false);
  // Set immediate with NEW empty is the unit's refusal, not the interlock.
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", sign_});
  EXPECT_EQ(setimm.exit_code, 1);
  EXPECT_THAT(setimm.out, HasSubstr("NEW_REGISTER_NOT_COMMITTED"));
  // --force overrides the interlock; recover then reports the keys at risk
  // and refuses to apply anything.
  RunResult forced = Hsmctl({"mk", "clrcur", "--force", "--sign", sign_});
  EXPECT_EQ(forced.exit_code, 0) << Describe(forced);
  RunResult rec = Hsmctl({"recover", "--json"});
  json doc = json::parse(rec.out);
  EXPECT_EQ(doc["situation"], "KEYS_AT_RISK") << rec.out;
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_NE(apply.exit_code, 0);
  RunResult verify = Hsmctl({"keys", "verify"});
  EXPECT_EQ(verify.exit_code, 1) << "keys verify must fail once CURRENT is gone";
}

// A second rotation is refused while one is journaled; keys created
// meanwhile are taken along (online rotation) and end under the target.
TEST_P(RotationIntegrationTest, RotationInProgressRefusesASecondStartAndTakesNewKeysAlong) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(1'000, /*faults=*/true);
  MustRun({"fault", "inject", "unit1", "before-persist", "return-error"});
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_NE(r.exit_code, 0);
  RunResult again = Hsmctl({"mk", "rotate", "--sign", sign_});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("ROTATION_IN_PROGRESS"));
  RunResult create = Hsmctl({"keys", "create", "--count", "5"});
  ASSERT_EQ(create.exit_code, 0) << Describe(create);
  EXPECT_THAT(create.out, HasSubstr("created 5 key(s)"));
  EXPECT_THAT(create.out, HasSubstr("5 of them are also re-encrypted under the rotation's target"));
  num_keys_ += 5;
  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

}  // namespace
}  // namespace hsmsim::host

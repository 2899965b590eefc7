// Master key rotation end to end: real hsmctl and hsmsim-unit processes on
// ephemeral loopback ports, a SQLite keystore, failures injected on purpose,
// and after every case proof that no key was lost (keys verify, sample data
// keys unwrap to the same bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "host/keystore.h"
#include "tests/host/hsmctl_harness.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

class RotationIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("HSMSIM_PASSWORD", kPassword, 1);
    setenv("HSMSIM_UNIT_BINARY", HSMSIM_UNIT_PATH, 1);
    unsetenv("HSMSIM_FLEET");
    fleet_ = tmp_ / "fleet";
    alice_ = tmp_ / "alice.key";
    bob_ = tmp_ / "bob.key";
    sign_ = alice_ + "," + bob_;
  }

  RunResult Hsmctl(std::vector<std::string> args, const std::string& stdin_path = "/dev/null") {
    args.push_back("--fleet");
    args.push_back(fleet_);
    return RunHsmctl(tmp_, std::move(args), stdin_path);
  }

  void MustRun(std::vector<std::string> args) {
    RunResult r = Hsmctl(args);
    ASSERT_EQ(r.exit_code, 0) << args[0] << " " << (args.size() > 1 ? args[1] : "") << "\n"
                              << Describe(r);
  }

  std::vector<std::string> MakeParts(const std::string& tag) {
    std::vector<std::string> parts;
    for (int i = 1; i <= 3; ++i) {
      parts.push_back(tmp_ / StrCat(tag, "-part", i));
      RunResult r =
          RunHsmctl(tmp_, {"keypart", "generate", "--out", parts.back(), "--kdf-cost", "10000"});
      EXPECT_EQ(r.exit_code, 0) << Describe(r);
    }
    return parts;
  }
  static std::string Join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
    return out;
  }

  // Prepare: a 3-unit fleet after the ceremony (2 admins, thresholds 2/2,
  // 3 parts, CURRENT valid), `keys` root keys, five wrapped sample data
  // keys, and the next master key loaded and committed in NEW.
  void Prepare(int keys, bool faults = false) {
    std::vector<std::string> up = {"fleet", "up", "--units", "3", "--instance", "it"};
    if (faults) up.push_back("--allow-fault-injection");
    MustRun(up);
    for (auto [name, file] : {std::pair{"alice", alice_}, std::pair{"bob", bob_}}) {
      RunResult r = RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file});
      ASSERT_EQ(r.exit_code, 0) << Describe(r);
    }
    MustRun({"admin", "add", alice_, bob_});
    MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", sign_});
    first_parts_ = MakeParts("first");
    MustRun({"mk", "load", "--parts", Join(first_parts_), "--sign", sign_});
    MustRun({"mk", "commit", "--sign", sign_});
    MustRun({"mk", "setimm", "--sign", sign_});
    MustRun({"keys", "create", "--count", std::to_string(keys)});
    num_keys_ = keys;
    std::mt19937 rng(42);
    for (int i = 0; i < 5; ++i) {
      Sample s;
      s.key = StrCat("key-", 1 + i * (keys / 5));
      s.plain = std::string(32, '\0');
      for (char& c : s.plain) c = static_cast<char>(rng());
      const std::string in = tmp_ / StrCat("sample", i);
      std::ofstream(in, std::ios::binary) << s.plain;
      RunResult r = Hsmctl({"keys", "wrap", "--key", s.key}, in);
      ASSERT_EQ(r.exit_code, 0) << Describe(r);
      s.wrapped = r.out;
      samples_.push_back(s);
    }
    next_parts_ = MakeParts("next");
    MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});
    MustRun({"mk", "commit", "--sign", sign_});
    target_vp_ = VpOfXor(next_parts_);
  }

  // ExpectNoKeyLost: every key usable on every unit, all under the target
  // master key, and every sample unwraps to the same bytes.
  void ExpectNoKeyLost(bool rotated = true) {
    RunResult v = Hsmctl({"keys", "verify", "--json"});
    ASSERT_EQ(v.exit_code, 0) << Describe(v);
    json doc = json::parse(v.out);
    EXPECT_EQ(doc["keys"].get<int>(), num_keys_);
    EXPECT_EQ(doc["failed"].get<int>(), 0);
    if (rotated) {
      ASSERT_EQ(doc["per_wkid"].size(), 1u) << v.out;
      EXPECT_EQ(doc["per_wkid"][0]["wkid"].get<std::string>(), target_vp_.substr(0, 32));
      EXPECT_EQ(doc["per_wkid"][0]["usable_on_every_unit"].get<int>(), num_keys_);
    }
    for (size_t i = 0; i < samples_.size(); ++i) {
      const std::string in = tmp_ / StrCat("wrapped", i);
      std::ofstream(in) << samples_[i].wrapped;
      RunResult r = Hsmctl({"keys", "unwrap", "--key", samples_[i].key}, in);
      ASSERT_EQ(r.exit_code, 0) << Describe(r);
      EXPECT_EQ(r.out, samples_[i].plain) << "sample " << i;
    }
  }

  void ExpectAllCurrentIsTarget() {
    RunResult st = Hsmctl({"status", "--json", "--long"});
    ASSERT_EQ(st.exit_code, 0) << Describe(st);
    json doc = json::parse(st.out);
    ASSERT_EQ(doc["units"].size(), 3u);
    for (const json& u : doc["units"]) {
      EXPECT_EQ(u["registers"]["current"]["state"], "VALID") << u.dump();
      EXPECT_EQ(u["registers"]["current"]["verification_pattern"], target_vp_) << u.dump();
      EXPECT_EQ(u["registers"]["new"]["state"], "EMPTY") << u.dump();
    }
  }

  std::string JournalPhase() {
    auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", false);
    if (!store.ok()) return "NO_KEYSTORE";
    auto j = (*store)->ReadJournal();
    if (!j.ok() || !j->has_value()) return "NONE";
    return std::string(RotationPhaseName((*j)->phase));
  }

  std::unique_ptr<UnitClient> Client(const std::string& name) {
    auto manifest = LoadFleetManifest(fleet_);
    EXPECT_TRUE(manifest.ok());
    const FleetUnit* u = manifest->FindUnit(name);
    EXPECT_NE(u, nullptr);
    return std::move(*UnitClient::Create(u->name, u->endpoint));
  }

  std::vector<AdminKey> Signers() {
    std::vector<AdminKey> out;
    for (const std::string& f : {alice_, bob_}) {
      auto k = ReadAdminKeyFile(f, kPassword);
      EXPECT_TRUE(k.ok()) << k.status();
      out.push_back(std::move(*k));
    }
    return out;
  }

  absl::Status Issue(const std::string& unit, v1::Command op) {
    auto signers = Signers();
    std::vector<const AdminKey*> ptrs;
    for (const auto& s : signers) ptrs.push_back(&s);
    return IssueCommand(*Client(unit), std::move(op), ptrs).status();
  }

  struct Sample {
    std::string key;
    std::string plain;
    std::string wrapped;
  };

  TempDir tmp_;
  std::string fleet_, alice_, bob_, sign_, target_vp_;
  std::vector<std::string> first_parts_, next_parts_;
  std::vector<Sample> samples_;
  int num_keys_ = 0;
};

TEST_F(RotationIntegrationTest, RotatesThreeUnitsTenThousandKeys) {
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
}

TEST_F(RotationIntegrationTest, UnitKilledDuringReencryptionResumeCompletes) {
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
  // Units are down: recover says to fix the cause first.
  EXPECT_THAT(rec.out, HasSubstr("FIX_AND_ROTATE_AGAIN")) << Describe(rec);
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

TEST_F(RotationIntegrationTest, OneUnitDiesOthersFinishReencryptionThenRecoverPromotes) {
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

TEST_F(RotationIntegrationTest, SetImmediateReachedOnlySomeUnitsRecoverFinishesIt) {
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

TEST_F(RotationIntegrationTest, LostNewRegisterIsReloadedFromTheSamePartsBeforePromotion) {
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
  EXPECT_EQ(wrong.exit_code, 1) << Describe(wrong);
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

class RotationPrecheckTest : public RotationIntegrationTest,
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
    const std::string carol = tmp_ / "carol.key";
    ASSERT_EQ(RunHsmctl(tmp_, {"admin", "keygen", "--name", "carol", "--out", carol}).exit_code, 0);
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
    EXPECT_THAT(r.err, HasSubstr(StrCat("unit ", GetParam().unit)));
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

TEST_F(RotationIntegrationTest, InterlocksRefuseToStrandKeys) {
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

TEST_F(RotationIntegrationTest, RotationInProgressBlocksWorkloadsAndSecondStart) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(1'000, /*faults=*/true);
  MustRun({"fault", "inject", "unit1", "before-persist", "return-error"});
  RunResult r = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_NE(r.exit_code, 0);
  RunResult again = Hsmctl({"mk", "rotate", "--sign", sign_});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("ROTATION_IN_PROGRESS"));
  RunResult create = Hsmctl({"keys", "create", "--count", "5"});
  EXPECT_EQ(create.exit_code, 1);
  EXPECT_THAT(create.err, HasSubstr("ROTATION_IN_PROGRESS"));
  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resume.exit_code, 0) << Describe(resume);
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

}  // namespace
}  // namespace hsmsim::host

// Issue 16, "Done when": the seed page rehearsed end to end as an operator
// would, with hsmctl only. A 5-unit fleet, three administrators (any 2 of 3
// sign), three custodians each loading their own key part under a password
// of their own; every situation of the seed page
// (../shared/seeds/000_d391b7b50c842493.txt) injected and recovered: the
// pre-check conditions, a rotation that stops before "KMS CRK rewrap
// successful", one that stops after it with every unit still to promote,
// and one that stops after some units were promoted. No hand edit of
// fleet.json and no --force anywhere: every fix is an hsmctl command (with
// --unit where one unit needs it). Faults are injected as faults: hsmctl
// interrupted or killed at a checkpoint, a unit crashing, a unit's state
// directory lost. Real hsmctl and hsmsim-unit processes on ephemeral
// loopback ports; the fleet is stopped at the end (FleetGuard).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kUnits = 5;
constexpr int kKeys = 3'000;

class SeedRehearsalTest : public RotationFixture {
 protected:
  // A master key as its three custodians hold it: a part file each, under a
  // password of their own.
  struct CustodianKey {
    std::vector<std::string> parts;
    std::vector<std::string> passwords;
    std::string vp;  // 64 hex digits, from the last custodian's load
  };

  // Ceremony: fleet up, three administrators installed from their public
  // keys (nothing secret), thresholds 2 of 3, the first master key loaded
  // by its custodians and set, keys created and sample data keys wrapped.
  void Ceremony() {
    MustRun({"fleet", "up", "--units", std::to_string(kUnits), "--instance", "payments",
             "--allow-fault-injection"});
    carol_ = tmp_.Join("carol.key");
    std::vector<std::string> public_keys;
    for (auto [name, file] :
         {std::pair{"alice", alice_}, std::pair{"bob", bob_}, std::pair{"carol", carol_}}) {
      public_keys.push_back(file + ".pub");
      RunResult r = RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file,
                                     "--public-out", public_keys.back(), "--kdf-cost", "10000"});
      ASSERT_EQ(r.exit_code, 0) << Describe(r);
    }
    public_keys_ = Join(public_keys);
    MustRun({"admin", "add", public_keys[0], public_keys[1], public_keys[2]});
    MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", AliceBob(),
             "--expect-admins", carol_ + ".pub"});
    current_ = NewCustodianKey("first");
    LoadAndCommit(current_, {});
    MustRun({"mk", "setimm", "--sign", BobCarol()});
    MustRun({"keys", "create", "--count", std::to_string(kKeys)});
    num_keys_ = kKeys;
    for (int i = 0; i < 5; ++i) {
      std::string plain = StrCat("data key ", i, " of the rehearsal, 32 bytes");
      plain.resize(32, '.');
      ASSERT_NO_FATAL_FAILURE(WrapSample(i, StrCat("key-", 1 + i * (kKeys / 5)), plain));
    }
  }

  std::string AliceBob() const { return alice_ + "," + bob_; }
  std::string BobCarol() const { return bob_ + "," + carol_; }
  std::string AliceCarol() const { return alice_ + "," + carol_; }

  // NewCustodianKey: each custodian generates their part under their own
  // password.
  CustodianKey NewCustodianKey(const std::string& tag) {
    CustodianKey key;
    for (int i = 1; i <= 3; ++i) {
      key.parts.push_back(tmp_.Join(StrCat(tag, "-custodian", i, ".part")));
      key.passwords.push_back(tmp_.Join(StrCat(tag, "-custodian", i, ".pw")));
      std::ofstream(key.passwords.back()) << "custodian " << i << " of " << tag << "\n";
      RunResult r = RunHsmctl(tmp_, {"keypart", "generate", "--out", key.parts.back(), "--kdf-cost",
                                     "10000", "--password-file", key.passwords.back()});
      EXPECT_EQ(r.exit_code, 0) << Describe(r);
    }
    return key;
  }

  // LoadAndCommit: each custodian loads their own part (one invocation
  // each, signed by one administrator), then two administrators commit the
  // VP the last load printed. `unit` empty: the selected units.
  void LoadAndCommit(CustodianKey& key, const std::vector<std::string>& unit) {
    for (size_t i = 0; i < key.parts.size(); ++i) {
      std::vector<std::string> args = {
          "mk",     "load", "--parts",         key.parts[i],
          "--sign", alice_, "--password-file", StrCat(key.parts[i], "=", key.passwords[i]),
          "--json"};
      if (i == 0) args.insert(args.end(), {"--total", "3"});
      args.insert(args.end(), unit.begin(), unit.end());
      RunResult r = Hsmctl(args);
      ASSERT_EQ(r.exit_code, 0) << "custodian " << i + 1 << "\n" << Describe(r);
      if (i + 1 == key.parts.size()) {
        const json doc = json::parse(r.out);
        key.vp = doc["expected_verification_pattern"].get<std::string>();
      }
    }
    ASSERT_EQ(key.vp.size(), 64u);
    std::vector<std::string> commit = {"mk", "commit", "--vp", key.vp, "--sign", AliceCarol()};
    commit.insert(commit.end(), unit.begin(), unit.end());
    MustRun(commit);
  }

  // RecoverSituation runs hsmctl recover --json and returns its situation.
  json Recover() {
    RunResult r = Hsmctl({"recover", "--json"});
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << Describe(r);
    return json::parse(r.out);
  }

  // ExpectRotatedTo: every unit has `key` in CURRENT and an empty NEW, no
  // rotation is open, and every key and sample is usable under it.
  void ExpectRotatedTo(const CustodianKey& key) {
    RunResult st = Hsmctl({"status", "--json", "--long"});
    ASSERT_EQ(st.exit_code, 0) << Describe(st);
    const json doc = json::parse(st.out);
    ASSERT_EQ(doc["units"].size(), static_cast<size_t>(kUnits)) << st.out;
    for (const json& u : doc["units"]) {
      EXPECT_EQ(u["registers"]["current"]["state"], "VALID") << u.dump();
      EXPECT_EQ(u["registers"]["current"]["verification_pattern"], key.vp) << u.dump();
      EXPECT_EQ(u["registers"]["new"]["state"], "EMPTY") << u.dump();
    }
    const std::string phase = JournalPhase();
    EXPECT_TRUE(phase == "NONE" || phase == "DONE") << phase;
    target_vp_ = key.vp;
    ExpectNoKeyLost();
  }

  // ExpectRotateRefused: mk rotate fails its pre-check with `reason`, names
  // `unit`, and changes nothing.
  void ExpectRotateRefused(const std::string& reason, const std::string& unit) {
    RunResult before = Hsmctl({"status", "--json", "--long"});
    RunResult r = Hsmctl({"mk", "rotate", "--sign", AliceBob()});
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(reason)) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(unit)) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("nothing was changed")) << Describe(r);
    EXPECT_EQ(JournalPhase(), "NONE");
    RunResult after = Hsmctl({"status", "--json", "--long"});
    EXPECT_EQ(before.out, after.out) << "a refused rotation changed a unit";
  }

  // The seed page's pre-check conditions, each caused by an operator's
  // command or a fault, named by mk rotate, and fixed with hsmctl.
  void PrecheckConditions(CustodianKey& next);
  void ReplacedUnitIsSetUpAgain(CustodianKey& next);

  std::string carol_;
  std::string public_keys_;
  CustodianKey current_;
};

// Not all crypto units selected; thresholds not the same; no common set of
// administrators large enough; NEW not committed with the same VP.
void SeedRehearsalTest::PrecheckConditions(CustodianKey& next) {
  // One unit left out of the selection, and put back.
  MustRun({"unit", "rm", "unit4"});
  ExpectRotateRefused("UNIT_NOT_SELECTED", "unit4");
  MustRun({"unit", "add", "unit4"});

  // Thresholds changed on one unit by mistake, and set back.
  MustRun({"thresholds", "set", "--signature", "1", "--revocation", "1", "--unit", "unit2",
           "--sign", AliceBob()});
  ExpectRotateRefused("THRESHOLDS_DIFFER", "unit2");
  MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--unit", "unit2",
           "--sign", alice_});

  // carol removed from unit3 and bob from unit4: alice alone is common to
  // all units, fewer than the signature threshold of 2.
  MustRun({"admin", "rm", "carol", "--unit", "unit3", "--sign", AliceBob()});
  MustRun({"admin", "rm", "bob", "--unit", "unit4", "--sign", AliceCarol()});
  ExpectRotateRefused("NO_COMMON_ADMINISTRATORS", "");
  MustRun({"admin", "add", carol_ + ".pub", "--unit", "unit3", "--sign", AliceBob()});
  MustRun({"admin", "add", bob_ + ".pub", "--unit", "unit4", "--sign", AliceCarol()});

  // NEW cleared on one unit: its custodians load their parts there again.
  MustRun({"mk", "clrnew", "--unit", "unit3", "--sign", BobCarol()});
  ExpectRotateRefused("NEW_NOT_COMMITTED", "unit3");
  LoadAndCommit(next, {"--unit", "unit3"});
}

// One or more crypto units in imprint mode, and CURRENT not VALID with the
// same VP: unit5's state directory is lost; it is replaced on purpose with a
// blank unit, set up like the others, and brought to the fleet's CURRENT
// key (its custodians load it there alone, set immediate on unit5 only),
// then given the next key.
void SeedRehearsalTest::ReplacedUnitIsSetUpAgain(CustodianKey& next) {
  FleetManifest manifest = Manifest();
  const FleetUnit* unit5 = manifest.FindUnit("unit5");
  ASSERT_NE(unit5, nullptr);
  ASSERT_EQ(kill(unit5->pid, SIGKILL), 0);
  for (int i = 0; i < 250 && ProcessAlive(unit5->pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fs::remove_all(unit5->state_dir);
  // Not started blank by accident: the lost directory is named.
  RunResult plain = Hsmctl({"fleet", "restart", "unit5"});
  EXPECT_EQ(plain.exit_code, 1) << Describe(plain);
  EXPECT_THAT(plain.err, HasSubstr("UNIT_STATE_MISSING")) << Describe(plain);
  EXPECT_THAT(plain.err, HasSubstr("--new-unit")) << Describe(plain);
  MustRun({"fleet", "restart", "unit5", "--new-unit", "--allow-fault-injection"});
  ExpectRotateRefused("IMPRINT_MODE", "unit5");

  const std::vector<std::string> only5 = {"--unit", "unit5"};
  MustRun({"admin", "add", alice_ + ".pub", bob_ + ".pub", carol_ + ".pub", "--unit", "unit5"});
  MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--unit", "unit5",
           "--sign", AliceBob(), "--expect-admins", carol_ + ".pub"});
  ExpectRotateRefused("CURRENT_NOT_VALID", "unit5");
  LoadAndCommit(current_, only5);
  // Set immediate on unit5 alone: it catches up with the CURRENT key every
  // other unit holds, so leaving them out is allowed.
  MustRun({"mk", "setimm", "--unit", "unit5", "--sign", AliceCarol()});
  ExpectRotateRefused("NEW_NOT_COMMITTED", "unit5");
  LoadAndCommit(next, only5);
  target_vp_ = current_.vp;
  ExpectNoKeyLost(/*rotated=*/false);
}

TEST_F(SeedRehearsalTest, EverySituationOfTheSeedPageWithHsmctlOnly) {
  FleetGuard guard(tmp_, fleet_);
  Ceremony();
  ASSERT_FALSE(HasFatalFailure());
  CustodianKey b = NewCustodianKey("second");
  LoadAndCommit(b, {});
  EXPECT_EQ(Recover()["situation"], "READY_TO_ROTATE");

  // "If the initial conditions needed to run the command are not met, an
  // error is reported. Correct the initial conditions and run the command
  // again."
  PrecheckConditions(b);
  ASSERT_FALSE(HasFatalFailure());
  ReplacedUnitIsSetUpAgain(b);
  ASSERT_FALSE(HasFatalFailure());

  // Rotation 1: interrupted (Ctrl-C) while re-encrypting, before "KMS CRK
  // rewrap successful": "you can recover from the error by clicking the
  // Rotate button again".
  RunResult stopped = HsmctlWithEnv({"mk", "rotate", "--sign", AliceBob(), "--batch-size", "250"},
                                    {"HSMSIM_TEST_INTERRUPT_AT=reencrypt-batch-stored:1000"});
  EXPECT_EQ(stopped.exit_code, 1) << Describe(stopped);
  EXPECT_THAT(stopped.out, HasSubstr(StrCat("pre-checks passed on ", kUnits, " unit(s)")));
  EXPECT_THAT(stopped.out, Not(HasSubstr("KMS CRK rewrap successful")));
  EXPECT_THAT(stopped.err, HasSubstr("INTERRUPTED"));
  RunResult journal = Hsmctl({"mk", "rotate", "--status", "--json"});
  ASSERT_EQ(journal.exit_code, 0) << Describe(journal);
  const json journal_doc = json::parse(journal.out);
  EXPECT_EQ(journal_doc["journal_phase"], "REENCRYPTING") << journal.out;
  EXPECT_GE(journal_doc["keys_done"].get<int64_t>(), 1000) << journal.out;
  EXPECT_EQ(Recover()["situation"], "REENCRYPTION_UNFINISHED");
  RunResult again = Hsmctl({"recover", "--apply", "--sign", BobCarol()});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  ExpectRotatedTo(b);
  current_ = b;

  // Rotation 2: a unit crashes during re-encryption. The others finish it
  // ("KMS CRK rewrap successful"), and promotion does not start while
  // unit3 does not answer. Every NEW is FULL_COMMITTED with one VP and every
  // CURRENT VALID with another: "click the Set immediate button".
  CustodianKey c = NewCustodianKey("third");
  LoadAndCommit(c, {});
  MustRun({"fault", "inject", "unit3", "reencrypt-after-blobs", "crash", "300"});
  RunResult crashed = Hsmctl(
      {"mk", "rotate", "--sign", AliceCarol(), "--batch-size", "250", "--timeout-ms", "3000"});
  EXPECT_NE(crashed.exit_code, 0) << Describe(crashed);
  EXPECT_THAT(crashed.out,
              HasSubstr("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm."));
  // recover names the unit to fix and how, and applies nothing meanwhile.
  const json unreachable = Recover();
  EXPECT_EQ(unreachable["situation"], "UNITS_UNREACHABLE") << unreachable.dump();
  EXPECT_THAT(unreachable["action"].get<std::string>(), HasSubstr("hsmctl fleet restart unit3"));
  RunResult nothing = Hsmctl({"recover", "--apply", "--sign", AliceBob()});
  EXPECT_EQ(nothing.exit_code, 1) << Describe(nothing);
  EXPECT_THAT(nothing.err, HasSubstr("NOTHING_SAFE_TO_APPLY")) << Describe(nothing);
  MustRun({"fleet", "restart", "unit3", "--allow-fault-injection"});
  EXPECT_EQ(Recover()["situation"], "SET_IMMEDIATE_ALL");
  // Set immediate by hand, as the seed page says; it is safe to continue.
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", AliceBob()});
  ASSERT_EQ(setimm.exit_code, 0) << Describe(setimm);
  EXPECT_THAT(setimm.err, Not(HasSubstr("moves"))) << "no stored key moves to OLD here";
  EXPECT_EQ(Recover()["situation"], "FINALIZE_KEYSTORE");
  // Finalizing the keystore signs nothing: no --sign needed.
  MustRun({"recover", "--apply"});
  ExpectRotatedTo(c);
  current_ = c;

  // Rotation 3: hsmctl killed after two units were promoted. "For some
  // crypto units the new master key value is moved to the current master
  // key register": clear those from the selection (Remove crypto units),
  // set immediate on the others, and put them back.
  CustodianKey d = NewCustodianKey("fourth");
  LoadAndCommit(d, {});
  RunResult killed = HsmctlWithEnv({"mk", "rotate", "--sign", BobCarol()},
                                   {"HSMSIM_TEST_CRASH_AT=unit-promoted:2"});
  EXPECT_EQ(killed.exit_code, 137) << Describe(killed);
  EXPECT_THAT(killed.out, HasSubstr("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm."));
  const json rest = Recover();
  EXPECT_EQ(rest["situation"], "SET_IMMEDIATE_REST") << rest.dump();
  const std::vector<std::string> promoted = rest["units_promoted"].get<std::vector<std::string>>();
  ASSERT_EQ(promoted.size(), 2u) << rest.dump();
  MustRun({"unit", "rm", promoted[0], promoted[1]});
  RunResult rest_setimm = Hsmctl({"mk", "setimm", "--sign", AliceCarol()});
  ASSERT_EQ(rest_setimm.exit_code, 0) << Describe(rest_setimm);
  MustRun({"unit", "add", promoted[0], promoted[1]});
  EXPECT_EQ(Recover()["situation"], "FINALIZE_KEYSTORE");
  MustRun({"recover", "--apply", "--sign", AliceBob()});
  ExpectRotatedTo(d);

  // Nothing is left to recover, and the audit log of the whole rehearsal
  // verifies.
  EXPECT_EQ(Recover()["situation"], "NOTHING_TO_DO");
  MustRun({"audit", "verify"});
}

}  // namespace
}  // namespace hsmsim::host

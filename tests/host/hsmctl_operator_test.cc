// Issue 16, what an operator needs around the commands (items 3, 6 and 7):
// --version on both programs, fleet status of a stopped fleet and fleet
// start, keys show, the set immediate warning, loading key parts one
// custodian at a time, admin add from a public key or certificate, and
// output without repeated lines or library noise. Real hsmctl and
// hsmsim-unit processes on ephemeral loopback ports; every test stops its
// units (FleetGuard).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "crypto/verification_pattern.h"
#include "hsmsim/v1/keypart.pb.h"
#include "proto/wire/build_version.h"
#include "tests/host/admin_certificate.h"
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HsmctlOperatorTest : public RotationFixture {
 protected:
  // VpOfXorWith is VpOfXor for part files under passwords of their own
  // (the first line of each password file).
  static std::string VpOfXorWith(const std::vector<std::string>& parts,
                                 const std::vector<std::string>& password_files) {
    SecretBytes key(32, 0);
    for (size_t i = 0; i < parts.size(); ++i) {
      std::string password;
      std::ifstream in(password_files[i]);
      std::getline(in, password);
      auto part = crypto::OpenKeyPartFile(*ReadFileBytes(parts[i]), password);
      EXPECT_TRUE(part.ok()) << part.status();
      for (size_t b = 0; b < 32; ++b) key[b] ^= (*part)[b];
    }
    return ToHex(crypto::AsString(crypto::ComputeVerificationPattern(key)));
  }

  // Version runs `program --version` and returns its result.
  RunResult Version(const std::string& program) {
    test_support::RunOptions options;
    options.stdout_path = tmp_.Join(StrCat(fs::path(program).filename().string(), ".version"));
    options.stderr_path = options.stdout_path + ".err";
    return test_support::RunProgram({program, "--version"}, options);
  }
};

// --version names the build's version, the commit it was built from (what
// git said when the build was configured, never a constant in the source)
// and the wire protocol (the package of the messages on the wire).
TEST_F(HsmctlOperatorTest, VersionNamesBuildCommitAndProtocol) {
  const std::string commit(wire::BuildCommit());
  EXPECT_TRUE(
      commit == "unknown" ||
      (commit.size() == 40 && commit.find_first_not_of("0123456789abcdef") == std::string::npos))
      << commit;
#ifdef HSMSIM_SOURCE_IS_GIT_CHECKOUT
  EXPECT_NE(commit, "unknown") << "the source is a git checkout: the build must name its commit";
#endif
  EXPECT_EQ(wire::ProtocolVersion(), "hsmsim.v1");
  for (const std::string program : {HSMCTL_PATH, HSMSIM_UNIT_PATH}) {
    RunResult r = Version(program);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    const std::string name = fs::path(program).filename().string();
    EXPECT_THAT(r.out, HasSubstr(StrCat(name, " ", HSMSIM_PROJECT_VERSION, "\n"))) << r.out;
    EXPECT_THAT(r.out, HasSubstr(StrCat("\ncommit ", commit, "\n"))) << r.out;
    EXPECT_THAT(r.out, HasSubstr("\nprotocol hsmsim.v1")) << r.out;
  }
  EXPECT_THAT(Version(HSMSIM_UNIT_PATH).out, HasSubstr("\nfirmware hsmsim-fw "));
}

// After fleet down, fleet status says every unit is stopped (exit 0: a
// fleet stopped on purpose is not unreachable); fleet start starts them on
// their state, the same units (pinned ids) with their keys.
TEST_F(HsmctlOperatorTest, StoppedFleetIsStoppedAndStartsAgain) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "it"});
  const FleetManifest before = Manifest();
  MustRun({"fleet", "down", "--grace-ms", "3000"});

  RunResult stopped = Hsmctl({"fleet", "status", "--timeout-ms", "2000"});
  EXPECT_EQ(stopped.exit_code, 0) << Describe(stopped);
  EXPECT_THAT(stopped.out, HasSubstr("unit1: ok: stopped (fleet down)"));
  EXPECT_THAT(stopped.out, HasSubstr("unit2: ok: stopped (fleet down)"));
  EXPECT_THAT(stopped.out, Not(HasSubstr("connection refused")));
  RunResult stopped_json = Hsmctl({"fleet", "status", "--json", "--timeout-ms", "2000"});
  EXPECT_EQ(stopped_json.exit_code, 0) << Describe(stopped_json);
  const json doc1 = json::parse(stopped_json.out);  // alive across the loop (ASan)
  for (const json& u : doc1["units"]) {
    EXPECT_EQ(u["state"], "stopped") << u.dump();
    EXPECT_EQ(u["stopped"], true) << u.dump();
    EXPECT_EQ(u["reachable"], false) << u.dump();
  }

  RunResult start = Hsmctl({"fleet", "start"});
  ASSERT_EQ(start.exit_code, 0) << Describe(start);
  EXPECT_THAT(start.out, HasSubstr("unit1: ok: started, pid "));
  const FleetManifest after = Manifest();
  ASSERT_EQ(after.units.size(), 2u);
  for (size_t i = 0; i < after.units.size(); ++i) {
    EXPECT_TRUE(IsUnitProcess(after.units[i].pid, after.units[i].state_dir));
    EXPECT_FALSE(after.units[i].stopped);
    EXPECT_EQ(after.units[i].unit_id, before.units[i].unit_id);
    EXPECT_EQ(after.units[i].endpoint, before.units[i].endpoint);
  }
  RunResult running = Hsmctl({"fleet", "status", "--json"});
  EXPECT_EQ(running.exit_code, 0) << Describe(running);
  const json doc2 = json::parse(running.out);  // alive across the loop (ASan)
  for (const json& u : doc2["units"]) EXPECT_EQ(u["state"], "running");

  // A second start leaves the running units alone.
  RunResult again = Hsmctl({"fleet", "start", "--json"});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  const json doc3 = json::parse(again.out);  // alive across the loop (ASan)
  for (const json& u : doc3["units"]) EXPECT_EQ(u["already"], true);
  EXPECT_EQ(Manifest().units[0].pid, after.units[0].pid);
}

// A unit that died without fleet down is still unreachable (exit 3), and
// fleet start refuses a unit that comes back as another unit (its state
// gone), starting the others.
TEST_F(HsmctlOperatorTest, CrashedUnitIsUnreachableAndStartChecksPinnedIds) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "it"});
  KillUnits({"unit2"});
  RunResult status = Hsmctl({"fleet", "status", "--timeout-ms", "2000"});
  EXPECT_EQ(status.exit_code, 3) << Describe(status);
  EXPECT_THAT(status.out, HasSubstr("unit2: FAILED: UNIT_UNREACHABLE"));

  MustRun({"fleet", "down", "--grace-ms", "3000"});
  FleetManifest m = Manifest();
  fs::remove(fs::path(m.FindUnit("unit2")->state_dir) / "unit.state");
  fs::remove(fs::path(m.FindUnit("unit2")->state_dir) / "device.key");
  RunResult start = Hsmctl({"fleet", "start", "--ready-timeout-ms", "5000"});
  EXPECT_EQ(start.exit_code, 1) << Describe(start);
  EXPECT_THAT(start.out, HasSubstr("unit1: ok: started"));
  EXPECT_THAT(start.out, HasSubstr("unit2: FAILED: UNIT_ID_MISMATCH"));
  EXPECT_TRUE(UnitAlive("unit1"));
  EXPECT_FALSE(UnitAlive("unit2"));
}

// keys show prints one key: WKID, pending WKID, state; NO_SUCH_KEY (exit
// 4) for an unknown name.
TEST_F(HsmctlOperatorTest, KeysShowOneKey) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  const std::string current_wkid = VpOfXor(first_parts_).substr(0, 32);
  RunResult show = Hsmctl({"keys", "show", "key-7"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("key key-7\n"));
  EXPECT_THAT(show.out, HasSubstr(StrCat("wkid     ", current_wkid, "\n")));
  EXPECT_THAT(show.out, HasSubstr("pending  -\n"));
  EXPECT_THAT(show.out, HasSubstr("state    ok\n"));
  RunResult doc = Hsmctl({"keys", "show", "key-7", "--json"});
  ASSERT_EQ(doc.exit_code, 0) << Describe(doc);
  json j = json::parse(doc.out);
  EXPECT_EQ(j["name"], "key-7");
  EXPECT_EQ(j["wkid"], current_wkid);
  EXPECT_EQ(j["pending_wkid"], "");
  EXPECT_EQ(j["quarantined"], false);
  EXPECT_EQ(j["state"], "ok");

  RunResult unknown = Hsmctl({"keys", "show", "key-999"});
  EXPECT_EQ(unknown.exit_code, 4) << Describe(unknown);
  EXPECT_THAT(unknown.err, HasSubstr("NO_SUCH_KEY: no key named 'key-999'"));
}

// A keystore written before blob generations (schema version 1) is refused
// with the command that migrates it; hsmctl keys migrate keeps every key
// usable on every unit, and a second run changes nothing.
TEST_F(HsmctlOperatorTest, Version1KeystoreIsMigratedOnceAndEveryKeyStillVerifies) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  // Rewrite the keystore in the version-1 layout (each key's blob in its
  // keys row), as an hsmctl before blob generations left it.
  constexpr char kToVersion1[] = R"sql(
BEGIN;
CREATE TABLE keys_v1(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, blob BLOB NOT NULL,
                     wkid BLOB NOT NULL, pending_blob BLOB, pending_wkid BLOB);
INSERT INTO keys_v1 SELECT k.id, k.name, c.blob, c.wkid, NULL, NULL
  FROM keys k JOIN blobs_0 c ON c.id=k.id;
DROP TABLE keys;
ALTER TABLE keys_v1 RENAME TO keys;
CREATE INDEX keys_by_wkid ON keys(wkid, id);
DROP TABLE blobs_0;
DROP TABLE blobs_1;
DELETE FROM meta WHERE key='blob_generation';
UPDATE meta SET value='1' WHERE key='schema_version';
COMMIT;
)sql";
  const std::string path = fleet_ + "/keystore.db";
  ASSERT_TRUE(fs::exists(path));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, kToVersion1, nullptr, nullptr, &err);
  const std::string error = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << error;

  RunResult refused = Hsmctl({"keys", "verify"});
  EXPECT_NE(refused.exit_code, 0) << Describe(refused);
  EXPECT_THAT(refused.err, HasSubstr("UNSUPPORTED_KEYSTORE_VERSION"));
  EXPECT_THAT(refused.err, HasSubstr("schema version 1"));
  EXPECT_THAT(refused.err, HasSubstr("hsmctl keys migrate"));

  RunResult migrate = Hsmctl({"keys", "migrate"});
  ASSERT_EQ(migrate.exit_code, 0) << Describe(migrate);
  EXPECT_THAT(migrate.out, HasSubstr("migrated from schema version 1 to 2: 20 key(s)"));

  RunResult verify = Hsmctl({"keys", "verify", "--json"});
  ASSERT_EQ(verify.exit_code, 0) << Describe(verify);
  json v = json::parse(verify.out);
  EXPECT_EQ(v["keys"], 20);
  EXPECT_EQ(v["failed"], 0);

  RunResult again = Hsmctl({"keys", "migrate", "--json"});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  json a = json::parse(again.out);
  EXPECT_EQ(a["migrated"], false);
  EXPECT_EQ(a["from_version"], 2);
  EXPECT_EQ(a["keys"], 20);
}

// mk setimm by hand, with keys stored under CURRENT: a warning with the
// count before anything changes, on stderr and in --json.
TEST_F(HsmctlOperatorTest, SetImmediateByHandWarnsOfKeysMovingToOld) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(30);
  const std::string current = VpOfXor(first_parts_);
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", sign_, "--json"});
  ASSERT_EQ(setimm.exit_code, 0) << Describe(setimm);
  EXPECT_THAT(setimm.err, HasSubstr(StrCat("hsmctl: warning: set immediate moves 30 stored key(s) "
                                           "to OLD (30 under ",
                                           current.substr(0, 16), ")")));
  json doc = json::parse(setimm.out);
  EXPECT_EQ(doc["keys_moving_to_old"], 30);
  ASSERT_EQ(doc["keys_moving_to_old_per_wkid"].size(), 1u);
  EXPECT_EQ(doc["keys_moving_to_old_per_wkid"][0]["wkid"], current.substr(0, 32));
  EXPECT_THAT(doc["warning"].get<std::string>(), HasSubstr("hsmctl keys upgrade"));

  // They did move to OLD: keys upgrade moves every one of them back.
  RunResult upgrade = Hsmctl({"keys", "upgrade"});
  ASSERT_EQ(upgrade.exit_code, 0) << Describe(upgrade);
  EXPECT_THAT(upgrade.out, HasSubstr("moved 30 key(s) from OLD to CURRENT"));
}

// During a rotation whose re-encryption is done every key has a pending
// blob under the target: a set immediate by hand moves none of them to OLD
// and gives no warning.
TEST_F(HsmctlOperatorTest, SetImmediateAfterReencryptionGivesNoWarning) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(30);
  RunResult crashed =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=reencrypted"});
  ASSERT_EQ(crashed.exit_code, 137) << Describe(crashed);
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", sign_, "--json"});
  ASSERT_EQ(setimm.exit_code, 0) << Describe(setimm);
  EXPECT_THAT(setimm.err, Not(HasSubstr("warning")));
  json doc = json::parse(setimm.out);
  EXPECT_EQ(doc["keys_moving_to_old"], 0);
  EXPECT_FALSE(doc.contains("warning"));
  MustRun({"recover", "--apply", "--sign", sign_});
  ExpectNoKeyLost();
}

// An hsmctl killed between writing its progress file and renaming it leaves
// KEYSTORE.progress.json.tmp.PID behind; the next rotation removes those of
// processes no longer running, and only those.
TEST_F(HsmctlOperatorTest, RotationRemovesProgressTemporariesOfDeadProcesses) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  const pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string base = fleet_ + "/keystore.db.progress.json";
  const std::string stale = StrCat(base, ".tmp.", dead);
  const std::string live = StrCat(base, ".tmp.", ::getpid());  // this test is running
  const std::string other = fleet_ + "/keystore.db.progress.json.tmp.notapid";
  for (const std::string& path : {stale, live, other}) std::ofstream(path) << "{}";

  RunResult rotate = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_EQ(rotate.exit_code, 0) << Describe(rotate);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(base));
  int temporaries = 0;
  for (const auto& entry : fs::directory_iterator(fleet_)) {
    if (entry.path().filename().string().find(".progress.json.tmp.") != std::string::npos) {
      ++temporaries;
    }
  }
  EXPECT_EQ(temporaries, 2);  // `live` and `other`; none of the rotation's own
  ExpectNoKeyLost();
}

// Three custodians load their own parts into NEW, one invocation each, each
// with their own file and password; the units report parts loaded of the
// total; the VP check of all the parts at mk commit still works.
TEST_F(HsmctlOperatorTest, EachCustodianLoadsTheirOwnPart) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "it"});
  RunResult keygen = RunHsmctl(
      tmp_, {"admin", "keygen", "--name", "alice", "--out", alice_, "--kdf-cost", "10000"});
  ASSERT_EQ(keygen.exit_code, 0) << Describe(keygen);
  MustRun({"admin", "add", alice_});
  MustRun({"thresholds", "set", "--signature", "1", "--revocation", "1", "--sign", alice_});
  // Each custodian's part under a password of their own.
  std::vector<std::string> parts, passwords;
  for (int i = 1; i <= 3; ++i) {
    parts.push_back(tmp_.Join(StrCat("custodian", i, ".part")));
    passwords.push_back(tmp_.Join(StrCat("custodian", i, ".pw")));
    std::ofstream(passwords.back()) << "password of custodian " << i << "\n";
    RunResult r = RunHsmctl(tmp_, {"keypart", "generate", "--out", parts.back(), "--kdf-cost",
                                   "10000", "--password-file", passwords.back()});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  auto custodian = [&](int i, std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "mk",     "load", "--parts",         parts[i],
        "--sign", alice_, "--password-file", StrCat(parts[i], "=", passwords[i])};
    args.insert(args.end(), extra.begin(), extra.end());
    return Hsmctl(args);
  };

  // One part and no load in progress: how many parts the key has is needed.
  RunResult no_total = custodian(0, {});
  EXPECT_EQ(no_total.exit_code, 4) << Describe(no_total);
  EXPECT_THAT(no_total.err, HasSubstr("BAD_PART_COUNT"));
  EXPECT_THAT(no_total.err, HasSubstr("--total"));
  RunResult too_many =
      Hsmctl({"mk", "load", "--parts", Join(parts), "--total", "2", "--sign", alice_});
  EXPECT_EQ(too_many.exit_code, 4) << Describe(too_many);
  EXPECT_THAT(too_many.err, HasSubstr("BAD_PART_COUNT"));

  RunResult first = custodian(0, {"--total", "3", "--json"});
  ASSERT_EQ(first.exit_code, 0) << Describe(first);
  json doc = json::parse(first.out);
  EXPECT_EQ(doc["whole_key"], false);
  EXPECT_EQ(doc["expected_verification_pattern"], "");
  ASSERT_EQ(doc["units"].size(), 2u);
  for (const json& u : doc["units"]) {
    EXPECT_EQ(u["new_state"], "PARTIALLY_LOADED") << u.dump();
    EXPECT_EQ(u["parts_loaded"], 1) << u.dump();
    EXPECT_EQ(u["parts_total"], 3) << u.dump();
  }
  RunResult second = custodian(1, {});
  ASSERT_EQ(second.exit_code, 0) << Describe(second);
  EXPECT_THAT(second.out, HasSubstr("unit1: ok: NEW PARTIALLY_LOADED, 2 of 3 parts loaded"));
  EXPECT_THAT(second.out, HasSubstr("unit2: ok: NEW PARTIALLY_LOADED, 2 of 3 parts loaded"));
  RunResult status = Hsmctl({"status"});
  EXPECT_THAT(status.out, HasSubstr("PARTIALLY_LOADED (2/3 parts)"));
  // The same part twice is refused by the units; nothing changes.
  RunResult twice = custodian(1, {});
  EXPECT_EQ(twice.exit_code, 1) << Describe(twice);
  EXPECT_THAT(twice.out, HasSubstr("DUPLICATE_KEY_PART"));

  const std::string vp = VpOfXorWith(parts, passwords);
  RunResult last = custodian(2, {"--json"});
  ASSERT_EQ(last.exit_code, 0) << Describe(last);
  doc = json::parse(last.out);
  EXPECT_EQ(doc["expected_verification_pattern"], vp);
  for (const json& u : doc["units"]) {
    EXPECT_EQ(u["new_state"], "FULL_UNCOMMITTED") << u.dump();
    EXPECT_EQ(u["new_verification_pattern"], vp) << u.dump();
    EXPECT_EQ(u["matches_parts"], true) << u.dump();
  }

  // The commit checks the VP of every custodian's part.
  RunResult one_part = Hsmctl({"mk", "commit", "--parts", parts[0], "--sign", alice_,
                               "--password-file", StrCat(parts[0], "=", passwords[0])});
  EXPECT_EQ(one_part.exit_code, 4) << Describe(one_part);
  EXPECT_THAT(one_part.err, HasSubstr("BAD_PART_COUNT"));
  std::vector<std::string> commit = {"mk", "commit", "--parts", Join(parts), "--sign", alice_};
  for (int i = 0; i < 3; ++i) {
    commit.push_back("--password-file");
    commit.push_back(StrCat(parts[i], "=", passwords[i]));
  }
  RunResult committed = Hsmctl(commit);
  ASSERT_EQ(committed.exit_code, 0) << Describe(committed);
  EXPECT_THAT(committed.out, HasSubstr(StrCat("expected VP (XOR of the parts): ", vp)));
  EXPECT_THAT(committed.out, HasSubstr(StrCat("unit1: ok: NEW FULL_COMMITTED VP ", vp)));
}

// admin add takes a public key file or a certificate: installing an
// administrator needs no private key and no password. The old form (a key
// file) still works.
TEST_F(HsmctlOperatorTest, AdminAddFromPublicKeyOrCertificate) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "it"});
  const std::string alice_pub = tmp_.Join("alice.pub");
  RunResult keygen = RunHsmctl(tmp_, {"admin", "keygen", "--name", "alice", "--out", alice_,
                                      "--public-out", alice_pub, "--kdf-cost", "10000"});
  ASSERT_EQ(keygen.exit_code, 0) << Describe(keygen);
  EXPECT_THAT(keygen.out, HasSubstr(StrCat("public key to ", alice_pub)));
  RunResult bob_keygen =
      RunHsmctl(tmp_, {"admin", "keygen", "--name", "bob", "--out", bob_, "--kdf-cost", "10000"});
  ASSERT_EQ(bob_keygen.exit_code, 0) << Describe(bob_keygen);
  const std::string carol_key = tmp_.Join("carol.key");
  RunResult carol_keygen = RunHsmctl(
      tmp_, {"admin", "keygen", "--name", "carol", "--out", carol_key, "--kdf-cost", "10000"});
  ASSERT_EQ(carol_keygen.exit_code, 0) << Describe(carol_keygen);
  auto carol = ReadAdminKeyFile(carol_key, kPassword);
  ASSERT_TRUE(carol.ok()) << carol.status();
  const std::string carol_pem = tmp_.Join("carol.pem");
  std::ofstream(carol_pem) << SelfSignedCertificatePem(*carol, "carol");

  // No password anywhere: none is needed for public keys and certificates.
  const test_support::EnvironmentChanges no_password{.set = {}, .unset = {"HSMSIM_PASSWORD"}};
  RunResult add = RunHsmctl(tmp_, {"admin", "add", alice_pub, carol_pem, "--fleet", fleet_},
                            "/dev/null", no_password);
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  EXPECT_THAT(add.out, HasSubstr("unit1: ok: added 2"));
  // The old form: a key file, opened with its password.
  MustRun({"admin", "add", bob_, "--expect-admins", StrCat(alice_pub, ",", carol_pem)});

  RunResult status = Hsmctl({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  const json doc4 = json::parse(status.out);  // alive across the loop (ASan)
  for (const json& u : doc4["units"]) {
    std::map<std::string, std::string> ids;
    for (const json& a : u["administrators"]) ids[a["name"]] = a["key_id"];
    EXPECT_EQ(ids["carol"], ToHex(carol->key_id)) << u.dump();
    EXPECT_EQ(ids.size(), 3u) << u.dump();
  }
  // The installed public key signs through alice's key file.
  MustRun({"thresholds", "set", "--signature", "1", "--revocation", "1", "--sign", alice_,
           "--expect-admins", StrCat(carol_pem, ",", bob_)});

  // Bad public key files: exit 4 naming the file, hsmctl's own words only.
  const std::string p256 = tmp_.Join("p256.pub");
  std::ofstream(p256) << P256PublicKeyPem();
  const std::string damaged = tmp_.Join("damaged.pub");
  std::ofstream(damaged) << "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
  for (const std::string& file : {p256, damaged}) {
    RunResult bad = Hsmctl({"admin", "add", file, "--name", "mallory", "--sign", alice_});
    EXPECT_EQ(bad.exit_code, 4) << Describe(bad);
    EXPECT_THAT(bad.err, HasSubstr(StrCat("hsmctl: BAD_PUBLIC_KEY_FILE: ", file)));
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  }
}

// A damaged input that the protobuf library complains about (a part file
// whose description is not UTF-8) gives hsmctl's own error, one line, and
// none of the library's.
TEST_F(HsmctlOperatorTest, LibraryErrorLinesNeverReachTheTerminal) {
  const std::string good = tmp_.Join("good.part");
  RunResult r = RunHsmctl(tmp_, {"keypart", "generate", "--out", good, "--kdf-cost", "10000"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  v1::KeyPartFile file;
  ASSERT_TRUE(file.ParseFromString(*ReadFileBytes(good)));
  file.set_description("custodian \xff\xfe");
  std::string bytes;
  {
    google::protobuf::LogSilencer quiet;  // the test's own serialization complains too
    ASSERT_TRUE(file.SerializeToString(&bytes));
  }
  const std::string bad = tmp_.Join("bad.part");
  std::ofstream(bad, std::ios::binary) << bytes;
  RunResult show = RunHsmctl(tmp_, {"keypart", "show", bad});
  EXPECT_EQ(show.exit_code, 4) << Describe(show);
  EXPECT_THAT(show.err, HasSubstr("hsmctl: BAD_PART_FILE: "));
  EXPECT_THAT(show.err, HasSubstr(bad));
  EXPECT_THAT(show.err, Not(HasSubstr("libprotobuf")));
  EXPECT_EQ(std::count(show.err.begin(), show.err.end(), '\n'), 1) << show.err;
}

// Numbers out of range are usage errors (exit 2) naming the option, before
// anything is read or started: a negative --limit once listed every key
// (SQLite takes a negative LIMIT as none).
TEST_F(HsmctlOperatorTest, OutOfRangeNumbersAreUsageErrors) {
  const std::vector<std::vector<std::string>> cases = {
      {"keys", "list", "--limit", "-5"},
      {"keys", "list", "--limit", "0"},
      {"fleet", "down", "--grace-ms", "-1"},
      {"fleet", "up", "--ready-timeout-ms", "0"},
      {"fleet", "start", "--ready-timeout-ms", "-20"},
      {"fleet", "restart", "unit1", "--ready-timeout-ms", "0"},
  };
  for (const auto& args : cases) {
    RunResult r = Hsmctl(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(args[args.size() - 2])) << Describe(r);
  }
  EXPECT_FALSE(fs::exists(fleet_)) << "a usage error created the fleet";
}

}  // namespace
}  // namespace hsmsim::host

// A unit is known by its unit id, and a unit that cannot start or cannot
// persist says why (issue 11, inputs 5 and 13), against the real hsmctl and
// hsmsim-unit processes on loopback:
//   - fleet.json pins every unit's id at fleet up;
//   - a unit whose unit.state was removed is not restarted blank: the unit
//     refuses to start (UNIT_STATE_MISSING) and `fleet restart` reports its
//     own words at once; with device.key removed too, the new process
//     answers with another id and is stopped, never assigned;
//   - every command refuses a unit that answers with another id than the
//     pinned one, and `unit replace` / `fleet restart --new-unit` are the
//     deliberate ways to accept a new unit;
//   - a unit whose state cannot be written answers STATE_NOT_PERSISTED,
//     stays up with its last saved state, and hsmctl shows its words.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/fleet_launcher.h"
#include "host/fleet_manifest.h"
#include "host/unit_client.h"
#include "tests/host/hsmctl_harness.h"
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class UnitIdentityTest : public HsmctlFleetTest {
 protected:
  void MustRun(std::vector<std::string> args) {
    RunResult r = Hsmctl(args);
    ASSERT_EQ(r.exit_code, 0) << args[0] << " " << (args.size() > 1 ? args[1] : "") << "\n"
                              << Describe(r);
  }

  FleetManifest Manifest() {
    auto m = LoadFleetManifest(fleet_);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : FleetManifest{};
  }

  // Info reads GetInfo from unit `name` without any pin.
  absl::StatusOr<v1::GetInfoResponse> Info(const std::string& name) {
    FleetManifest m = Manifest();
    FleetUnit* unit = m.FindUnit(name);
    if (unit == nullptr) return absl::NotFoundError(name);
    UnitClientOptions options;
    options.idempotent_attempts = 1;
    options.timeout = std::chrono::milliseconds(2000);
    auto client = UnitClient::Create(unit->name, unit->endpoint, options);
    if (!client.ok()) return client.status();
    return (*client)->GetInfo();
  }

  // Kill kills unit `name` with SIGKILL and waits until it is gone.
  void Kill(const std::string& name) {
    FleetManifest m = Manifest();
    FleetUnit* unit = m.FindUnit(name);
    ASSERT_NE(unit, nullptr);
    ASSERT_EQ(::kill(unit->pid, SIGKILL), 0);
    for (int i = 0; i < 250 && ProcessAlive(unit->pid); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_FALSE(ProcessAlive(unit->pid));
  }

  std::string StateDir(const std::string& name) { return Manifest().FindUnit(name)->state_dir; }

  // WriteManifest replaces fleet.json with `m`.
  void WriteManifest(const FleetManifest& m) { ASSERT_TRUE(SaveFleetManifest(fleet_, m).ok()); }
};

TEST_F(UnitIdentityTest, FleetUpPinsEveryUnitsId) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "prod"});
  for (const FleetUnit& unit : Manifest().units) {
    auto info = Info(unit.name);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(unit.unit_id, info->unit_id()) << unit.name;
  }
}

TEST_F(UnitIdentityTest, RestartAfterUnitStateWasRemovedReportsTheUnitsOwnError) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "prod"});
  const FleetManifest before = Manifest();
  ASSERT_NO_FATAL_FAILURE(Kill("unit2"));
  const std::string state = StateDir("unit2") + "/unit.state";
  ASSERT_TRUE(fs::remove(state));

  RunResult r = Hsmctl({"fleet", "restart", "unit2"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, Not(HasSubstr("restarted")));
  // The unit's own words, not a timeout.
  EXPECT_THAT(r.err, HasSubstr("UNIT_EXITED: unit2"));
  EXPECT_THAT(r.err, HasSubstr("exited with status 2"));
  EXPECT_THAT(r.err, HasSubstr("hsmsim-unit: UNIT_STATE_MISSING: " + state + " is missing"));
  EXPECT_THAT(r.err, HasSubstr("--new-unit"));
  EXPECT_FALSE(fs::exists(state)) << "no blank unit was created in its place";
  EXPECT_EQ(SerializeFleetManifest(Manifest()), SerializeFleetManifest(before));
}

TEST_F(UnitIdentityTest, RestartOfADamagedStateFileReportsTheUnitsOwnErrorAtOnce) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "1", "--instance", "prod"});
  ASSERT_NO_FATAL_FAILURE(Kill("unit1"));
  const std::string state = StateDir("unit1") + "/unit.state";
  std::string bytes = *ReadFileBytes(state);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  {
    std::ofstream out(state, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  // A ready timeout far longer than the test may take: the answer must come
  // from the unit's exit, not from waiting.
  RunResult r = Hsmctl({"fleet", "restart", "unit1", "--ready-timeout-ms", "120000"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, Not(HasSubstr("UNIT_TIMEOUT")));
  EXPECT_THAT(r.err, HasSubstr("UNIT_EXITED: unit1"));
  EXPECT_THAT(r.err, HasSubstr("hsmsim-unit: STATE_FILE_AUTHENTICATION_FAILED: " + state));
  EXPECT_EQ(*ReadFileBytes(state), bytes) << "the damaged file is left as it is";
}

TEST_F(UnitIdentityTest, FleetUpReportsAUnitsOwnStartupErrorAtOnce) {
  FleetGuard guard(tmp_, fleet_);
  // unit2's directory holds something that is not a unit state file.
  const std::string dir = fleet_ + "/unit2";
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  { std::ofstream(dir + "/device.key", std::ios::binary) << std::string(32, 'k'); }
  { std::ofstream(dir + "/unit.state", std::ios::binary) << "not a state file at all"; }
  RunResult up =
      Hsmctl({"fleet", "up", "--units", "2", "--instance", "prod", "--ready-timeout-ms", "120000"});
  EXPECT_EQ(up.exit_code, 1) << Describe(up);
  EXPECT_THAT(up.err, Not(HasSubstr("UNIT_TIMEOUT")));
  EXPECT_THAT(up.err, HasSubstr("UNIT_EXITED: unit2"));
  EXPECT_THAT(up.err, HasSubstr("exited with status 2"));
  EXPECT_THAT(up.err, HasSubstr("hsmsim-unit: BAD_STATE_FILE_MAGIC: " + dir + "/unit.state"));
  EXPECT_EQ(*ReadFileBytes(dir + "/unit.state"), "not a state file at all");
}

TEST_F(UnitIdentityTest, AUnitThatComesBackWithAnotherIdIsStoppedAndNeverJoins) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "prod"});
  const FleetManifest before = Manifest();
  ASSERT_NO_FATAL_FAILURE(Kill("unit2"));
  // Both files gone: the unit cannot tell that a unit was here.
  ASSERT_TRUE(fs::remove(StateDir("unit2") + "/unit.state"));
  ASSERT_TRUE(fs::remove(StateDir("unit2") + "/device.key"));

  RunResult r = Hsmctl({"fleet", "restart", "unit2"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, Not(HasSubstr("restarted")));
  EXPECT_THAT(r.err, HasSubstr("UNIT_ID_MISMATCH"));
  EXPECT_THAT(r.err, HasSubstr("pins unit2 to unit id " + ToHex(before.units[1].unit_id)));
  EXPECT_THAT(r.err, HasSubstr("was stopped and not assigned to the instance"));
  EXPECT_FALSE(Info("unit2").ok()) << "the blank process is not left running";
  EXPECT_EQ(SerializeFleetManifest(Manifest()), SerializeFleetManifest(before));

  // The deliberate way: a new unit, its id pinned, and what it needs.
  r = Hsmctl({"fleet", "restart", "unit2", "--new-unit"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("unit2: replaced by a new unit"));
  EXPECT_THAT(r.out, HasSubstr("(was " + ToHex(before.units[1].unit_id) + ")"));
  EXPECT_THAT(r.out, HasSubstr("imprint mode"));
  EXPECT_THAT(r.out, HasSubstr("hsmctl admin add"));
  auto info = Info("unit2");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_NE(info->unit_id(), before.units[1].unit_id);
  EXPECT_EQ(Manifest().FindUnit("unit2")->unit_id, info->unit_id());
  MustRun({"status"});
}

TEST_F(UnitIdentityTest, FleetUpAgainOverALostStateRefusesTheNewUnit) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "prod"});
  const FleetManifest before = Manifest();
  MustRun({"fleet", "down"});
  ASSERT_TRUE(fs::remove(StateDir("unit2") + "/unit.state"));
  ASSERT_TRUE(fs::remove(StateDir("unit2") + "/device.key"));
  RunResult up = Hsmctl({"fleet", "up", "--units", "2", "--instance", "prod"});
  EXPECT_EQ(up.exit_code, 1) << Describe(up);
  EXPECT_THAT(up.err, HasSubstr("UNIT_ID_MISMATCH: unit unit2 answers with unit id"));
  EXPECT_THAT(up.err, HasSubstr("pins unit2 to unit id " + ToHex(before.units[1].unit_id)));
  for (const FleetUnit& unit : Manifest().units) {
    EXPECT_FALSE(Info(unit.name).ok()) << unit.name << " was left running";
  }
}

TEST_F(UnitIdentityTest, EveryCommandRefusesAUnitThatAnswersWithAnotherId) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "prod"});
  // fleet.json pins unit2 to another id (as after a unit was replaced
  // behind its address).
  FleetManifest m = Manifest();
  const std::string real_id = m.units[1].unit_id;
  m.units[1].unit_id = m.units[0].unit_id;
  ASSERT_NO_FATAL_FAILURE(WriteManifest(m));

  for (std::vector<std::string> args :
       {std::vector<std::string>{"status"}, std::vector<std::string>{"compare"},
        std::vector<std::string>{"fleet", "status"}}) {
    RunResult r = Hsmctl(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("unit2: FAILED: UNIT_ID_MISMATCH")) << args[0];
  }
  const std::string alice = tmp_.Join("alice.key");
  RunResult keygen = RunHsmctl(
      tmp_, {"admin", "keygen", "--name", "alice", "--out", alice, "--kdf-cost", "10000"});
  ASSERT_EQ(keygen.exit_code, 0) << Describe(keygen);
  // Imprint mode takes unsigned changes: the other unit must not get them.
  RunResult add = Hsmctl({"admin", "add", alice});
  EXPECT_EQ(add.exit_code, 1) << Describe(add);
  EXPECT_THAT(add.out, HasSubstr("unit1: ok"));
  EXPECT_THAT(add.out, HasSubstr("unit2: FAILED: UNIT_ID_MISMATCH"));
  ASSERT_TRUE(Info("unit2").ok());
  EXPECT_EQ(Info("unit2")->administrators_size(), 0) << "nothing reached the other unit";

  // Accepting the unit is deliberate, and says what changed.
  RunResult replace = Hsmctl({"unit", "replace", "unit2"});
  ASSERT_EQ(replace.exit_code, 0) << Describe(replace);
  EXPECT_THAT(replace.out, HasSubstr("unit2: now pinned to unit id " + ToHex(real_id)));
  EXPECT_EQ(Manifest().FindUnit("unit2")->unit_id, real_id);
  replace = Hsmctl({"unit", "replace", "unit2"});
  ASSERT_EQ(replace.exit_code, 0) << Describe(replace);
  EXPECT_THAT(replace.out, HasSubstr("unit2: already pinned"));
  MustRun({"status"});
}

TEST_F(UnitIdentityTest, AStateWriteFailureIsAnsweredAndTheUnitStaysUp) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "prod"});
  // unit2 cannot write its state: its temporary state file is a directory
  // (as a full disk or a read-only state directory, even for root).
  const std::string tmp_state = StateDir("unit2") + "/unit.state.tmp";
  ASSERT_TRUE(fs::create_directory(tmp_state));
  { std::ofstream(tmp_state + "/keep") << "x"; }
  const std::string alice = tmp_.Join("alice.key");
  RunResult keygen = RunHsmctl(
      tmp_, {"admin", "keygen", "--name", "alice", "--out", alice, "--kdf-cost", "10000"});
  ASSERT_EQ(keygen.exit_code, 0) << Describe(keygen);

  RunResult add = Hsmctl({"admin", "add", alice});
  EXPECT_EQ(add.exit_code, 1) << Describe(add);
  EXPECT_THAT(add.out, HasSubstr("unit1: ok"));
  // The unit's own words, not "connection lost".
  EXPECT_THAT(add.out, HasSubstr("unit2: FAILED: STATE_NOT_PERSISTED: adding 'alice': "
                                 "the unit could not save its state, so the command was not "
                                 "applied"));
  EXPECT_THAT(add.out, HasSubstr(tmp_state));
  EXPECT_THAT(add.out, Not(HasSubstr("connection lost")));
  // Still up, with its last saved state.
  auto info = Info("unit2");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->administrators_size(), 0);
  MustRun({"fleet", "status"});

  // Once the state can be written, the same command goes through.
  fs::remove_all(tmp_state);
  RunResult again = Hsmctl({"admin", "add", alice});
  EXPECT_THAT(again.out, HasSubstr("unit2: ok")) << Describe(again);
  EXPECT_EQ(Info("unit2")->administrators_size(), 1);
}

// Issue 11, input 5, end to end: a rotation interrupted half way through
// re-encryption, then unit3 killed and its state removed.
class UnitIdentityRotationTest : public RotationFixture {};

TEST_F(UnitIdentityRotationTest, AUnitThatLostItsStateMidRotationNeverJoinsSilently) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(300));
  RunResult rotate = HsmctlWithEnv({"mk", "rotate", "--sign", sign_, "--batch-size", "50"},
                                   {"HSMSIM_TEST_CRASH_AT=reencrypt-batch-stored:100"});
  ASSERT_EQ(rotate.exit_code, 137) << Describe(rotate);
  ASSERT_NO_FATAL_FAILURE(KillUnits({"unit3"}));
  const FleetManifest before = Manifest();
  const std::string dir = before.units[2].state_dir;
  ASSERT_TRUE(fs::remove(dir + "/unit.state"));

  // The unit refuses to start blank; hsmctl says so in its words.
  RunResult restart = Hsmctl({"fleet", "restart", "unit3"});
  EXPECT_EQ(restart.exit_code, 1) << Describe(restart);
  EXPECT_THAT(restart.out, Not(HasSubstr("restarted")));
  EXPECT_THAT(restart.err, HasSubstr("UNIT_STATE_MISSING"));
  // Without device.key either, the new process has another id: stopped.
  ASSERT_TRUE(fs::remove(dir + "/device.key"));
  restart = Hsmctl({"fleet", "restart", "unit3"});
  EXPECT_EQ(restart.exit_code, 1) << Describe(restart);
  EXPECT_THAT(restart.err, HasSubstr("UNIT_ID_MISMATCH"));
  EXPECT_FALSE(UnitAlive("unit3"));

  // Replaced on purpose: recover says to set it up, never to load parts
  // on a unit that cannot take them, and --apply does nothing.
  MustRun({"fleet", "restart", "unit3", "--new-unit"});
  RunResult rec = Hsmctl({"recover", "--json"});
  EXPECT_EQ(rec.exit_code, 1) << Describe(rec);
  json doc = json::parse(rec.out);
  EXPECT_EQ(doc["situation"], "FIX_AND_ROTATE_AGAIN") << rec.out;
  EXPECT_THAT(doc["observed"].get<std::string>(), HasSubstr("unit3 are in imprint mode"));
  EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("admin add"));
  EXPECT_THAT(doc["action"].get<std::string>(), Not(HasSubstr("--parts")));
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_EQ(apply.exit_code, 1) << Describe(apply);
  EXPECT_THAT(apply.out + apply.err, HasSubstr("NOTHING_SAFE_TO_APPLY"));
  // The blank unit took no part: the rotation journal is where hsmctl died.
  EXPECT_EQ(JournalPhase(), "REENCRYPTING");
}

}  // namespace
}  // namespace hsmsim::host

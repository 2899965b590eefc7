// Security of the fleet hsmctl makes (issue 10): the modes of every file
// and directory, the environment units are started with, and the ceremony's
// guard against administrators nobody intended. Real hsmctl and hsmsim-unit
// processes on ephemeral ports; every fleet is stopped by its FleetGuard.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"
#include "host/fleet_launcher.h"
#include "host/fleet_manifest.h"
#include "host/signed_command.h"
#include "host/unit_client.h"
#include "tests/host/hsmctl_harness.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HsmctlSecurityTest : public HsmctlFleetTest {
 protected:
  void MustRun(std::vector<std::string> args) {
    RunResult r = Hsmctl(args);
    ASSERT_EQ(r.exit_code, 0) << args[0] << " " << (args.size() > 1 ? args[1] : "") << "\n"
                              << Describe(r);
  }

  void FleetUp(int units) {
    MustRun({"fleet", "up", "--units", std::to_string(units), "--instance", "sec"});
  }

  // Keygen writes NAME.key in the temporary directory (cheap KDF for speed).
  std::string Keygen(const std::string& name) {
    const std::string file = tmp_.Join(name + ".key");
    RunResult r =
        RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file, "--kdf-cost", "10000"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return file;
  }

  FleetManifest Manifest() {
    auto m = LoadFleetManifest(fleet_);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : FleetManifest{};
  }

  std::unique_ptr<UnitClient> Client(const std::string& name) {
    FleetManifest m = Manifest();
    FleetUnit* unit = m.FindUnit(name);
    EXPECT_NE(unit, nullptr) << name;
    auto client = UnitClient::Create(unit->name, unit->endpoint);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }

  // AdminNames returns the administrators installed on each unit.
  std::vector<std::vector<std::string>> AdminNames() {
    std::vector<std::vector<std::string>> out;
    for (const FleetUnit& unit : Manifest().units) {
      auto info = Client(unit.name)->GetInfo();
      EXPECT_TRUE(info.ok()) << info.status();
      std::vector<std::string> names;
      if (info.ok()) {
        for (const auto& a : info->administrators()) names.push_back(a.name());
      }
      out.push_back(names);
    }
    return out;
  }
};

// UmaskGuard sets the process umask (inherited by every process the test
// starts) and restores it.
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
  ~UmaskGuard() { ::umask(old_); }

 private:
  mode_t old_;
};

// Under umask 000 a whole ceremony, keys and a restart leave no file or
// directory that anyone but the owner can read, enter or write.
TEST_F(HsmctlSecurityTest, FleetFilesArePrivateUnderUmask000) {
  UmaskGuard umask(0);
  FleetGuard guard(tmp_, fleet_);
  FleetUp(2);
  const std::string alice = Keygen("alice");
  MustRun({"admin", "add", alice});
  MustRun({"thresholds", "set", "--signature", "1", "--revocation", "1", "--sign", alice});
  std::vector<std::string> parts;
  for (int i = 1; i <= 2; ++i) {
    parts.push_back(tmp_.Join(StrCat("part", i)));
    RunResult r =
        RunHsmctl(tmp_, {"keypart", "generate", "--out", parts.back(), "--kdf-cost", "10000"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  MustRun({"mk", "load", "--parts", parts[0] + "," + parts[1], "--sign", alice});
  MustRun({"mk", "commit", "--parts", parts[0] + "," + parts[1], "--sign", alice});
  MustRun({"mk", "setimm", "--sign", alice});
  MustRun({"keys", "create", "--count", "20"});
  // A restart writes the port file and the log again.
  FleetUnit unit1 = Manifest().units.at(0);
  ::kill(unit1.pid, SIGKILL);
  for (int i = 0; i < 250 && ProcessAlive(unit1.pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  MustRun({"fleet", "restart", "unit1"});

  std::vector<std::string> checked;
  auto check = [&](const fs::path& p) {
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    const unsigned mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      EXPECT_EQ(mode, 0700u) << "directory " << p << " has mode 0" << std::oct << mode;
    } else {
      EXPECT_EQ(mode & 077, 0u) << p << " has mode 0" << std::oct << mode
                                << "; group and others must have no access";
    }
    checked.push_back(p.filename().string());
  };
  check(fleet_);
  for (const auto& entry : fs::recursive_directory_iterator(fleet_)) check(entry.path());
  for (const std::string& f : {alice, parts[0], parts[1]}) check(f);
  // What the fleet holds: hsmctl's files and each unit's.
  for (const char* name : {"fleet.json", "keystore.db", "unit1", "unit2", "unit.log", "port",
                           "device.key", "unit.state"}) {
    EXPECT_THAT(checked, ::testing::Contains(name));
  }
}

// A unit's environment (/proc/PID/environ, for its whole life) holds no
// password and nothing else hsmctl was not told to pass, after `fleet up`
// and after `fleet restart`. The unit is started through a script that saves
// its environment and then execs the real unit (same process, same
// environment): a unit marks itself non-dumpable, so only root could read
// its /proc/PID/environ, which the test also checks when it can.
TEST_F(HsmctlSecurityTest, UnitsDoNotInheritThePasswordOrOtherSecrets) {
  env_.Set("HSMSIM_TEST_SECRET_TOKEN", "do-not-pass-me");
  env_.Set("AWS_SECRET_ACCESS_KEY", "do-not-pass-me-either");
  const std::string env_dir = tmp_.Join("unit-env");
  fs::create_directories(env_dir);
  const std::string wrapper = tmp_.Join("unit-wrapper.sh");
  {
    std::ofstream out(wrapper);
    out << "#!/bin/sh\numask 077\nenv > '" << env_dir << "'/$$\nexec '" << HSMSIM_UNIT_PATH
        << "' \"$@\"\n";
  }
  fs::permissions(wrapper, fs::perms::owner_all);
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "1", "--instance", "sec", "--unit-binary", wrapper});
  auto expect_scrubbed = [&](int pid) {
    std::vector<std::string> sources = {StrCat(env_dir, "/", pid)};
    if (::access(StrCat("/proc/", pid, "/environ").c_str(), R_OK) == 0) {
      sources.push_back(StrCat("/proc/", pid, "/environ"));
    }
    for (const std::string& source : sources) {
      auto env = ReadFileBytes(source);
      ASSERT_TRUE(env.ok()) << env.status();
      EXPECT_THAT(*env, Not(HasSubstr("HSMSIM_PASSWORD"))) << source;
      EXPECT_THAT(*env, Not(HasSubstr(kPassword))) << source;
      EXPECT_THAT(*env, Not(HasSubstr("do-not-pass-me"))) << source;
      EXPECT_THAT(*env, Not(HasSubstr("HSMSIM_UNIT_BINARY"))) << source;
      if (const char* path = std::getenv("PATH"); path != nullptr) {
        EXPECT_THAT(*env, HasSubstr(StrCat("PATH=", path))) << source;
      }
    }
  };
  FleetUnit unit1 = Manifest().units.at(0);
  expect_scrubbed(unit1.pid);

  ::kill(unit1.pid, SIGKILL);
  for (int i = 0; i < 250 && ProcessAlive(unit1.pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  MustRun({"fleet", "restart", "unit1", "--unit-binary", wrapper});
  FleetUnit restarted = Manifest().units.at(0);
  ASSERT_NE(restarted.pid, unit1.pid);
  expect_scrubbed(restarted.pid);
  // The unit works on its scrubbed environment.
  MustRun({"status"});
}

// In imprint mode anyone who reaches a unit can add an administrator without
// a signature. `thresholds set` and `admin add` refuse to build on a unit
// holding an administrator the operator did not name, and change nothing.
TEST_F(HsmctlSecurityTest, CeremonyRefusesUnexpectedAdministrators) {
  FleetGuard guard(tmp_, fleet_);
  FleetUp(2);
  const std::string alice = Keygen("alice");
  const std::string bob = Keygen("bob");
  const std::string carol = Keygen("carol");
  const std::string mallory = Keygen("mallory");
  MustRun({"admin", "add", alice, bob});

  // `status` warns while the units are open to anyone.
  RunResult status = Hsmctl({"status"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  EXPECT_THAT(status.out, HasSubstr("open to anyone who can reach it"));
  RunResult status_json = Hsmctl({"status", "--json"});
  ASSERT_EQ(status_json.exit_code, 0) << Describe(status_json);
  const json status_json_doc = json::parse(status_json.out);
  for (const json& u : status_json_doc["units"]) {
    EXPECT_TRUE(u["open_to_anyone"].get<bool>()) << status_json.out;
    EXPECT_THAT(u["warning"].get<std::string>(), HasSubstr("imprint mode"));
  }

  // Mallory adds herself to unit2, unsigned, as imprint mode allows.
  auto mallory_key = ReadAdminKeyFile(mallory, kPassword);
  ASSERT_TRUE(mallory_key.ok()) << mallory_key.status();
  const std::string mallory_id = ToHex(mallory_key->key_id);
  {
    v1::Command op;
    op.mutable_add_admin()->set_name("mallory");
    op.mutable_add_admin()->set_public_key(mallory_key->public_key_der);
    auto added = IssueCommand(*Client("unit2"), op, {});
    ASSERT_TRUE(added.ok()) << added.status();
  }

  // thresholds set: the expected set is the signers; mallory is not one.
  RunResult set = Hsmctl(
      {"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", alice + "," + bob});
  EXPECT_EQ(set.exit_code, 1) << Describe(set);
  EXPECT_THAT(set.err, HasSubstr("UNEXPECTED_ADMINISTRATOR"));
  EXPECT_THAT(set.err, HasSubstr("unit2"));
  EXPECT_THAT(set.err, HasSubstr(StrCat("'mallory' [", mallory_id.substr(0, 16), "]")));
  EXPECT_THAT(set.err, Not(HasSubstr("unit1")));
  EXPECT_THAT(set.err, Not(HasSubstr("'alice'")));
  // Nothing changed: both units are still in imprint mode.
  for (const char* name : {"unit1", "unit2"}) {
    auto info = Client(name)->GetInfo();
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->mode(), v1::MODE_IMPRINT) << name;
    EXPECT_EQ(info->signature_threshold(), 0u) << name;
  }
  RunResult set_json = Hsmctl({"thresholds", "set", "--signature", "2", "--revocation", "2",
                               "--sign", alice + "," + bob, "--json"});
  EXPECT_EQ(set_json.exit_code, 1) << Describe(set_json);
  EXPECT_EQ(json::parse(set_json.out)["error"]["reason"], "UNEXPECTED_ADMINISTRATOR");

  // admin add: the expected set is the files added and the signers, plus
  // --expect-admins; alice and bob must be named, and mallory still refuses.
  RunResult add_carol = Hsmctl({"admin", "add", carol});
  EXPECT_EQ(add_carol.exit_code, 1) << Describe(add_carol);
  EXPECT_THAT(add_carol.err, HasSubstr("UNEXPECTED_ADMINISTRATOR"));
  RunResult named = Hsmctl({"admin", "add", carol, "--expect-admins", alice + "," + bob});
  EXPECT_EQ(named.exit_code, 1) << Describe(named);
  EXPECT_THAT(named.err, HasSubstr("'mallory'"));
  EXPECT_THAT(named.err, Not(HasSubstr("'alice'")));
  for (const auto& names : AdminNames()) EXPECT_THAT(names, Not(::testing::Contains("carol")));

  // Named by key id (as `admin keygen` prints it), mallory is accepted.
  MustRun({"admin", "add", carol, "--expect-admins", alice + "," + bob + "," + mallory_id});
  MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign",
           alice + "," + bob, "--expect-admins", carol + "," + mallory_id});
  RunResult normal = Hsmctl({"status", "--json"});
  ASSERT_EQ(normal.exit_code, 0) << Describe(normal);
  const json normal_doc = json::parse(normal.out);
  for (const json& u : normal_doc["units"]) {
    EXPECT_FALSE(u["open_to_anyone"].get<bool>()) << normal.out;
    EXPECT_FALSE(u.contains("warning")) << normal.out;
  }
  RunResult normal_text = Hsmctl({"status"});
  EXPECT_THAT(normal_text.out, Not(HasSubstr("open to anyone")));
}

// The cost of new admin key files is 600,000 PBKDF2 iterations and says so
// in --help; files written before (2,048 iterations) are still accepted.
TEST_F(HsmctlSecurityTest, KeygenHelpShowsTheKdfCost) {
  RunResult help = RunHsmctl(tmp_, {"admin", "keygen", "--help"});
  EXPECT_EQ(help.exit_code, 0) << Describe(help);
  EXPECT_THAT(help.out, HasSubstr("PBKDF2-HMAC-SHA-256 with 600,000 iterations"));
  EXPECT_THAT(help.out, Not(HasSubstr("--kdf-cost")));
}

}  // namespace
}  // namespace hsmsim::host

// The fixture of the rotation tests that run real processes
// (rotation_integration_test, crash_matrix_test, load_during_rotation_test):
// a 3-unit fleet after the ceremony, with keys, sample data keys and the
// next master key committed; checks that no key was lost; helpers to run
// hsmctl with a test-only environment variable and to kill units.
#ifndef HSMSIM_TESTS_HOST_ROTATION_FIXTURE_H_
#define HSMSIM_TESTS_HOST_ROTATION_FIXTURE_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "host/keystore.h"
#include "tests/host/hsmctl_harness.h"
#include "tests/support/postgres_cluster.h"

namespace hsmsim::host {

class RotationFixture : public test_support::ProcessEnvironmentTest {
 protected:
  void SetUp() override {
    ProcessEnvironmentTest::SetUp();
    fleet_ = tmp_.Join("fleet");
    alice_ = tmp_.Join("alice.key");
    bob_ = tmp_.Join("bob.key");
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
      parts.push_back(tmp_.Join(StrCat(tag, "-part", i)));
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
  // `tls`: the fleet speaks mutual TLS (fleet up --tls).
  void Prepare(int keys, bool faults = false, bool tls = false) {
    std::vector<std::string> up = {"fleet", "up", "--units", "3", "--instance", "it"};
    if (faults) up.push_back("--allow-fault-injection");
    if (tls) up.push_back("--tls");
    if (!keystore_url_.empty()) {
      up.push_back("--keystore");
      up.push_back(keystore_url_);
    }
    MustRun(up);
    PrepareCeremony(keys);
  }

  // PrepareCeremony is Prepare after fleet up, on the fleet's units as they
  // are (a test that starts its fleet its own way).
  void PrepareCeremony(int keys) {
    for (auto [name, file] : {std::pair{"alice", alice_}, std::pair{"bob", bob_}}) {
      RunResult r = RunHsmctl(
          tmp_, {"admin", "keygen", "--name", name, "--out", file, "--kdf-cost", "10000"});
      ASSERT_EQ(r.exit_code, 0) << Describe(r);
    }
    MustRun({"admin", "add", alice_, bob_});
    MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", sign_});
    first_parts_ = MakeParts("first");
    MustRun({"mk", "load", "--parts", Join(first_parts_), "--sign", sign_});
    MustRun({"mk", "commit", "--parts", Join(first_parts_), "--sign", sign_});
    MustRun({"mk", "setimm", "--sign", sign_});
    MustRun({"keys", "create", "--count", std::to_string(keys)});
    num_keys_ = keys;
    std::mt19937 rng(42);
    for (int i = 0; i < 5; ++i) {
      std::string plain(32, '\0');
      for (char& c : plain) c = static_cast<char>(rng());
      ASSERT_NO_FATAL_FAILURE(WrapSample(i, StrCat("key-", 1 + i * (keys / 5)), plain));
    }
    next_parts_ = MakeParts("next");
    MustRun({"mk", "load", "--parts", Join(next_parts_), "--sign", sign_});
    MustRun({"mk", "commit", "--parts", Join(next_parts_), "--sign", sign_});
    target_vp_ = VpOfXor(next_parts_);
  }

  // WrapSample wraps `plain` (a data key) under root key `key` with hsmctl
  // keys wrap and keeps it as sample `i` for ExpectNoKeyLost.
  void WrapSample(int i, const std::string& key, const std::string& plain) {
    Sample s;
    s.key = key;
    s.plain = plain;
    const std::string in = tmp_.Join(StrCat("sample", i));
    std::ofstream(in, std::ios::binary) << s.plain;
    RunResult r = Hsmctl({"keys", "wrap", "--key", s.key}, in);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    s.wrapped = r.out;
    samples_.push_back(s);
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
      const std::string in = tmp_.Join(StrCat("wrapped", i));
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

  // KeystoreLocation: the fleet's keystore, a PostgreSQL URL when the test
  // set keystore_url_ before Prepare, else its SQLite file.
  std::string KeystoreLocation() const {
    return keystore_url_.empty() ? fleet_ + "/keystore.db" : keystore_url_;
  }

  // UsePostgres makes Prepare put the fleet's keystore in a new database of
  // this process's throwaway PostgreSQL cluster; skips the test, saying
  // why, when the server is not installed.
  void UsePostgres() {
    if (!test_support::PostgresCluster::ServerBinDir().has_value()) {
      GTEST_SKIP() << "the PostgreSQL server is not installed (Debian package postgresql, "
                      "which scripts/setup.sh installs)";
    }
    test_support::PostgresCluster* cluster = test_support::SharedPostgresCluster();
    ASSERT_NE(cluster, nullptr);
    static int databases = 0;
    const std::string db = StrCat("fleet_", ::getpid(), "_", ++databases);
    ASSERT_TRUE(cluster->CreateDatabase(db).ok());
    keystore_url_ = cluster->Url(db);
  }

  std::string JournalPhase() {
    auto store = OpenKeystore(KeystoreLocation(), false);
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

  // HsmctlWithEnv runs hsmctl like Hsmctl with `env` ("NAME=VALUE") added
  // to its environment, for that one run only.
  RunResult HsmctlWithEnv(std::vector<std::string> args, const std::vector<std::string>& env) {
    args.push_back("--fleet");
    args.push_back(fleet_);
    return RunHsmctl(tmp_, std::move(args), "/dev/null", {.set = env, .unset = {}});
  }

  FleetManifest Manifest() {
    auto manifest = LoadFleetManifest(fleet_);
    EXPECT_TRUE(manifest.ok()) << manifest.status();
    return manifest.ok() ? *manifest : FleetManifest{};
  }

  // UnitAlive is true while the unit's process (pid from the manifest) runs.
  bool UnitAlive(const std::string& name) {
    FleetManifest m = Manifest();
    const FleetUnit* u = m.FindUnit(name);
    return u != nullptr && IsUnitProcess(u->pid, u->state_dir);
  }

  // KillUnits sends SIGKILL to every named unit at once (pids from the
  // manifest), then waits until each is gone.
  void KillUnits(const std::vector<std::string>& names) {
    FleetManifest m = Manifest();
    std::vector<const FleetUnit*> killed;
    for (const std::string& name : names) {
      const FleetUnit* u = m.FindUnit(name);
      ASSERT_NE(u, nullptr) << name;
      if (IsUnitProcess(u->pid, u->state_dir)) {
        ASSERT_EQ(kill(u->pid, SIGKILL), 0) << name;
        killed.push_back(u);
      }
    }
    for (const FleetUnit* u : killed) {
      for (int i = 0; i < 500 && ProcessAlive(u->pid); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      ASSERT_FALSE(ProcessAlive(u->pid)) << u->name << " survived SIGKILL";
    }
  }

  // UnitNames: unit1..unit3.
  static std::vector<std::string> UnitNames() { return {"unit1", "unit2", "unit3"}; }

  struct Sample {
    std::string key;
    std::string plain;
    std::string wrapped;
  };

  TempDir tmp_;
  std::string fleet_, alice_, bob_, sign_, target_vp_;
  std::string keystore_url_;  // empty: the fleet's SQLite keystore
  std::vector<std::string> first_parts_, next_parts_;
  std::vector<Sample> samples_;
  int num_keys_ = 0;
};

}  // namespace hsmsim::host

#endif  // HSMSIM_TESTS_HOST_ROTATION_FIXTURE_H_

// Integration tests: the real hsmctl and hsmsim-unit binaries, on ephemeral
// 127.0.0.1 ports, in a temporary directory. Every test stops its units
// (FleetGuard), whatever happens.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/hex.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/key_part.h"
#include "host/admin_key_file.h"
#include "host/fleet_launcher.h"
#include "host/fleet_manifest.h"
#include "host/signed_command.h"
#include "host/unit_client.h"
#include "tests/host/hsmctl_harness.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

class HsmctlIntegrationTest : public HsmctlFleetTest {
 protected:
  RunResult FleetUp(int units) {
    return Hsmctl({"fleet", "up", "--units", std::to_string(units), "--instance", "it-instance",
                   "--unit-binary", HSMSIM_UNIT_PATH});
  }

  std::unique_ptr<UnitClient> Client(const FleetUnit& unit) {
    auto client = UnitClient::Create(unit.name, unit.endpoint);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }
};

TEST_F(HsmctlIntegrationTest, FleetUpStatusDown) {
  FleetGuard guard(tmp_, fleet_);
  RunResult up = FleetUp(2);
  ASSERT_EQ(up.exit_code, 0) << Describe(up);
  auto manifest = LoadFleetManifest(fleet_);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->instance, "it-instance");
  EXPECT_EQ(manifest->keystore, fleet_ + "/keystore.db");
  ASSERT_EQ(manifest->units.size(), 2u);
  for (const FleetUnit& unit : manifest->units) {
    EXPECT_TRUE(IsUnitProcess(unit.pid, unit.state_dir)) << unit.name;
    EXPECT_TRUE(fs::exists(fs::path(unit.state_dir) / "unit.log"));
    auto info = Client(unit)->GetInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->instance(), "it-instance");
    EXPECT_EQ(info->mode(), v1::MODE_IMPRINT);
  }
  // A second `fleet up` on a running fleet is refused.
  RunResult again = FleetUp(2);
  EXPECT_EQ(again.exit_code, 1) << Describe(again);
  EXPECT_THAT(again.err, HasSubstr("FLEET_RUNNING"));

  RunResult status = Hsmctl({"fleet", "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  json doc = json::parse(status.out);
  for (const json& u : doc["units"]) {
    EXPECT_TRUE(u["reachable"].get<bool>());
    EXPECT_TRUE(u["pid_alive"].get<bool>());
  }

  RunResult down = Hsmctl({"fleet", "down"});
  ASSERT_EQ(down.exit_code, 0) << Describe(down);
  for (const FleetUnit& unit : manifest->units) EXPECT_FALSE(ProcessAlive(unit.pid)) << unit.name;
  auto after = LoadFleetManifest(fleet_);
  ASSERT_TRUE(after.ok());
  for (const FleetUnit& unit : after->units) EXPECT_TRUE(unit.stopped);

  RunResult unreachable = Hsmctl({"status", "--timeout-ms", "1000"});
  EXPECT_EQ(unreachable.exit_code, 3) << Describe(unreachable);
  EXPECT_THAT(unreachable.out, HasSubstr("connection refused"));
}

TEST_F(HsmctlIntegrationTest, DamagedManifestIsBadInput) {
  fs::create_directories(fleet_);
  std::ofstream(FleetManifestPath(fleet_)) << "{\"format\": \"hsmsim-fleet\", \"units\": [";
  RunResult r = Hsmctl({"status"});
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("BAD_MANIFEST"));
  RunResult usage = Hsmctl({"thresholds", "set", "--signature", "9", "--revocation", "1"});
  EXPECT_EQ(usage.exit_code, 2) << Describe(usage);
}

TEST_F(HsmctlIntegrationTest, FullCeremonyOnThreeUnits) {
  FleetGuard guard(tmp_, fleet_);
  RunResult up = FleetUp(3);
  ASSERT_EQ(up.exit_code, 0) << Describe(up);

  const std::string alice = tmp_.Join("alice.key");
  const std::string bob = tmp_.Join("bob.key");
  for (auto [name, file] : {std::pair{"alice", alice}, std::pair{"bob", bob}}) {
    RunResult r =
        RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file, "--kdf-cost", "10000"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  RunResult add = Hsmctl({"admin", "add", alice, bob});
  ASSERT_EQ(add.exit_code, 0) << Describe(add);

  // Setting thresholds of 2 with one signature is refused; with both it works.
  // (bob, installed but not signing, must be named as expected.)
  RunResult one = Hsmctl({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign",
                          alice, "--expect-admins", bob});
  EXPECT_EQ(one.exit_code, 1) << Describe(one);
  EXPECT_THAT(one.out, HasSubstr("INSUFFICIENT_SIGNATURES"));
  RunResult thresholds = Hsmctl(
      {"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", alice + "," + bob});
  ASSERT_EQ(thresholds.exit_code, 0) << Describe(thresholds);

  std::vector<std::string> parts;
  for (int i = 1; i <= 3; ++i) {
    parts.push_back(tmp_.Join(StrCat("part", i)));
    RunResult r = RunHsmctl(tmp_, {"keypart", "generate", "--out", parts.back(), "--description",
                                   StrCat("holder ", i), "--kdf-cost", "10000"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  RunResult show = RunHsmctl(tmp_, {"keypart", "show", parts[0], "--json"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_EQ(json::parse(show.out)["description"], "holder 1");

  const std::string expected_vp = VpOfXor(parts);

  RunResult load = Hsmctl({"mk", "load", "--parts", parts[0] + "," + parts[1] + "," + parts[2],
                           "--sign", alice, "--json"});
  ASSERT_EQ(load.exit_code, 0) << Describe(load);
  json load_doc = json::parse(load.out);
  EXPECT_EQ(load_doc["expected_verification_pattern"], expected_vp);
  for (const json& u : load_doc["units"]) {
    EXPECT_EQ(u["new_state"], "FULL_UNCOMMITTED");
    EXPECT_EQ(u["new_verification_pattern"], expected_vp);
  }

  RunResult commit = Hsmctl({"mk", "commit", "--parts", parts[0] + "," + parts[1] + "," + parts[2],
                             "--sign", alice + "," + bob});
  ASSERT_EQ(commit.exit_code, 0) << Describe(commit);
  RunResult setimm = Hsmctl({"mk", "setimm", "--sign", bob});
  ASSERT_EQ(setimm.exit_code, 0) << Describe(setimm);

  // Every unit: CURRENT VALID with the VP of the parts, checked directly...
  auto manifest = LoadFleetManifest(fleet_);
  ASSERT_TRUE(manifest.ok());
  for (const FleetUnit& unit : manifest->units) {
    auto info = Client(unit)->GetInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->current_register().state(), v1::REGISTER_VALID) << unit.name;
    EXPECT_EQ(ToHex(info->current_register().verification_pattern()), expected_vp) << unit.name;
    EXPECT_EQ(info->new_register().state(), v1::REGISTER_EMPTY) << unit.name;
  }
  // ...and through `hsmctl status --json`.
  RunResult status = Hsmctl({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  json doc = json::parse(status.out);
  ASSERT_EQ(doc["units"].size(), 3u);
  for (const json& u : doc["units"]) {
    EXPECT_EQ(u["mode"], "NORMAL");
    EXPECT_EQ(u["instance"], "it-instance");
    EXPECT_EQ(u["signature_threshold"], 2);
    EXPECT_EQ(u["revocation_threshold"], 2);
    EXPECT_EQ(u["administrators"].size(), 2u);
    EXPECT_EQ(u["registers"]["current"]["state"], "VALID");
    EXPECT_EQ(u["registers"]["current"]["verification_pattern"], expected_vp);
    EXPECT_EQ(u["registers"]["new"]["state"], "EMPTY");
  }
  RunResult compare = Hsmctl({"compare"});
  EXPECT_EQ(compare.exit_code, 0) << Describe(compare);

  // A second set immediate is refused by every unit: exit 1, reason shown.
  RunResult again = Hsmctl({"mk", "setimm", "--sign", bob});
  EXPECT_EQ(again.exit_code, 1) << Describe(again);
  EXPECT_THAT(again.out, HasSubstr("NEW_REGISTER_NOT_COMMITTED"));

  // A wrong password is bad input (exit 4) before any unit is contacted.
  RunResult wrong = Hsmctl({"mk", "clrold", "--sign", alice, "--password-file", "/dev/null"});
  EXPECT_EQ(wrong.exit_code, 4) << Describe(wrong);
}

TEST_F(HsmctlIntegrationTest, CommandForAnotherUnitAndReplayAreRefused) {
  FleetGuard guard(tmp_, fleet_);
  RunResult up = FleetUp(2);
  ASSERT_EQ(up.exit_code, 0) << Describe(up);
  auto manifest = LoadFleetManifest(fleet_);
  ASSERT_TRUE(manifest.ok());
  auto a = Client(manifest->units[0]);
  auto b = Client(manifest->units[1]);
  auto info_a = a->GetInfo();
  ASSERT_TRUE(info_a.ok()) << info_a.status();

  auto key = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
  ASSERT_TRUE(key.ok());
  auto admin = MakeAdminKey("dave", std::move(*key));
  ASSERT_TRUE(admin.ok());
  v1::Command command;
  command.set_unit_id(info_a->unit_id());
  command.set_transaction_counter(info_a->transaction_counter());
  command.mutable_add_admin()->set_name("dave");
  command.mutable_add_admin()->set_public_key(admin->public_key_der);
  auto signed_command = SignCommand(command, {});  // imprint mode: unsigned
  ASSERT_TRUE(signed_command.ok());

  auto on_b = b->SendCommand(*signed_command);
  ASSERT_FALSE(on_b.ok());
  EXPECT_EQ(ReasonOf(on_b.status()), "WRONG_UNIT") << on_b.status();

  auto on_a = a->SendCommand(*signed_command);
  ASSERT_TRUE(on_a.ok()) << on_a.status();
  EXPECT_EQ(on_a->info().administrators_size(), 1);

  auto replay = a->SendCommand(*signed_command);
  ASSERT_FALSE(replay.ok());
  EXPECT_EQ(ReasonOf(replay.status()), "COUNTER_MISMATCH") << replay.status();
}

TEST_F(HsmctlIntegrationTest, ManyRequestsInFlightOnOneConnection) {
  FleetGuard guard(tmp_, fleet_);
  RunResult up = FleetUp(1);
  ASSERT_EQ(up.exit_code, 0) << Describe(up);
  auto manifest = LoadFleetManifest(fleet_);
  ASSERT_TRUE(manifest.ok());
  auto client = Client(manifest->units[0]);
  constexpr int kRequests = 200;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int ok = 0;
  for (int i = 0; i < kRequests; ++i) {
    v1::Request request;
    request.mutable_get_info();
    client->CallAsync(request, [&](absl::StatusOr<v1::Response> r) {
      std::lock_guard<std::mutex> lock(mu);
      if (r.ok() && r->status().code() == 0 && r->has_get_info()) ++ok;
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return done == kRequests; }));
  EXPECT_EQ(ok, kRequests);
}

}  // namespace
}  // namespace hsmsim::host

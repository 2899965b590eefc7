// Harness of the hsmctl integration tests: run the real hsmctl binary
// (tests/support/subprocess.h) and a guard that always stops the fleet it
// started.
#ifndef HSMSIM_TESTS_HOST_HSMCTL_HARNESS_H_
#define HSMSIM_TESTS_HOST_HSMCTL_HARNESS_H_

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
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
#include "tests/support/process_environment.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::host {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline constexpr const char* kPassword = test_support::kTestPassword;

using test_support::Describe;
using test_support::RunResult;
using test_support::TempDir;

// RunHsmctl runs hsmctl with `args` and returns its exit code and output
// (kept in `tmp` as runN.out and runN.err). `env` changes its environment
// for that one run only.
inline RunResult RunHsmctl(const TempDir& tmp, std::vector<std::string> args,
                           const std::string& stdin_path = "/dev/null",
                           test_support::EnvironmentChanges env = {}) {
  static std::atomic<int> counter{0};
  const int n = counter++;
  test_support::RunOptions options;
  options.env = std::move(env);
  options.stdin_path = stdin_path;
  options.stdout_path = tmp.Join(StrCat("run", n, ".out"));
  options.stderr_path = tmp.Join(StrCat("run", n, ".err"));
  args.insert(args.begin(), HSMCTL_PATH);
  return test_support::RunProgram(args, options);
}

// HsmctlFleetTest: the fixture of the hsmctl integration tests: the process
// environment of ProcessEnvironmentTest, a temporary directory, a fleet
// directory in it (not created), and Hsmctl(args), which runs hsmctl with
// `--fleet` pointing there.
class HsmctlFleetTest : public test_support::ProcessEnvironmentTest {
 protected:
  void SetUp() override {
    ProcessEnvironmentTest::SetUp();
    fleet_ = tmp_.Join("fleet");
  }

  RunResult Hsmctl(std::vector<std::string> args) {
    args.push_back("--fleet");
    args.push_back(fleet_);
    return RunHsmctl(tmp_, std::move(args));
  }

  TempDir tmp_;
  std::string fleet_;
};

// FleetGuard stops the fleet in `dir` when it goes out of scope: first
// `hsmctl fleet down`, then SIGKILL of any unit process still alive.
class FleetGuard {
 public:
  FleetGuard(const TempDir& tmp, std::string dir) : tmp_(tmp), dir_(std::move(dir)) {}
  ~FleetGuard() {
    RunHsmctl(tmp_, {"fleet", "down", "--fleet", dir_, "--grace-ms", "3000"});
    auto manifest = LoadFleetManifest(dir_);
    if (!manifest.ok()) return;
    for (const FleetUnit& unit : manifest->units) {
      if (unit.pid > 0 && IsUnitProcess(unit.pid, unit.state_dir)) {
        kill(unit.pid, SIGKILL);
        waitpid(unit.pid, nullptr, 0);  // ECHILD unless it is our child; harmless
        for (int i = 0; i < 250 && ProcessAlive(unit.pid); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    }
  }

 private:
  const TempDir& tmp_;
  std::string dir_;
};

// VpOfXor computes the expected master key VP independently of hsmsim:
// SHA-256(0x01 || XOR of the parts) with the last 4 bytes zeroed.
inline std::string VpOfXor(const std::vector<std::string>& part_files) {
  SecretBytes key(32, 0);
  for (const std::string& file : part_files) {
    auto bytes = ReadFileBytes(file);
    EXPECT_TRUE(bytes.ok());
    auto part = crypto::OpenKeyPartFile(*bytes, kPassword);
    EXPECT_TRUE(part.ok()) << part.status();
    EXPECT_EQ(part->size(), 32u);
    for (size_t i = 0; i < 32; ++i) key[i] ^= (*part)[i];
  }
  SecretBytes input;
  input.push_back(0x01);
  input.insert(input.end(), key.begin(), key.end());
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(input.data(), input.size(), digest);
  for (int i = 28; i < 32; ++i) digest[i] = 0;
  return ToHex(absl::Span<const uint8_t>(digest, sizeof(digest)));
}

}  // namespace hsmsim::host

#endif  // HSMSIM_TESTS_HOST_HSMCTL_HARNESS_H_

// Harness of the hsmctl integration tests: run the real hsmctl binary, a
// temporary directory, and a guard that always stops the fleet it started.
#ifndef HSMSIM_TESTS_HOST_HSMCTL_HARNESS_H_
#define HSMSIM_TESTS_HOST_HSMCTL_HARNESS_H_

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

extern char** environ;

namespace hsmsim::host {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline constexpr char kPassword[] = "integration-test-password";

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "hsmctl-it-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(std::string_view name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// RunHsmctl runs hsmctl with `args` and returns its exit code and output.
inline RunResult RunHsmctl(const TempDir& tmp, std::vector<std::string> args,
                           const std::string& stdin_path = "/dev/null") {
  static std::atomic<int> counter{0};
  const int n = counter++;
  const std::string out_path = tmp / StrCat("run", n, ".out");
  const std::string err_path = tmp / StrCat("run", n, ".err");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  args.insert(args.begin(), HSMCTL_PATH);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  RunResult result;
  if (posix_spawn(&pid, HSMCTL_PATH, &actions, nullptr, argv.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  result.out = ReadFileBytes(out_path).value_or("");
  result.err = ReadFileBytes(err_path).value_or("");
  return result;
}

inline std::string Describe(const RunResult& r) {
  return StrCat("exit ", r.exit_code, "\nstdout:\n", r.out, "\nstderr:\n", r.err);
}

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

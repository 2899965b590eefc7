// UnitProcess: one real hsmsim-unit listening on an ephemeral loopback port,
// started with ChildProcess and always stopped and reaped. Used by the
// emulator's process tests and by the loopback benchmark.
#ifndef HSMSIM_TESTS_SUPPORT_UNIT_PROCESS_H_
#define HSMSIM_TESTS_SUPPORT_UNIT_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/subprocess.h"

namespace hsmsim::test_support {

// kUnitWaitLimit bounds each wait for a unit. Generous: waiting ends as
// soon as the condition holds.
inline constexpr std::chrono::milliseconds kUnitWaitLimit{20'000};

struct UnitProcessOptions {
  std::string binary;     // the hsmsim-unit executable
  std::string state_dir;  // --state-dir
  std::string work_dir;   // where the port file and the output file go
  // Arguments after --listen 127.0.0.1:0 --port-file F --state-dir D.
  std::vector<std::string> args;
  bool die_with_parent = false;             // see ChildOptions
  std::chrono::milliseconds stop_grace{0};  // see ChildOptions
};

// UnitProcess runs hsmsim-unit; destroying it stops the process as
// `stop_grace` says. Not thread-safe.
class UnitProcess {
 public:
  explicit UnitProcess(UnitProcessOptions options);
  UnitProcess(const UnitProcess&) = delete;
  UnitProcess& operator=(const UnitProcess&) = delete;
  ~UnitProcess() = default;

  // WaitForPort returns the port once the port file appears, or nullopt if
  // the process exits first or kUnitWaitLimit passes.
  std::optional<uint16_t> WaitForPort();

  void Signal(int sig) { child_->Signal(sig); }
  pid_t pid() const { return child_->pid(); }
  bool Running() { return child_->Running(); }

  // WaitForExit returns the wait status, or nullopt if the unit still runs
  // after kUnitWaitLimit.
  std::optional<int> WaitForExit() { return child_->WaitForExit(kUnitWaitLimit); }

  // Stop stops the unit now (see ChildOptions::stop_grace); returns the wait
  // status.
  int Stop() { return child_->Stop(); }

  // StatusKilobytes returns a "kB" field of /proc/PID/status (VmHWM: peak
  // resident memory, VmRSS: resident now), or -1 when it cannot be read.
  long StatusKilobytes(std::string_view field) const;

  // Stderr returns what the process wrote to stderr and stdout.
  std::string Stderr() const;
  const std::string& output_path() const { return output_path_; }

 private:
  std::string port_file_;
  std::string output_path_;
  std::unique_ptr<ChildProcess> child_;
};

// ReadWholeFile returns the bytes of `path`, or "" when it cannot be read.
std::string ReadWholeFile(const std::string& path);

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_UNIT_PROCESS_H_

// The one way tests, benchmarks and tools of hsmsim start other programs:
// RunProgram runs a program to its end (hsmctl, the openssl command line);
// ChildProcess starts a long-running one (an hsmsim-unit) and always stops
// and reaps it.
#ifndef HSMSIM_TESTS_SUPPORT_SUBPROCESS_H_
#define HSMSIM_TESTS_SUPPORT_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hsmsim::test_support {

// EnvironmentChanges: what a child sees of this process's
// environment. Names in `unset` are removed; each "NAME=VALUE" of `set`
// replaces NAME or is added.
struct EnvironmentChanges {
  std::vector<std::string> set;
  std::vector<std::string> unset;
};

// RunOptions says how RunProgram runs one program.
struct RunOptions {
  EnvironmentChanges env;
  std::string stdin_path = "/dev/null";
  // Files that receive stdout and stderr (created or truncated, mode 0644)
  // and are kept; when empty, a temporary file that is removed after reading.
  std::string stdout_path;
  std::string stderr_path;
  // Zero: wait as long as it takes. Otherwise the program runs in its own
  // process group, which is SIGKILLed when the limit passes.
  std::chrono::milliseconds timeout{0};
};

// RunResult is what a program did: its exit code (128 + the signal number
// when a signal ended it; -1 when it could not be started), whether the
// timeout ended it, and what it wrote.
struct RunResult {
  int exit_code = -1;
  bool timed_out = false;
  std::string out;
  std::string err;
};

// RunProgram runs `argv` (argv[0] is the program's path, not searched in
// PATH) with `options` and waits for it to end; the child is always reaped.
RunResult RunProgram(const std::vector<std::string>& argv, const RunOptions& options = {});

// FindProgram returns the path of the executable `name` found in $PATH, or
// nullopt when there is none (RunProgram itself never searches PATH).
std::optional<std::string> FindProgram(const std::string& name);

// Describe renders a RunResult for a test failure message.
std::string Describe(const RunResult& result);

// ChildOptions says how ChildProcess starts a long-running program.
struct ChildOptions {
  EnvironmentChanges env;
  std::string stdin_path = "/dev/null";
  // The file that receives both stdout and stderr (created or truncated,
  // mode 0600); when empty, they go to /dev/null.
  std::string output_path;
  // The child is SIGKILLed by the kernel if this process dies first
  // (PR_SET_PDEATHSIG), so a killed benchmark leaves no unit behind.
  bool die_with_parent = false;
  // How Stop and the destructor end a running child: SIGTERM, then SIGKILL
  // after `stop_grace`; zero sends SIGKILL at once.
  std::chrono::milliseconds stop_grace{0};
};

// ChildProcess owns one running child. The destructor stops it (see
// ChildOptions::stop_grace) and reaps it, so no test leaks a process. Not
// thread-safe; not copyable or movable (hold it in a unique_ptr).
class ChildProcess {
 public:
  // Start forks and executes `argv` (argv[0] is the program's path). Returns
  // INTERNAL (FORK_FAILED) when fork fails. A program that cannot be executed
  // exits at once with code 127.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const ChildOptions& options = {});

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }

  // Running is false once the child has exited (and it is then reaped).
  bool Running();

  // Signal sends `sig` to the child if it has not been reaped yet.
  void Signal(int sig);

  // WaitForExit returns the child's wait status once it exits, or nullopt if
  // it is still running after `limit`.
  std::optional<int> WaitForExit(std::chrono::milliseconds limit);

  // Stop ends the child as ChildOptions::stop_grace says and returns its wait
  // status (or the status it had already exited with).
  int Stop();

 private:
  ChildProcess(pid_t pid, std::chrono::milliseconds stop_grace)
      : pid_(pid), stop_grace_(stop_grace) {}
  bool TryReap();

  pid_t pid_;
  std::chrono::milliseconds stop_grace_;
  bool exited_ = false;
  int wait_status_ = 0;
};

// ExitCodeOf turns a wait status into an exit code: the code of a normal
// exit, 128 + the signal number for a signal.
int ExitCodeOf(int wait_status);

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_SUBPROCESS_H_

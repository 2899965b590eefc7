#include "tests/support/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "common/check.h"
#include "common/status.h"
#include "common/str_cat.h"

extern char** environ;

namespace hsmsim::test_support {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(2);

// CStrings keeps strings and the null-terminated char* array execve wants;
// built before fork, since the child may only make async-signal-safe calls.
class CStrings {
 public:
  explicit CStrings(std::vector<std::string> strings) : strings_(std::move(strings)) {
    for (std::string& s : strings_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  char** get() { return pointers_.data(); }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

std::string NameOf(const std::string& assignment) {
  return assignment.substr(0, assignment.find('='));
}

std::vector<std::string> ChildEnvironment(const EnvironmentChanges& changes) {
  std::vector<std::string> removed = changes.unset;
  for (const std::string& kv : changes.set) removed.push_back(NameOf(kv));
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    bool keep = true;
    for (const std::string& name : removed) keep = keep && NameOf(kv) != name;
    if (keep) env.push_back(std::move(kv));
  }
  env.insert(env.end(), changes.set.begin(), changes.set.end());
  return env;
}

// Redirect is one file the child opens onto one of its standard
// descriptors, or (path null) a copy of an earlier target descriptor.
struct Redirect {
  int target_fd;
  const char* path;
  int flags;
  mode_t mode;
  int copy_of = -1;
};

struct SpawnSpec {
  bool new_process_group = false;
  bool die_with_parent = false;
  std::vector<Redirect> redirects;
};

// Spawn forks and executes; -1 when fork fails. Between fork and execve the
// child makes only async-signal-safe calls: tests run threads.
pid_t Spawn(const std::vector<std::string>& argv, const EnvironmentChanges& changes,
            const SpawnSpec& spec) {
  HSMSIM_CHECK(!argv.empty());
  CStrings args(argv);
  CStrings env(ChildEnvironment(changes));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (spec.new_process_group) ::setpgid(0, 0);
  if (spec.die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
  }
  for (const Redirect& r : spec.redirects) {
    if (r.path == nullptr) {
      if (::dup2(r.copy_of, r.target_fd) < 0) ::_exit(127);
      continue;
    }
    int fd = ::open(r.path, r.flags | O_CLOEXEC, r.mode);
    if (fd < 0) ::_exit(127);
    if (::dup2(fd, r.target_fd) < 0) ::_exit(127);  // dup2 clears O_CLOEXEC
    ::close(fd);
  }
  ::execve(args.get()[0], args.get(), env.get());
  ::_exit(127);
}

std::string ReadAndMaybeRemove(const std::string& path, bool remove) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (remove) ::unlink(path.c_str());
  return text;
}

// TemporaryFile returns the path of a new empty file under $TMPDIR or /tmp.
std::string TemporaryFile() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/hsmsim-run-XXXXXX");
  int fd = ::mkstemp(tmpl.data());
  HSMSIM_CHECK(fd >= 0);
  ::close(fd);
  return tmpl;
}

}  // namespace

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

RunResult RunProgram(const std::vector<std::string>& argv, const RunOptions& options) {
  const bool temporary_out = options.stdout_path.empty();
  const bool temporary_err = options.stderr_path.empty();
  const std::string out_path = temporary_out ? TemporaryFile() : options.stdout_path;
  const std::string err_path = temporary_err ? TemporaryFile() : options.stderr_path;
  constexpr int kWrite = O_WRONLY | O_CREAT | O_TRUNC;
  SpawnSpec spec;
  spec.new_process_group = options.timeout.count() > 0;
  spec.redirects = {{STDIN_FILENO, options.stdin_path.c_str(), O_RDONLY, 0},
                    {STDOUT_FILENO, out_path.c_str(), kWrite, 0644},
                    {STDERR_FILENO, err_path.c_str(), kWrite, 0644}};
  RunResult result;
  const pid_t pid = Spawn(argv, options.env, spec);
  if (pid > 0) {
    int status = 0;
    if (options.timeout.count() == 0) {
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    } else {
      const Clock::time_point deadline = Clock::now() + options.timeout;
      while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (Clock::now() >= deadline) {
          result.timed_out = true;
          ::kill(-pid, SIGKILL);
          ::waitpid(pid, &status, 0);
          break;
        }
        std::this_thread::sleep_for(kPollInterval);
      }
    }
    result.exit_code = ExitCodeOf(status);
  }
  result.out = ReadAndMaybeRemove(out_path, temporary_out);
  result.err = ReadAndMaybeRemove(err_path, temporary_err);
  return result;
}

std::optional<std::string> FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  for (;;) {
    size_t end = dirs.find(':', start);
    std::string dir = dirs.substr(start, end == std::string::npos ? end : end - start);
    std::string candidate = StrCat(dir.empty() ? "." : dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (end == std::string::npos) return std::nullopt;
    start = end + 1;
  }
}

std::string Describe(const RunResult& result) {
  return StrCat("exit ", result.exit_code, result.timed_out ? " (timed out)" : "", "\nstdout:\n",
                result.out, "\nstderr:\n", result.err);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const ChildOptions& options) {
  const std::string output = options.output_path.empty() ? "/dev/null" : options.output_path;
  constexpr int kWrite = O_WRONLY | O_CREAT | O_TRUNC;
  SpawnSpec spec;
  spec.die_with_parent = options.die_with_parent;
  spec.redirects = {{STDIN_FILENO, options.stdin_path.c_str(), O_RDONLY, 0},
                    {STDOUT_FILENO, output.c_str(), kWrite, 0600},
                    {STDERR_FILENO, nullptr, 0, 0, STDOUT_FILENO}};
  const pid_t pid = Spawn(argv, options.env, spec);
  if (pid < 0) {
    return Error(absl::StatusCode::kInternal, "FORK_FAILED",
                 StrCat("cannot start ", argv[0], ": fork failed (errno ", errno, ")"));
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, options.stop_grace));
}

ChildProcess::~ChildProcess() { Stop(); }

bool ChildProcess::TryReap() {
  if (exited_) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    wait_status_ = status;
  }
  return exited_;
}

bool ChildProcess::Running() { return !TryReap(); }

void ChildProcess::Signal(int sig) {
  if (!exited_) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::WaitForExit(std::chrono::milliseconds limit) {
  const Clock::time_point deadline = Clock::now() + limit;
  for (;;) {
    if (TryReap()) return wait_status_;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
}

int ChildProcess::Stop() {
  if (TryReap()) return wait_status_;
  if (stop_grace_.count() > 0) {
    ::kill(pid_, SIGTERM);
    if (std::optional<int> status = WaitForExit(stop_grace_)) return *status;
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exited_ = true;
  wait_status_ = status;
  return wait_status_;
}

}  // namespace hsmsim::test_support

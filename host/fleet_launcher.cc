#include "host/fleet_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"
#include "host/fleet_tls.h"
#include "host/pinned_unit_channel.h"
#include "host/private_directory.h"
#include "host/signed_command.h"
#include "host/unit_client.h"
#include "host/unit_tls.h"

extern char** environ;

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

bool IsExecutable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// ReapIfChild collects `pid` when it is our exited child, so it does not
// linger as a zombie while hsmctl runs.
void ReapIfChild(int pid) {
  int status = 0;
  ::waitpid(pid, &status, WNOHANG);
}

size_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<size_t>(size);
}

// UnitsOwnWords returns what a unit that failed to start said, from the
// part of its log written since `offset` (the log is appended to across
// restarts): its "hsmsim-unit: REASON: message" line when there is one,
// else the last lines it wrote.
std::string UnitsOwnWords(const std::string& log_path, size_t offset) {
  auto text = ReadFileBytes(log_path);
  if (!text.ok() || text->size() <= offset) return "(it wrote nothing to its log)";
  std::string run = text->substr(offset);
  while (!run.empty() && run.back() == '\n') run.pop_back();
  constexpr std::string_view kOwnLine = "hsmsim-unit: ";
  for (size_t end = run.size(); end > 0;) {
    const size_t begin = run.rfind('\n', end - 1);
    const size_t start = begin == std::string::npos ? 0 : begin + 1;
    if (std::string_view(run).substr(start, end - start).starts_with(kOwnLine)) {
      return run.substr(start, end - start);
    }
    if (begin == std::string::npos) break;
    end = begin;
  }
  constexpr size_t kTail = 1500;
  return run.size() > kTail ? run.substr(run.size() - kTail) : run;
}

// ChildExitStatus returns the wait status of `pid` once it has exited
// (reaping it when it is our child), -1 when it is gone and not our child,
// nullopt while it runs.
std::optional<int> ChildExitStatus(int pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return status;
  if (r < 0 && !ProcessAlive(pid)) return -1;
  return std::nullopt;
}

std::string DescribeExit(int status) {
  if (status >= 0 && WIFEXITED(status)) return StrCat("exited with status ", WEXITSTATUS(status));
  if (status >= 0 && WIFSIGNALED(status)) return StrCat("was killed by signal ", WTERMSIG(status));
  return "exited";
}

// UnitEnvironment returns the environment a unit is started with: only the
// variables named here, copied from hsmctl's. An allow-list, not a deny-list
// of known secrets: hsmctl's environment carries HSMSIM_PASSWORD and may
// carry any other credential of the operator's shell, and a unit keeps its
// environment (readable in /proc/PID/environ) for its whole life. The unit
// reads no variable itself; these serve the C library (locale, time zone,
// temporary files) and the sanitizer and coverage runtimes of test builds.
std::vector<std::string> UnitEnvironment() {
  static constexpr std::string_view kNames[] = {"PATH",
                                                "HOME",
                                                "USER",
                                                "LOGNAME",
                                                "LANG",
                                                "LANGUAGE",
                                                "TZ",
                                                "TMPDIR",
                                                "ASAN_OPTIONS",
                                                "UBSAN_OPTIONS",
                                                "TSAN_OPTIONS",
                                                "LSAN_OPTIONS",
                                                "MSAN_OPTIONS",
                                                "ASAN_SYMBOLIZER_PATH",
                                                "LLVM_SYMBOLIZER_PATH",
                                                "LLVM_PROFILE_FILE"};
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool allowed = name.starts_with("LC_");
    for (std::string_view n : kNames) allowed |= name == n;
    if (allowed) out.emplace_back(entry);
  }
  return out;
}

struct Started {
  FleetUnit unit;
  std::string port_file;
  std::string log_file;
  size_t log_offset = 0;  // the log's size when this run was spawned
  std::string listen = "127.0.0.1:0";
  bool allow_fault_injection = false;
  bool new_unit = false;
  std::optional<int> exit_status;  // set once the process is seen to exit
  // Mutual TLS: the unit's flags, and hsmctl's side (null: plaintext).
  UnitTlsFiles tls_files;
  std::shared_ptr<const TlsClientConfig> tls_config;
};

// Exited returns UNAVAILABLE (UNIT_EXITED) for a unit seen to exit while
// starting, with how it ended and its own words from its log.
absl::Status Exited(const Started& s, std::string_view when) {
  return Error(
      absl::StatusCode::kUnavailable, reason::kUnitExited,
      StrCat(s.unit.name, " (pid ", s.unit.pid, ") ", DescribeExit(*s.exit_status), " ", when, ": ",
             UnitsOwnWords(s.log_file, s.log_offset), " (log: ", s.log_file, ")"));
}

// CouldNotListen is true when the unit exited because it could not listen
// (exit status 1: its port may still be held by the process before it).
bool CouldNotListen(const Started& s) {
  return s.exit_status.has_value() && *s.exit_status >= 0 && WIFEXITED(*s.exit_status) &&
         WEXITSTATUS(*s.exit_status) == 1;
}

absl::StatusOr<int> Spawn(const std::string& binary, Started& s) {
  s.log_offset = FileSize(s.log_file);
  s.exit_status.reset();
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  // The log names the unit's files and requests; only its owner reads it.
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, s.log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<std::string> args = {binary,      "--listen",    s.listen,        "--port-file",
                                   s.port_file, "--state-dir", s.unit.state_dir};
  if (s.allow_fault_injection) args.push_back("--allow-fault-injection");
  if (s.new_unit) args.push_back("--new-unit");
  if (!s.tls_files.empty()) {
    args.insert(args.end(), {"--tls-cert", s.tls_files.cert, "--tls-key", s.tls_files.key,
                             "--tls-ca", s.tls_files.ca});
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = UnitEnvironment();
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, binary.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Error(absl::StatusCode::kInternal, reason::kSpawnFailed,
                 StrCat("cannot start ", binary, " for ", s.unit.name, " (log ", s.log_file,
                        "): ", std::strerror(rc)));
  }
  return static_cast<int>(pid);
}

// PrintUnitId runs `binary --state-dir DIR --print-unit-id` for `s` (its
// stderr to its log) and returns the unit id it prints (bytes): the unit of
// that state directory, created there when there is none. UNIT_EXITED with
// the unit's own words when it fails.
absl::StatusOr<std::string> PrintUnitId(const std::string& binary, Started& s) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Error(absl::StatusCode::kInternal, reason::kSpawnFailed,
                 StrCat("cannot make a pipe for ", s.unit.name, ": ", std::strerror(errno)));
  }
  s.log_offset = FileSize(s.log_file);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, s.log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  std::vector<std::string> args = {binary, "--state-dir", s.unit.state_dir, "--print-unit-id"};
  if (s.new_unit) args.push_back("--new-unit");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = UnitEnvironment();
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  std::string out;
  char buf[256];
  for (ssize_t n; rc == 0 && (n = ::read(fds[0], buf, sizeof(buf))) != 0;) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    if (n < 0 && errno != EINTR) break;
  }
  ::close(fds[0]);
  if (rc != 0) {
    return Error(absl::StatusCode::kInternal, reason::kSpawnFailed,
                 StrCat("cannot start ", binary, " for ", s.unit.name, ": ", std::strerror(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  auto id = FromHex(out);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !id.ok() || id->empty()) {
    s.unit.pid = pid;
    s.exit_status = status;
    absl::Status exited = Exited(s, "printing its unit id");
    s.unit.pid = 0;
    return exited;
  }
  return *std::move(id);
}

// PrepareUnitTls gives `s` the TLS flags of its unit: the unit id its state
// directory holds (PrintUnitId) and a certificate naming it.
absl::Status PrepareUnitTls(const std::string& binary, const std::string& dir,
                            const FleetTlsFiles& files,
                            const std::shared_ptr<const TlsClientConfig>& config, Started& s) {
  HSMSIM_ASSIGN_OR_RETURN(std::string id, PrintUnitId(binary, s));
  HSMSIM_ASSIGN_OR_RETURN(s.tls_files,
                          EnsureUnitCertificate(dir, files, s.unit.name, s.unit.state_dir, id));
  s.tls_config = config;
  s.unit.unit_id = std::move(id);
  s.unit.tls = true;
  return absl::OkStatus();
}

// WaitForEndpoint waits for the unit's port file and returns
// "127.0.0.1:PORT".
absl::StatusOr<std::string> WaitForEndpoint(Started& s, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    std::error_code ec;
    if (fs::exists(s.port_file, ec)) {
      auto text = ReadFileBytes(s.port_file);
      if (text.ok()) {
        std::string t = *text;
        while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' '))
          t.pop_back();
        if (size_t colon = t.rfind(':'); colon != std::string::npos) t = t.substr(colon + 1);
        char* end = nullptr;
        long port = std::strtol(t.c_str(), &end, 10);
        if (!t.empty() && end != nullptr && *end == '\0' && port > 0 && port < 65536) {
          return StrCat("127.0.0.1:", port);
        }
      }
    }
    if ((s.exit_status = ChildExitStatus(s.unit.pid))) return Exited(s, "before listening");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if ((s.exit_status = ChildExitStatus(s.unit.pid))) return Exited(s, "before listening");
  return Error(absl::StatusCode::kDeadlineExceeded, reason::kUnitTimeout,
               StrCat(s.unit.name, " (pid ", s.unit.pid, ") did not write its port file ",
                      s.port_file, " in time; see ", s.log_file));
}

// ReadyAndAssign waits until the unit answers GetInfo, checks its unit id
// against `pinned` (the id fleet.json pins; empty: any), assigns it to
// `instance` when it is not yet, and returns its unit id. A unit with
// another id is FAILED_PRECONDITION (UNIT_ID_MISMATCH) and is not assigned.
absl::StatusOr<std::string> ReadyAndAssign(Started& s, const std::string& instance,
                                           Clock::time_point deadline, const std::string& pinned) {
  HSMSIM_ASSIGN_OR_RETURN(s.unit.endpoint, WaitForEndpoint(s, deadline));
  UnitClientOptions client_options;
  client_options.timeout = std::chrono::milliseconds(2'000);
  client_options.tls = s.tls_config;
  // Over TLS the certificate names the unit id: the pinned one, or the one
  // the certificate was issued for.
  client_options.tls_unit_id = pinned.empty() ? s.unit.unit_id : pinned;
  HSMSIM_ASSIGN_OR_RETURN(auto client,
                          UnitClient::Create(s.unit.name, s.unit.endpoint, client_options));
  absl::StatusOr<v1::GetInfoResponse> info;
  while (true) {
    info = client->GetInfo();
    if (info.ok() || !IsUnreachable(info.status()) || Clock::now() >= deadline) break;
    if ((s.exit_status = ChildExitStatus(s.unit.pid))) return Exited(s, "before answering");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!info.ok()) {
    return WithContext(info.status(),
                       StrCat("waiting for ", s.unit.name, " (log: ", s.log_file, ")"));
  }
  if (!pinned.empty() && info->unit_id() != pinned) {
    return UnitIdMismatch(s.unit.name, pinned, info->unit_id());
  }
  if (info->instance() == instance) return info->unit_id();
  v1::Command op;
  op.mutable_assign_instance()->set_instance(instance);
  auto assigned = IssueCommand(*client, *info, op, {});
  if (!assigned.ok()) {
    return WithContext(assigned.status(),
                       StrCat("assigning ", s.unit.name, " to instance '", instance, "'"));
  }
  return info->unit_id();
}

// PinsOfStoppedFleet reads DIR/fleet.json when there is one: the unit ids
// it pins by unit name, which the units started again on the same state
// directories must still answer with. FAILED_PRECONDITION (FLEET_RUNNING)
// when it lists a unit that is still running. A manifest that cannot be
// read pins nothing (it is replaced).
absl::StatusOr<std::map<std::string, std::string>> PinsOfStoppedFleet(const std::string& dir) {
  std::map<std::string, std::string> pins;
  std::error_code ec;
  if (!fs::exists(FleetManifestPath(dir), ec)) return pins;
  auto old = LoadFleetManifest(dir);
  if (!old.ok()) return pins;
  for (const FleetUnit& u : old->units) {
    if (!u.stopped && IsUnitProcess(u.pid, u.state_dir)) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kFleetRunning,
                   StrCat("fleet ", dir, " is running (", u.name, " is pid ", u.pid,
                          "); run `hsmctl fleet down` first"));
    }
    if (!u.unit_id.empty()) pins[u.name] = u.unit_id;
  }
  return pins;
}

// KeepFromStoppedFleet carries into `manifest` (a fleet brought up again
// over DIR) what the old DIR/fleet.json held besides its launched units:
// the keystore location (a PostgreSQL URL, or one set by keys
// set-keystore: dropping it would leave the fleet's keys behind), its TLS
// files when this launch made none, and the units added with fleet add
// (no state directory) whose names are still free.
void KeepFromStoppedFleet(const std::string& dir, FleetManifest& manifest) {
  std::error_code ec;
  if (!fs::exists(FleetManifestPath(dir), ec)) return;
  auto old = LoadFleetManifest(dir);
  if (!old.ok()) return;
  if (!old->keystore.empty()) manifest.keystore = old->keystore;
  if (manifest.tls.empty()) manifest.tls = old->tls;
  for (const FleetUnit& u : old->units) {
    if (u.state_dir.empty() && manifest.FindUnit(u.name) == nullptr) manifest.units.push_back(u);
  }
}

}  // namespace

absl::StatusOr<std::string> LocateUnitBinary(const std::string& flag) {
  if (!flag.empty()) {
    if (!IsExecutable(flag)) {
      return Error(absl::StatusCode::kNotFound, reason::kNoUnitBinary,
                   StrCat("--unit-binary ", flag, " is not an executable file"));
    }
    return flag;
  }
  if (const char* env = std::getenv(kUnitBinaryEnv); env != nullptr && *env != '\0') {
    if (!IsExecutable(env)) {
      return Error(absl::StatusCode::kNotFound, reason::kNoUnitBinary,
                   StrCat(kUnitBinaryEnv, "=", env, " is not an executable file"));
    }
    return std::string(env);
  }
  std::vector<std::string> looked;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path candidate =
        (self.parent_path() / ".." / "emulator" / "hsmsim-unit").lexically_normal();
    if (IsExecutable(candidate)) return candidate.string();
    looked.push_back(candidate.string());
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest(path);
    while (!rest.empty()) {
      size_t colon = rest.find(':');
      std::string_view dir = rest.substr(0, colon);
      if (!dir.empty()) {
        fs::path candidate = fs::path(std::string(dir)) / "hsmsim-unit";
        if (IsExecutable(candidate)) return candidate.string();
      }
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
    looked.push_back("PATH");
  }
  std::string where;
  for (const std::string& l : looked) where += (where.empty() ? "" : ", ") + l;
  return Error(absl::StatusCode::kNotFound, reason::kNoUnitBinary,
               StrCat("cannot find hsmsim-unit (looked in --unit-binary, ", kUnitBinaryEnv, ", ",
                      where, ")"));
}

bool ProcessAlive(int pid) {
  if (pid <= 0) return false;
  ReapIfChild(pid);
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  auto stat = ReadFileBytes(StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return false;
  // The state follows the parenthesised command name: "pid (comm) S ...".
  size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return true;
  char state = (*stat)[paren + 2];
  return state != 'Z' && state != 'X';
}

bool IsUnitProcess(int pid, const std::string& state_dir) {
  if (!ProcessAlive(pid)) return false;
  auto cmdline = ReadFileBytes(StrCat("/proc/", pid, "/cmdline"));
  if (!cmdline.ok()) return false;
  // Arguments are NUL-separated; the state dir is one of them.
  std::string_view rest(*cmdline);
  while (!rest.empty()) {
    size_t nul = rest.find('\0');
    if (rest.substr(0, nul) == state_dir) return true;
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  return false;
}

bool StopProcess(int pid, std::chrono::milliseconds grace) {
  if (!ProcessAlive(pid)) return true;
  ::kill(pid, SIGTERM);
  auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline) {
    if (!ProcessAlive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  auto kill_deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < kill_deadline && ProcessAlive(pid)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

absl::StatusOr<FleetManifest> LaunchFleet(const FleetLaunchOptions& options) {
  if (options.units < 1 || options.units > 64) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadUnitCount,
                 StrCat("--units must be 1..64, got ", options.units));
  }
  HSMSIM_RETURN_IF_ERROR(CreatePrivateDirectory(options.fleet_dir));
  std::error_code ec;
  const std::string dir = fs::absolute(options.fleet_dir).lexically_normal().string();
  HSMSIM_ASSIGN_OR_RETURN(const auto pins, PinsOfStoppedFleet(dir));
  HSMSIM_ASSIGN_OR_RETURN(std::string binary, LocateUnitBinary(options.unit_binary));
  FleetTlsFiles tls_files;
  std::shared_ptr<const TlsClientConfig> tls_config;
  if (options.tls) {
    HSMSIM_ASSIGN_OR_RETURN(tls_files, EnsureFleetTls(dir));
    HSMSIM_ASSIGN_OR_RETURN(tls_config, LoadFleetTls(dir, tls_files));
  }

  std::vector<Started> started;
  auto stop_all = [&] {
    for (const Started& s : started) {
      if (s.unit.pid > 0) StopProcess(s.unit.pid, std::chrono::seconds(5));
    }
  };
  for (int i = 1; i <= options.units; ++i) {
    Started s;
    s.unit.name = StrCat("unit", i);
    s.unit.state_dir = (fs::path(dir) / s.unit.name).string();
    if (absl::Status made = CreatePrivateDirectory(s.unit.state_dir); !made.ok()) {
      stop_all();
      return made;
    }
    s.port_file = (fs::path(s.unit.state_dir) / "port").string();
    s.log_file = (fs::path(s.unit.state_dir) / "unit.log").string();
    s.allow_fault_injection = options.allow_fault_injection;
    if (options.tls) {
      if (absl::Status prepared = PrepareUnitTls(binary, dir, tls_files, tls_config, s);
          !prepared.ok()) {
        stop_all();
        return prepared;
      }
    }
    fs::remove(s.port_file, ec);
    auto pid = Spawn(binary, s);
    if (!pid.ok()) {
      stop_all();
      return pid.status();
    }
    s.unit.pid = *pid;
    started.push_back(std::move(s));
  }
  const auto deadline = Clock::now() + options.ready_timeout;
  for (Started& s : started) {
    const auto pin = pins.find(s.unit.name);
    absl::StatusOr<std::string> ready =
        ReadyAndAssign(s, options.instance, deadline, pin == pins.end() ? "" : pin->second);
    if (!ready.ok()) {
      stop_all();
      return ready.status();
    }
    s.unit.unit_id = *std::move(ready);
    if (options.progress) {
      options.progress(StrCat(s.unit.name, ": pid ", s.unit.pid, ", listening on ", s.unit.endpoint,
                              ", instance ", options.instance));
    }
  }
  FleetManifest manifest;
  manifest.instance = options.instance;
  manifest.keystore = (fs::path(dir) / "keystore.db").string();
  manifest.tls = tls_files;
  for (Started& s : started) manifest.units.push_back(s.unit);
  KeepFromStoppedFleet(dir, manifest);
  absl::Status saved = SaveFleetManifest(dir, manifest);
  if (!saved.ok()) {
    stop_all();
    return saved;
  }
  return manifest;
}

absl::StatusOr<FleetUnit> RestartUnit(const FleetLaunchOptions& options, const std::string& name) {
  const std::string dir = fs::absolute(options.fleet_dir).lexically_normal().string();
  HSMSIM_ASSIGN_OR_RETURN(FleetManifest manifest, LoadFleetManifest(dir));
  FleetUnit* unit = manifest.FindUnit(name);
  if (unit == nullptr) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                 StrCat("fleet ", dir, " has no unit named '", name, "'"));
  }
  if (IsUnitProcess(unit->pid, unit->state_dir)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kUnitRunning,
                 StrCat(name, " is running (pid ", unit->pid, ")"));
  }
  HSMSIM_ASSIGN_OR_RETURN(std::string binary, LocateUnitBinary(options.unit_binary));
  std::error_code exists_ec;
  if (!fs::exists(unit->state_dir, exists_ec)) {
    // The whole state directory is gone (a lost disk): only a replacement
    // on purpose starts there, as a new unit in a new directory.
    if (!options.new_unit) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kUnitStateMissing,
                   StrCat("the state directory ", unit->state_dir, " of ", name,
                          " is gone; restore it, or replace the unit on purpose: hsmctl fleet "
                          "restart ",
                          name, " --new-unit"));
    }
    HSMSIM_RETURN_IF_ERROR(CreatePrivateDirectory(unit->state_dir));
  }
  Started s;
  s.unit = *unit;
  s.port_file = (fs::path(unit->state_dir) / "port").string();
  s.log_file = (fs::path(unit->state_dir) / "unit.log").string();
  // The same port, so the manifest and every host keep working.
  s.listen = unit->endpoint;
  s.allow_fault_injection = options.allow_fault_injection;
  s.new_unit = options.new_unit;
  // A replaced unit may answer with any id; otherwise it must be the pinned
  // one (a manifest without an id pins the first it sees).
  const std::string pinned = options.new_unit ? std::string() : unit->unit_id;
  if (unit->tls) {
    HSMSIM_ASSIGN_OR_RETURN(auto tls_config, LoadFleetTls(dir, manifest.tls));
    HSMSIM_RETURN_IF_ERROR(PrepareUnitTls(binary, dir, manifest.tls, tls_config, s));
  }
  std::error_code ec;
  fs::remove(s.port_file, ec);
  // The port may still be held briefly by the dying process: only a unit
  // that could not listen is started again; any other exit is its answer.
  absl::StatusOr<std::string> ready;
  const auto deadline = Clock::now() + options.ready_timeout;
  for (int attempt = 0; attempt < 20; ++attempt) {
    HSMSIM_ASSIGN_OR_RETURN(s.unit.pid, Spawn(binary, s));
    ready = ReadyAndAssign(s, manifest.instance, deadline, pinned);
    if (ready.ok() || !CouldNotListen(s) || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (!ready.ok()) {
    if (s.unit.pid > 0) StopProcess(s.unit.pid, std::chrono::seconds(5));
    if (ReasonOf(ready.status()) == reason::kUnitIdMismatch) {
      return WithContext(ready.status(), StrCat("the process started for ", name,
                                                " was stopped and not assigned to the instance"));
    }
    return ready.status();
  }
  unit->pid = s.unit.pid;
  unit->endpoint = s.unit.endpoint;
  unit->unit_id = *std::move(ready);
  unit->stopped = false;
  HSMSIM_RETURN_IF_ERROR(SaveFleetManifest(dir, manifest));
  return *unit;
}

}  // namespace hsmsim::host

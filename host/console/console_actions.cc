#include "host/console/console_actions.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>
#include <utility>

#include "common/status.h"
#include "common/str_cat.h"

extern char** environ;

namespace hsmsim::console {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxSigners = 8;
constexpr size_t kMaxParts = 20;
constexpr size_t kMaxPathBytes = 4096;
constexpr size_t kMaxSecretBytes = 1024;
constexpr size_t kMaxStdoutBytes = 1 << 20;
constexpr size_t kStderrTailBytes = 8 * 1024;
// The children's fds are moved this high before the spawn, so that putting
// the secrets at 3, 4, ... never overwrites one still to be placed.
constexpr int kHighFd = 200;

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

bool IsCardUri(std::string_view spec) { return spec.rfind("pkcs11:", 0) == 0; }

// HoldsForbiddenUriAttribute tells whether a pkcs11: URI (RFC 7512) names a
// PIN or a module, whatever the case and however its '-' is written.
bool HoldsForbiddenUriAttribute(std::string_view uri) {
  std::string lowered;
  for (size_t i = 0; i < uri.size(); ++i) {
    if (uri[i] == '%' && i + 2 < uri.size() && uri[i + 1] == '2' &&
        (uri[i + 2] == 'd' || uri[i + 2] == 'D')) {
      lowered += '-';
      i += 2;
      continue;
    }
    lowered += static_cast<char>(std::tolower(static_cast<unsigned char>(uri[i])));
  }
  for (std::string_view name : {"pin-value", "pin-source", "module-path", "module-name"}) {
    if (lowered.find(name) != std::string::npos) return true;
  }
  return false;
}

// TakeFiles reads body[member] (an array of {"file", "password"}) into
// `specs`, moving each non-empty password into `command` (as the next fd)
// and adding its --password-file (a key file) or pin-source (a card URI).
absl::Status TakeFiles(json& body, const char* member, size_t max, ActionCommand& command,
                       std::vector<std::string>& specs) {
  if (!body.contains(member)) return absl::OkStatus();
  json& list = body[member];
  if (!list.is_array() || list.size() > max) {
    return Bad(StrCat("\"", member, "\" must be an array of at most ", max,
                      " {\"file\": PATH, \"password\": TEXT}"));
  }
  for (json& entry : list) {
    if (!entry.is_object() || !entry.contains("file") || !entry["file"].is_string() ||
        (entry.contains("password") && !entry["password"].is_string())) {
      return Bad(StrCat("each of \"", member, "\" must be {\"file\": PATH, \"password\": TEXT}"));
    }
    std::string file = entry["file"].get<std::string>();
    const bool card = IsCardUri(file);
    // A URI from the page names a token and a key, nothing more: its PIN is
    // typed into the PIN field (a PIN in the URI would reach argv, the log
    // and the page), and the module is the console's own (a module path
    // would let whoever holds the token load any library into hsmctl).
    // The URI is not quoted back: it may hold a PIN.
    if (card && HoldsForbiddenUriAttribute(file)) {
      if (entry.contains("password")) WipeString(entry["password"].get_ptr<std::string*>());
      return Bad(StrCat("\"", member,
                        "\": a pkcs11: URI sent to the console may not name pin-value, "
                        "pin-source, module-path or module-name; type the PIN into the page"));
    }
    if (file.empty() || file.size() > kMaxPathBytes || file[0] == '-' ||
        file.find_first_of(std::string_view(",\n\r\0", 4)) != std::string::npos ||
        (!card && file.find('=') != std::string::npos)) {
      return Bad(StrCat("\"", member, "\": '", file.substr(0, 200),
                        "' is not a usable key file path or pkcs11: URI (empty, starting with "
                        "'-', or holding ',', '=' or a line break)"));
    }
    if (entry.contains("password")) {
      std::string* password = entry["password"].get_ptr<std::string*>();
      if (password->size() > kMaxSecretBytes ||
          password->find_first_of("\r\n") != std::string::npos) {
        WipeString(password);
        return Bad(StrCat("the password or PIN for ", file,
                          " holds a line break or is longer than 1024 bytes"));
      }
      if (!password->empty()) {
        const std::string fd_path = StrCat("/dev/fd/", 3 + command.secrets.size());
        command.secrets.push_back(MakeSecret(*password));
        if (card) {
          file += StrCat(file.find('?') == std::string::npos ? "?" : "&", "pin-source=", fd_path);
        } else {
          command.args.push_back("--password-file");
          command.args.push_back(StrCat(file, "=", fd_path));
        }
      }
      WipeString(password);
    }
    specs.push_back(std::move(file));
  }
  return absl::OkStatus();
}

std::string JoinComma(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

// WithoutPinSources returns `arg` without the "?pin-source=/dev/fd/N" and
// "&pin-source=/dev/fd/N" TakeFiles added to card URIs (a URI from the
// page holds no pin-source of its own: it is refused).
std::string WithoutPinSources(std::string arg) {
  static constexpr std::string_view kAdded = "pin-source=/dev/fd/";
  for (size_t at = arg.find(kAdded); at != std::string::npos; at = arg.find(kAdded, at)) {
    if (at == 0 || (arg[at - 1] != '?' && arg[at - 1] != '&')) {
      ++at;
      continue;
    }
    size_t end = at + kAdded.size();
    while (end < arg.size() && std::isdigit(static_cast<unsigned char>(arg[end]))) ++end;
    arg.erase(at - 1, end - (at - 1));
    at -= 1;
  }
  return arg;
}

// Display is the command line without the --password-file pairs and the
// URIs' pin-source.
std::string Display(const std::vector<std::string>& args) {
  std::string out = "hsmctl";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--password-file") {
      ++i;
      continue;
    }
    out += " " + WithoutPinSources(args[i]);
  }
  return out;
}

// Argument returns body[member] as one word of the command line: a string
// of 1 to 255 bytes that does not start with '-' (an option to hsmctl) and
// holds no space or control character. What it means is for hsmctl to
// judge, as on its own command line.
absl::StatusOr<std::string> Argument(const json& body, const char* member,
                                     std::string_view example) {
  const json value = body.value(member, json());
  bool ok = value.is_string() && !value.get<std::string>().empty() &&
            value.get<std::string>().size() <= 255 && value.get<std::string>()[0] != '-';
  if (ok) {
    for (const char c : value.get<std::string>()) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) ok = false;
    }
  }
  if (!ok) {
    return Bad(StrCat("\"", member,
                      "\" must be text of 1 to 255 characters without spaces, not "
                      "starting with '-', e.g. ",
                      example));
  }
  return value.get<std::string>();
}

// FleetAddWords is `fleet add NAME HOST:PORT [--tls]` from the body's
// "name", "endpoint" and "tls" (a boolean, optional).
absl::StatusOr<std::vector<std::string>> FleetAddWords(const json& body) {
  HSMSIM_ASSIGN_OR_RETURN(std::string name, Argument(body, "name", "remote1"));
  HSMSIM_ASSIGN_OR_RETURN(std::string endpoint, Argument(body, "endpoint", "10.0.0.7:7000"));
  const json tls = body.value("tls", json(false));
  if (!tls.is_boolean()) return Bad("\"tls\" must be true or false");
  std::vector<std::string> words{"fleet", "add", std::move(name), std::move(endpoint)};
  if (tls.get<bool>()) words.push_back("--tls");
  return words;
}

absl::StatusOr<std::vector<std::string>> CommandWords(std::string_view action, const json& body) {
  if (action == "fleet-add") return FleetAddWords(body);
  if (action == "mk-load") return std::vector<std::string>{"mk", "load"};
  if (action == "mk-commit") return std::vector<std::string>{"mk", "commit"};
  if (action == "mk-rotate") return std::vector<std::string>{"mk", "rotate"};
  if (action == "mk-abort") return std::vector<std::string>{"mk", "rotate", "--abort"};
  if (action == "mk-setimm") return std::vector<std::string>{"mk", "setimm"};
  if (action == "recover-apply") return std::vector<std::string>{"recover", "--apply"};
  if (action == "mk-clear") {
    const json reg = body.value("register", json());
    if (reg == "new") return std::vector<std::string>{"mk", "clrnew"};
    if (reg == "current") return std::vector<std::string>{"mk", "clrcur"};
    if (reg == "old") return std::vector<std::string>{"mk", "clrold"};
    return Bad("mk-clear needs \"register\": \"new\", \"current\" or \"old\"");
  }
  return absl::NotFoundError(StrCat("no such action '", action, "'"));
}

// CheckMembers refuses a body member the action does not take.
absl::Status CheckMembers(std::string_view action, const json& body) {
  for (const auto& [key, value] : body.items()) {
    // mk rotate --abort and fleet add need no signature: no password is
    // taken for them.
    const bool ok =
        (key == "signers" && action != "mk-abort" && action != "fleet-add") ||
        ((key == "name" || key == "endpoint" || key == "tls") && action == "fleet-add") ||
        (key == "parts" &&
         (action == "mk-load" || action == "mk-commit" || action == "recover-apply")) ||
        (key == "total" && action == "mk-load") || (key == "vp" && action == "mk-commit") ||
        (key == "register" && action == "mk-clear");
    if (!ok) return Bad(StrCat("the action ", action, " takes no \"", key, "\""));
  }
  return absl::OkStatus();
}

// WipePasswords wipes every password left in `body` (on an early error).
void WipePasswords(json& body) {
  for (const char* member : {"signers", "parts"}) {
    if (!body.contains(member) || !body[member].is_array()) continue;
    for (json& entry : body[member]) {
      if (entry.is_object() && entry.contains("password") && entry["password"].is_string()) {
        WipeString(entry["password"].get_ptr<std::string*>());
      }
    }
  }
}

absl::StatusOr<ActionCommand> Build(std::string_view action, json& body) {
  if (!body.is_object()) return Bad("the body must be a JSON object");
  HSMSIM_ASSIGN_OR_RETURN(std::vector<std::string> words, CommandWords(action, body));
  HSMSIM_RETURN_IF_ERROR(CheckMembers(action, body));
  ActionCommand command;
  command.name = words[0] + " " + words[1] + (action == "mk-abort" ? " --abort" : "");
  command.args = words;
  std::vector<std::string> signers, parts;
  HSMSIM_RETURN_IF_ERROR(TakeFiles(body, "signers", kMaxSigners, command, signers));
  HSMSIM_RETURN_IF_ERROR(TakeFiles(body, "parts", kMaxParts, command, parts));
  if (action == "mk-load" && parts.empty()) return Bad("mk-load needs \"parts\" (1 to 20)");
  if (action == "mk-commit") {
    const bool has_vp = body.contains("vp");
    if (has_vp == !parts.empty()) {
      return Bad(
          "mk-commit needs the VP the custodians quote: \"vp\" (64 hex digits) or every "
          "key part in \"parts\", one of them");
    }
    if (has_vp) {
      const json& vp = body["vp"];
      if (!vp.is_string() || vp.get<std::string>().size() != 64 ||
          vp.get<std::string>().find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
        return Bad("\"vp\" must be 64 hex digits");
      }
      command.args.push_back("--vp");
      command.args.push_back(vp.get<std::string>());
    }
  }
  if (body.contains("total")) {
    const json& total = body["total"];
    if (!total.is_number_integer() || total.get<int64_t>() < 2 || total.get<int64_t>() > 20) {
      return Bad("\"total\" must be a number from 2 to 20");
    }
    command.args.push_back("--total");
    command.args.push_back(std::to_string(total.get<int64_t>()));
  }
  if (!parts.empty()) {
    command.args.push_back("--parts");
    command.args.push_back(JoinComma(parts));
  }
  if (!signers.empty()) {
    command.args.push_back("--sign");
    command.args.push_back(JoinComma(signers));
  }
  command.display = Display(command.args);
  return command;
}

std::string NowUtc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// MoveHigh returns a close-on-exec copy of `fd` at kHighFd or above and
// closes `fd`.
int MoveHigh(int fd) {
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, kHighFd);
  close(fd);
  return high;
}

// SecretFile returns a close-on-exec memory file holding `secret`.
absl::StatusOr<int> SecretFile(const SecretBytes& secret) {
  const int fd = memfd_create("hsmctl-console-secret", MFD_CLOEXEC);
  if (fd < 0) return absl::InternalError(StrCat("memfd_create: ", std::strerror(errno)));
  if (!secret.empty() &&
      pwrite(fd, secret.data(), secret.size(), 0) != static_cast<ssize_t>(secret.size())) {
    close(fd);
    return absl::InternalError("cannot write a password for the child hsmctl");
  }
  const int high = MoveHigh(fd);
  if (high < 0) return absl::InternalError(StrCat("fcntl: ", std::strerror(errno)));
  return high;
}

// WipeSecretFile overwrites a memory file made by SecretFile with zeros and
// closes it.
void WipeSecretFile(int fd) {
  struct stat st {};
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    const std::string zeros(static_cast<size_t>(st.st_size), '\0');
    (void)!pwrite(fd, zeros.data(), zeros.size(), 0);
  }
  close(fd);
}

std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).rfind("HSMSIM_PASSWORD=", 0) == 0) continue;
    env.emplace_back(*e);
  }
  return env;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// RedactForPage removes from a command's document what hsmctl status does
// not show: the VP of each key part (mk load, recover --apply's reload),
// which the custodian reads with hsmctl keypart show.
void RedactForPage(json& doc) {
  if (doc.is_object()) {
    for (auto& [key, value] : doc.items()) {
      if (key == "parts" && value.is_array()) {
        for (json& part : value) {
          if (part.is_object() && part.contains("verification_pattern")) {
            part["verification_pattern"] = "(not shown: hsmctl keypart show)";
          }
        }
      } else {
        RedactForPage(value);
      }
    }
  } else if (doc.is_array()) {
    for (json& item : doc) RedactForPage(item);
  }
}

}  // namespace

std::string OutcomeOfExit(int exit_code) {
  switch (exit_code) {
    case 0:
      return "ok";
    case 1:
      return "refused";
    case 2:
      return "usage";
    case 3:
      return "unit did not answer";
    case 4:
      return "bad input";
    default:
      return "failed";
  }
}

absl::StatusOr<ActionCommand> BuildActionCommand(std::string_view action, json& body) {
  auto command = Build(action, body);
  WipePasswords(body);
  return command;
}

ActionRunner::ActionRunner(std::string program, std::vector<std::string> base_args,
                           std::function<void()> on_change)
    : program_(std::move(program)),
      base_args_(std::move(base_args)),
      on_change_(std::move(on_change)) {
  state_ = json{{"running", false}, {"id", 0}};
}

ActionRunner::~ActionRunner() { Shutdown(); }

void ActionRunner::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (child_ > 0) kill(child_, SIGTERM);
  }
  if (waiter_.joinable()) waiter_.join();
}

json ActionRunner::State() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

absl::StatusOr<int64_t> ActionRunner::Start(ActionCommand command) {
  std::unique_lock<std::mutex> lock(mu_);
  if (child_ > 0) {
    return absl::FailedPreconditionError(
        StrCat("another action is running: ", state_["command"].get<std::string>(), " (since ",
               state_["started_at"].get<std::string>(),
               "); one action runs at a time: wait for it to finish"));
  }
  if (waiter_.joinable()) waiter_.join();  // the last one is done

  std::vector<int> secret_fds;
  auto close_all = [&secret_fds] {
    for (int fd : secret_fds) WipeSecretFile(fd);
  };
  for (const SecretBytes& secret : command.secrets) {
    auto fd = SecretFile(secret);
    if (!fd.ok()) {
      close_all();
      return fd.status();
    }
    secret_fds.push_back(*fd);
  }
  command.secrets.clear();  // wiped by their allocator
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    close_all();
    return absl::InternalError(StrCat("pipe: ", std::strerror(errno)));
  }
  for (int* fd : {&out_pipe[1], &err_pipe[1]}) *fd = MoveHigh(*fd);

  std::vector<std::string> argv{program_};
  argv.insert(argv.end(), command.args.begin(), command.args.end());
  argv.insert(argv.end(), base_args_.begin(), base_args_.end());
  std::vector<std::string> env = ChildEnvironment();
  std::vector<char*> argv_ptrs = Pointers(argv), env_ptrs = Pointers(env);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  for (size_t i = 0; i < secret_fds.size(); ++i) {
    posix_spawn_file_actions_adddup2(&actions, secret_fds[i], static_cast<int>(3 + i));
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, static_cast<int>(3 + secret_fds.size()));
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, program_.c_str(), &actions, nullptr, argv_ptrs.data(), env_ptrs.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    close_all();
    return absl::InternalError(StrCat("cannot start ", program_, ": ", std::strerror(rc)));
  }
  const int64_t id = state_["id"].get<int64_t>() + 1;
  state_ = json{{"running", true},
                {"id", id},
                {"action", command.name},
                {"command", command.display},
                {"started_at", NowUtc()}};
  child_ = pid;
  std::cerr << "hsmctl console: action " << id << " started: " << command.display << std::endl;
  waiter_ =
      std::thread(&ActionRunner::Wait, this, pid, out_pipe[0], err_pipe[0], std::move(secret_fds));
  lock.unlock();
  if (on_change_) on_change_();
  return id;
}

void ActionRunner::Wait(pid_t pid, int out_fd, int err_fd, std::vector<int> secret_fds) {
  std::string out, err;
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_fds = 2;
  char buf[16 * 1024];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (pollfd& p : fds) {
      if (p.fd < 0 || p.revents == 0) continue;
      const ssize_t n = read(p.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(p.fd);
        p.fd = -1;
        --open_fds;
        continue;
      }
      std::string& sink = p.fd == out_fd ? out : err;
      if (p.fd == out_fd && out.size() >= kMaxStdoutBytes) continue;
      sink.append(buf, static_cast<size_t>(n));
      if (p.fd == err_fd && err.size() > 4 * kStderrTailBytes) {
        err.erase(0, err.size() - kStderrTailBytes);
      }
    }
  }
  // Wait for the child's end without reaping it: its pid stays taken (a
  // zombie) until child_ is cleared under mu_ below, so Shutdown can never
  // signal another process that got the pid meanwhile.
  siginfo_t ended{};
  while (waitid(P_PID, static_cast<id_t>(pid), &ended, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  for (int fd : secret_fds) WipeSecretFile(fd);
  const int exit_code = ended.si_code == CLD_EXITED ? ended.si_status : 128 + ended.si_status;
  if (err.size() > kStderrTailBytes) err.erase(0, err.size() - kStderrTailBytes);
  json result = json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (result.is_discarded()) result = nullptr;
  RedactForPage(result);
  {
    std::lock_guard<std::mutex> lock(mu_);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    child_ = -1;
    state_["running"] = false;
    state_["finished_at"] = NowUtc();
    state_["exit_code"] = exit_code;
    state_["outcome"] = OutcomeOfExit(exit_code);
    state_["result"] = std::move(result);
    state_["stderr"] = err;
    std::cerr << "hsmctl console: action " << state_["id"].get<int64_t>()
              << " finished: " << state_["outcome"].get<std::string>() << " (exit " << exit_code
              << ")" << std::endl;
  }
  if (on_change_) on_change_();
}

}  // namespace hsmsim::console

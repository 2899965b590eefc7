// The signed actions of hsmctl console (Load, Commit, Rotate, Set immediate,
// Clear, recover --apply; docs/console.md "Actions"): each is the hsmctl
// command that does it, run as a child hsmctl process, so the console has
// no second implementation of any ceremony or rotation step, and a long
// action (a rotation) never runs on the console's server thread.
//
// Passwords and PINs typed into the page reach the child only through
// anonymous memory files (memfd) inherited as file descriptors 3, 4, ...
// and named on its command line as /dev/fd/N (--password-file FILE=/dev/fd/N,
// a card URI's pin-source=/dev/fd/N): never on a command line, in the
// environment, on disk or in a log; the console's copies are SecretBytes,
// and the memory files are overwritten with zeros when the child is done.
#ifndef HSMSIM_HOST_CONSOLE_CONSOLE_ACTIONS_H_
#define HSMSIM_HOST_CONSOLE_CONSOLE_ACTIONS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"

namespace hsmsim::console {

// ActionCommand is one hsmctl command line to run: `args` after the
// program name (without the fleet options, which ActionRunner adds), and
// the secrets the child reads from file descriptor 3 + i (`secrets[i]`).
// `name` is the command ("mk rotate", "mk rotate --abort"), `display` the command line shown in
// the page and the log (`args` without the --password-file pairs).
struct ActionCommand {
  std::string name;
  std::vector<std::string> args;
  std::string display;
  std::vector<SecretBytes> secrets;
};

// kConsoleActionNames are the actions POST /api/actions/NAME takes.
inline constexpr const char* kConsoleActionNames[] = {"mk-load",       "mk-commit", "mk-rotate",
                                                      "mk-abort",      "mk-setimm", "mk-clear",
                                                      "recover-apply", "fleet-add"};

// BuildActionCommand turns the page's request for `action` (one of
// kConsoleActionNames) into its hsmctl command. `body` is the request's
// JSON object:
//   "signers": [{"file": PATH or pkcs11: URI, "password": TEXT}, ...]
//       (0 to 8; the password of a key file, or the PIN of a card, which
//       becomes the URI's pin-source; empty: none given, and the command
//       says NO_PASSWORD);
//   "parts": [{"file", "password"}, ...] key part files or card URIs
//       (mk-load: 1 to 20; mk-commit: 1 to 20, or none with "vp" (the
//       command checks that the parts make the key);
//       recover-apply: optional);
//   "total": N (mk-load, optional: a load in parts, 2..20);
//   "vp": 64 hex digits (mk-commit: the VP the custodians quote);
//   "register": "new" | "current" | "old" (mk-clear).
// mk-abort (`mk rotate --abort`, which needs no signature) takes no member.
// fleet-add (`fleet add NAME ENDPOINT [--tls]`, no signature) takes only
//   "name" and "endpoint" (each 1 to 255 characters, no space or control
//   character, not starting with '-') and "tls" (a boolean, optional);
//   the command checks the rest (UNIT_NAME_TAKEN, UNIT_UNREACHABLE,
//   BAD_TLS_FILES, UNIT_ID_MISMATCH, ... as on its command line).
// The passwords are moved out of `body` into the command's secrets and
// wiped in `body`. Errors: INVALID_ARGUMENT with a message naming what is
// wrong (an unknown action or member, a path that is empty, starts with
// '-' or holds ',', '=' (key files), a line break or NUL, a password with a
// line break, too many files, a bad VP or register).
absl::StatusOr<ActionCommand> BuildActionCommand(std::string_view action, nlohmann::json& body);

// ActionRunner runs one ActionCommand at a time as a child process of
// `program` (hsmctl) with `base_args` (--json, --fleet DIR, ...) appended,
// stdin /dev/null, its stdout and stderr read on a thread of the runner's,
// and the environment without HSMSIM_PASSWORD (only what the page typed is
// used). Thread-safe.
class ActionRunner {
 public:
  // `on_change` (may be null) is called on the runner's thread when an
  // action starts and when it ends.
  ActionRunner(std::string program, std::vector<std::string> base_args,
               std::function<void()> on_change);
  // Stops a running action (SIGTERM: a rotation stops at its next
  // checkpoint, as on Ctrl-C) and waits for it.
  ~ActionRunner();
  ActionRunner(const ActionRunner&) = delete;
  ActionRunner& operator=(const ActionRunner&) = delete;

  // Shutdown stops a running action (SIGTERM) and waits for it; Start
  // may still be called after (tests), the destructor calls it.
  void Shutdown();

  // Start runs `command` in the background and returns the action's id.
  // FAILED_PRECONDITION (message naming the running action) when one is
  // running; INTERNAL when the child cannot be started.
  absl::StatusOr<int64_t> Start(ActionCommand command);

  // State is the page's view of the actions: {"running": bool, "id" (0:
  // none yet), "action", "command", "started_at", and once done
  // "finished_at", "exit_code", "outcome" ("ok", "refused" (exit 1),
  // "unit did not answer" (3), "bad input" (4), "usage" (2) or "failed"),
  // "result" (the command's --json document, null when it printed none;
  // each key part's VP replaced: hsmctl status does not show them),
  // "stderr" (its last 8 KiB)}.
  nlohmann::json State() const;

 private:
  void Wait(pid_t pid, int out_fd, int err_fd, std::vector<int> secret_fds);

  const std::string program_;
  const std::vector<std::string> base_args_;
  const std::function<void()> on_change_;
  mutable std::mutex mu_;
  nlohmann::json state_;  // guarded by mu_
  pid_t child_ = -1;      // guarded by mu_; -1 when none runs
  std::thread waiter_;
};

// OutcomeOfExit names an hsmctl exit code as the page shows it.
std::string OutcomeOfExit(int exit_code);

}  // namespace hsmsim::console

#endif  // HSMSIM_HOST_CONSOLE_CONSOLE_ACTIONS_H_

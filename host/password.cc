#include "host/password.h"

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"

namespace hsmsim::host {
namespace {

absl::Status NoPassword(std::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kNoPassword,
               StrCat(why, "; give --password-file FILE or set ", kPasswordEnv));
}

// FirstLine returns `text` up to its first line break, as a secret.
SecretBytes FirstLine(std::string_view text) {
  size_t end = text.find_first_of("\r\n");
  if (end != std::string_view::npos) text = text.substr(0, end);
  return MakeSecret(text);
}

absl::StatusOr<SecretBytes> ReadFromTerminal(std::string_view prompt) {
  std::fprintf(stderr, "%.*s", static_cast<int>(prompt.size()), prompt.data());
  std::fflush(stderr);
  termios old_attrs{};
  if (tcgetattr(STDIN_FILENO, &old_attrs) != 0) return NoPassword("cannot read the terminal");
  termios quiet = old_attrs;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  SecretBytes line;
  line.reserve(256);
  int c;
  while ((c = std::fgetc(stdin)) != EOF && c != '\n') {
    line.push_back(static_cast<uint8_t>(c));
  }
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &old_attrs);
  std::fputc('\n', stderr);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace

absl::StatusOr<SecretBytes> PromptSecret(std::string_view prompt) {
  if (!isatty(STDIN_FILENO)) return NoPassword("stdin is not a terminal");
  return ReadFromTerminal(prompt);
}

absl::StatusOr<SecretBytes> ResolvePassword(const std::string& password_file,
                                            std::string_view prompt, bool confirm) {
  SecretBytes password;
  if (!password_file.empty()) {
    HSMSIM_ASSIGN_OR_RETURN(std::string text, ReadFileBytes(password_file));
    password = FirstLine(text);
    WipeString(&text);
    if (password.empty())
      return NoPassword(StrCat("the password file ", password_file, " is empty"));
    return password;
  }
  if (const char* env = std::getenv(kPasswordEnv); env != nullptr) {
    password = MakeSecret(std::string_view(env));
    if (password.empty()) return NoPassword(StrCat(kPasswordEnv, " is empty"));
    return password;
  }
  if (!isatty(STDIN_FILENO)) return NoPassword("no password given and stdin is not a terminal");
  HSMSIM_ASSIGN_OR_RETURN(password, ReadFromTerminal(prompt));
  if (password.empty()) return NoPassword("the password is empty");
  if (confirm) {
    HSMSIM_ASSIGN_OR_RETURN(SecretBytes again, ReadFromTerminal("Repeat the password: "));
    if (!ConstantTimeEquals(password, again)) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kPasswordMismatch,
                   "the two passwords differ");
    }
  }
  return password;
}

}  // namespace hsmsim::host

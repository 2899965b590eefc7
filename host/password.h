// Where hsmctl's password comes from: a file, the environment, or a prompt.
#ifndef HSMSIM_HOST_PASSWORD_H_
#define HSMSIM_HOST_PASSWORD_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"

namespace hsmsim::host {

inline constexpr char kPasswordEnv[] = "HSMSIM_PASSWORD";

// ResolvePassword returns the password from `password_file` when not empty
// (its first line, without the line break), else from env HSMSIM_PASSWORD
// when set, else read from the terminal with echo off after printing
// `prompt` to stderr (only when stdin is a tty). Returns INVALID_ARGUMENT
// (NO_PASSWORD) when none of them gives one, or an empty one, and NOT_FOUND
// (FILE_UNREADABLE) when the file cannot be read. `confirm` asks twice on a
// terminal (for new files) and fails (PASSWORD_MISMATCH) if they differ.
absl::StatusOr<SecretBytes> ResolvePassword(const std::string& password_file,
                                            std::string_view prompt, bool confirm = false);

// PromptSecret prints `prompt` to stderr and reads one line from the
// terminal with echo off (a PIN, or a password for one named file). Returns
// INVALID_ARGUMENT (NO_PASSWORD) when stdin is not a terminal.
absl::StatusOr<SecretBytes> PromptSecret(std::string_view prompt);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_PASSWORD_H_

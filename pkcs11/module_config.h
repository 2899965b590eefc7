// ModuleConfig: where libhsmsim-pkcs11.so finds its fleet, and its login
// policy. Read at C_Initialize from the file named by HSMSIM_PKCS11_CONF
// when set, else from HSMSIM_FLEET (the fleet directory, defaults for the
// rest). The file has one `key = value` a line; '#' starts a comment:
//   fleet = /path/to/fleet          (required: the directory of fleet.json)
//   max_pin_failures = 5            (1..100: wrong PINs before CKR_PIN_LOCKED)
//   token_label = hsmsim            (up to 32 bytes; C_InitToken's label wins)
//   unit_timeout_ms = 10000         (100..600000: per unit request)
#ifndef HSMSIM_PKCS11_MODULE_CONFIG_H_
#define HSMSIM_PKCS11_MODULE_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace hsmsim::pkcs11 {

inline constexpr char kConfigEnv[] = "HSMSIM_PKCS11_CONF";
inline constexpr char kFleetEnv[] = "HSMSIM_FLEET";

struct ModuleConfig {
  std::string fleet_dir;
  int64_t max_pin_failures = 5;
  std::string token_label = "hsmsim";
  int unit_timeout_ms = 10'000;
};

// ParseModuleConfig reads the text of a configuration file named `source`.
// Returns INVALID_ARGUMENT (BAD_PKCS11_CONFIG) naming the line of the first
// problem: an unknown key, a value out of range, a line without '=', no
// `fleet`.
absl::StatusOr<ModuleConfig> ParseModuleConfig(std::string_view text, std::string_view source);

// LoadModuleConfig reads the configuration from the environment as above.
// Errors: ParseModuleConfig's, NOT_FOUND (FILE_UNREADABLE) for a file that
// cannot be read, INVALID_ARGUMENT (BAD_PKCS11_CONFIG) when neither variable
// is set.
absl::StatusOr<ModuleConfig> LoadModuleConfig();

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_MODULE_CONFIG_H_

#include "pkcs11/module_config.h"

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::pkcs11 {
namespace {

absl::Status Bad(std::string_view source, int line, std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadPkcs11Config,
               StrCat(source, " line ", line, ": ", what));
}

// ParseNumber reads `value` as an integer in [low, high].
bool ParseNumber(std::string_view value, int64_t low, int64_t high, int64_t* out) {
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, *out);
  return ec == std::errc() && ptr == end && *out >= low && *out <= high;
}

std::string_view Strip(std::string_view s) {
  const size_t first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return std::string_view();
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

}  // namespace

absl::StatusOr<ModuleConfig> ParseModuleConfig(std::string_view text, std::string_view source) {
  ModuleConfig config;
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    line = Strip(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) return Bad(source, line_no, "expected KEY = VALUE");
    const std::string_view key = Strip(line.substr(0, eq));
    const std::string_view value = Strip(line.substr(eq + 1));
    int64_t n = 0;
    if (key == "fleet") {
      config.fleet_dir = std::string(value);
    } else if (key == "max_pin_failures") {
      if (!ParseNumber(value, 1, 100, &n))
        return Bad(source, line_no, "max_pin_failures is 1..100");
      config.max_pin_failures = n;
    } else if (key == "token_label") {
      if (value.size() > 32) return Bad(source, line_no, "token_label is up to 32 bytes");
      config.token_label = std::string(value);
    } else if (key == "unit_timeout_ms") {
      if (!ParseNumber(value, 100, 600'000, &n)) {
        return Bad(source, line_no, "unit_timeout_ms is 100..600000");
      }
      config.unit_timeout_ms = static_cast<int>(n);
    } else {
      return Bad(source, line_no, StrCat("unknown key '", key, "'"));
    }
  }
  if (config.fleet_dir.empty()) return Bad(source, line_no, "no `fleet = DIR` line");
  return config;
}

absl::StatusOr<ModuleConfig> LoadModuleConfig() {
  if (const char* path = std::getenv(kConfigEnv); path != nullptr && *path != '\0') {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      return Error(absl::StatusCode::kNotFound, reason::kFileUnreadable,
                   StrCat("cannot read ", kConfigEnv, " file ", path));
    }
    if (!in.is_open()) {
      return Error(absl::StatusCode::kNotFound, reason::kFileUnreadable,
                   StrCat("cannot open ", kConfigEnv, " file ", path));
    }
    return ParseModuleConfig(text.str(), path);
  }
  if (const char* fleet = std::getenv(kFleetEnv); fleet != nullptr && *fleet != '\0') {
    ModuleConfig config;
    config.fleet_dir = fleet;
    return config;
  }
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadPkcs11Config,
               StrCat("set ", kConfigEnv, " to a configuration file or ", kFleetEnv,
                      " to the fleet directory"));
}

}  // namespace hsmsim::pkcs11

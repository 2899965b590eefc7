#include "host/internal/keystore_text.h"

#include <ctime>

#include "common/str_cat.h"

namespace hsmsim::host::internal {

std::string NowUtc() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string DescribeJournal(const std::optional<RotationJournal>& j) {
  if (!j.has_value()) return "no rotation journaled";
  return StrCat("rotation started ", j->started_at, " in phase ", RotationPhaseName(j->phase));
}

int64_t KeyNumber(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.size() - prefix.size() > 18 ||
      name.substr(0, prefix.size()) != prefix) {
    return -1;
  }
  int64_t n = 0;
  for (char c : name.substr(prefix.size())) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

}  // namespace hsmsim::host::internal

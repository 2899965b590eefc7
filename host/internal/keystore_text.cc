#include "host/internal/keystore_text.h"

#include <ctime>

#include "common/reasons.h"
#include "common/status.h"
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

absl::Status CheckQuarantineChange(std::string_view name, const std::optional<StoredKey>& key,
                                   bool quarantined, std::string_view location) {
  if (!key.has_value()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchKey,
                 StrCat("no key named '", name, "' in ", location, "; nothing changed"));
  }
  if (quarantined && key->problem.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyNotUnreadable,
                 StrCat("key '", name,
                        "' has no recorded failure: no unit was found unable to open its "
                        "blob (hsmctl mk rotate's pre-check records them); nothing changed"));
  }
  return absl::OkStatus();
}

absl::Status RotationLockedError(std::string_view location, const RotationLockHolder& holder) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationLocked,
               StrCat("another process is rotating keystore ", location, ": ",
                      holder.pid == 0 ? std::string("a process that has not named itself yet")
                                      : holder.Describe(),
                      "; wait for it to finish, or stop it (the lock is released when it "
                      "exits) and run hsmctl recover"));
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

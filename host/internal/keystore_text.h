// Text helpers shared by the keystore backends (host/sqlite_keystore.cc,
// host/postgres_keystore.cc): timestamps, journal descriptions for
// messages and the numbers of generated key names.
#ifndef HSMSIM_HOST_INTERNAL_KEYSTORE_TEXT_H_
#define HSMSIM_HOST_INTERNAL_KEYSTORE_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "host/keystore.h"

namespace hsmsim::host::internal {

// NowUtc returns the current time as ISO 8601 UTC, e.g. 2026-11-30T23:05:00Z.
std::string NowUtc();

// DescribeJournal says which rotation `j` is, for messages ("no rotation
// journaled" or "rotation started T in phase P").
std::string DescribeJournal(const std::optional<RotationJournal>& j);

// CheckQuarantineChange is SetQuarantined's refusal for the key called
// `name` (`key`, nullopt when absent) of the keystore at `location`:
// NOT_FOUND (NO_SUCH_KEY) when absent, FAILED_PRECONDITION
// (KEY_NOT_UNREADABLE) when it is to be quarantined without a recorded
// problem; OK otherwise.
absl::Status CheckQuarantineChange(std::string_view name, const std::optional<StoredKey>& key,
                                   bool quarantined, std::string_view location);

// RotationLockedError is LockRotation's FAILED_PRECONDITION
// (ROTATION_LOCKED) for the keystore at `location`, naming `holder` (pid 0:
// a process that has not named itself yet).
absl::Status RotationLockedError(std::string_view location, const RotationLockHolder& holder);

// KeyNumber returns N when `name` is PREFIX<N> (1..18 decimal digits), else -1.
int64_t KeyNumber(std::string_view name, std::string_view prefix);

}  // namespace hsmsim::host::internal

#endif  // HSMSIM_HOST_INTERNAL_KEYSTORE_TEXT_H_

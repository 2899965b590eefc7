// Text helpers shared by the keystore backends (host/sqlite_keystore.cc,
// host/postgres_keystore.cc): timestamps, journal descriptions for
// messages and the numbers of generated key names.
#ifndef HSMSIM_HOST_INTERNAL_KEYSTORE_TEXT_H_
#define HSMSIM_HOST_INTERNAL_KEYSTORE_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "host/keystore.h"

namespace hsmsim::host::internal {

// NowUtc returns the current time as ISO 8601 UTC, e.g. 2026-11-30T23:05:00Z.
std::string NowUtc();

// DescribeJournal says which rotation `j` is, for messages ("no rotation
// journaled" or "rotation started T in phase P").
std::string DescribeJournal(const std::optional<RotationJournal>& j);

// KeyNumber returns N when `name` is PREFIX<N> (1..18 decimal digits), else -1.
int64_t KeyNumber(std::string_view name, std::string_view prefix);

}  // namespace hsmsim::host::internal

#endif  // HSMSIM_HOST_INTERNAL_KEYSTORE_TEXT_H_

// Hex encoding for ids and verification patterns (never for key material).
#ifndef HSMSIM_COMMON_HEX_H_
#define HSMSIM_COMMON_HEX_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hsmsim {

// ToHex returns lower-case hex digits of `bytes`.
std::string ToHex(absl::Span<const uint8_t> bytes);
inline std::string ToHex(std::string_view bytes) {
  return ToHex(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// FromHex parses hex digits (either case). Returns INVALID_ARGUMENT with
// reason BAD_HEX on an odd length or a non-hex character.
absl::StatusOr<std::string> FromHex(std::string_view hex);

// Printable returns `s` safe to put in an error message (a proto3 string,
// which must be UTF-8): printable ASCII is kept, every other byte becomes
// \xNN, and anything past `max_chars` input bytes is cut with "...".
std::string Printable(std::string_view s, size_t max_chars = 64);

}  // namespace hsmsim

#endif  // HSMSIM_COMMON_HEX_H_

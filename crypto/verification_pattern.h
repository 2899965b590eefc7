// Verification patterns (VP) and wrapping-key ids (WKID).
//
// VP = SHA-256(0x01 || key) with the last 4 bytes zeroed (the EP11
// convention), 32 bytes. WKID = the first 16 bytes of the VP: a blob names
// the master key it is wrapped under by its WKID.
#ifndef HSMSIM_CRYPTO_VERIFICATION_PATTERN_H_
#define HSMSIM_CRYPTO_VERIFICATION_PATTERN_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/types/span.h"

namespace hsmsim::crypto {

inline constexpr size_t kMasterKeySize = 32;
inline constexpr size_t kVerificationPatternSize = 32;
inline constexpr size_t kWkidSize = 16;

using VerificationPattern = std::array<uint8_t, kVerificationPatternSize>;
using Wkid = std::array<uint8_t, kWkidSize>;

// ComputeVerificationPattern returns the VP of `key` (any length; master keys
// and key parts are 32 bytes).
VerificationPattern ComputeVerificationPattern(absl::Span<const uint8_t> key);

// WkidOf returns the first 16 bytes of `vp`.
Wkid WkidOf(const VerificationPattern& vp);

inline std::string AsString(absl::Span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace hsmsim::crypto

#endif  // HSMSIM_CRYPTO_VERIFICATION_PATTERN_H_

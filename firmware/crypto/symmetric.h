// Symmetric primitives: AES-256-GCM, AES-256 key wrap with padding (RFC 5649)
// and HKDF-SHA-256. Thin, hard-to-misuse wrappers over OpenSSL's EVP API.
#ifndef HSMSIM_FIRMWARE_CRYPTO_SYMMETRIC_H_
#define HSMSIM_FIRMWARE_CRYPTO_SYMMETRIC_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"

namespace hsmsim::crypto {

inline constexpr size_t kAes256KeySize = 32;
inline constexpr size_t kGcmIvSize = 12;
inline constexpr size_t kGcmTagSize = 16;

// AesGcmSeal encrypts `plaintext` under the 32-byte `key` with the 12-byte
// `iv`, authenticating `aad`. Writes plaintext.size() bytes to `ciphertext`
// and 16 bytes to `tag`.
// REQUIRES: ciphertext.size() == plaintext.size(), tag.size() == 16.
// Returns INVALID_ARGUMENT on wrong key or IV sizes, INTERNAL on an OpenSSL
// failure.
absl::Status AesGcmSeal(absl::Span<const uint8_t> key, absl::Span<const uint8_t> iv,
                        absl::Span<const uint8_t> aad, absl::Span<const uint8_t> plaintext,
                        absl::Span<uint8_t> ciphertext, absl::Span<uint8_t> tag);

// AesGcmOpen decrypts and authenticates. On success writes the plaintext to
// `plaintext` (same size as `ciphertext`). Returns INVALID_ARGUMENT with
// reason AUTHENTICATION_FAILED when the tag does not verify; `plaintext` is
// then wiped.
absl::Status AesGcmOpen(absl::Span<const uint8_t> key, absl::Span<const uint8_t> iv,
                        absl::Span<const uint8_t> aad, absl::Span<const uint8_t> ciphertext,
                        absl::Span<const uint8_t> tag, absl::Span<uint8_t> plaintext);

// AesKeyWrapPad wraps `plaintext` (1..4096 bytes) under the 32-byte `kek`
// with RFC 5649. The result is 8 bytes longer than the plaintext rounded up
// to a multiple of 8.
absl::StatusOr<std::string> AesKeyWrapPad(absl::Span<const uint8_t> kek,
                                          absl::Span<const uint8_t> plaintext);

// AesKeyUnwrapPad reverses AesKeyWrapPad. Returns INVALID_ARGUMENT with
// reason AUTHENTICATION_FAILED when the integrity check fails.
absl::StatusOr<SecretBytes> AesKeyUnwrapPad(absl::Span<const uint8_t> kek,
                                            absl::Span<const uint8_t> wrapped);

// HkdfSha256 derives `length` bytes (RFC 5869).
absl::StatusOr<SecretBytes> HkdfSha256(absl::Span<const uint8_t> ikm,
                                       absl::Span<const uint8_t> salt,
                                       absl::Span<const uint8_t> info, size_t length);

}  // namespace hsmsim::crypto

#endif  // HSMSIM_FIRMWARE_CRYPTO_SYMMETRIC_H_

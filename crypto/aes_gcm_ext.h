// AES-GCM with the parameters an application chooses (PKCS#11 CKM_AES_GCM):
// an AES-128, -192 or -256 key, an IV of any length from 1 to 128 bytes and a
// tag of 12 to 16 bytes. The blob and data-key formats use the fixed
// AES-256-GCM of crypto/symmetric.h; this is for key use on caller data.
#ifndef HSMSIM_CRYPTO_AES_GCM_EXT_H_
#define HSMSIM_CRYPTO_AES_GCM_EXT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"

namespace hsmsim::crypto {

inline constexpr size_t kMinGcmIvSize = 1;
inline constexpr size_t kMaxGcmIvSize = 128;
inline constexpr size_t kMinGcmTagSize = 12;
inline constexpr size_t kMaxGcmTagSize = 16;

// AesGcmEncrypt returns the ciphertext of `plaintext` followed by a tag of
// `tag_size` bytes (plaintext.size() + tag_size bytes), under the 16-, 24- or
// 32-byte `key`, authenticating `aad`. Returns INVALID_ARGUMENT
// (BAD_AES_KEY_SIZE) for another key size, INVALID_ARGUMENT
// (BAD_GCM_PARAMETERS) for an IV outside 1..128 bytes or a tag size outside
// 12..16, INTERNAL (CRYPTO_FAILED) when OpenSSL fails.
absl::StatusOr<std::string> AesGcmEncrypt(absl::Span<const uint8_t> key,
                                          absl::Span<const uint8_t> iv,
                                          absl::Span<const uint8_t> aad,
                                          absl::Span<const uint8_t> plaintext, size_t tag_size);

// AesGcmDecrypt reverses AesGcmEncrypt: `ciphertext_and_tag` is the
// ciphertext followed by the `tag_size`-byte tag. Returns the plaintext in a
// wiping buffer. Errors as AesGcmEncrypt, INVALID_ARGUMENT
// (BAD_GCM_PARAMETERS) when the input is shorter than the tag, and
// INVALID_ARGUMENT (CIPHERTEXT_AUTHENTICATION_FAILED) when the tag does not
// verify (no plaintext is returned then).
absl::StatusOr<SecretBytes> AesGcmDecrypt(absl::Span<const uint8_t> key,
                                          absl::Span<const uint8_t> iv,
                                          absl::Span<const uint8_t> aad,
                                          absl::Span<const uint8_t> ciphertext_and_tag,
                                          size_t tag_size);

}  // namespace hsmsim::crypto

#endif  // HSMSIM_CRYPTO_AES_GCM_EXT_H_

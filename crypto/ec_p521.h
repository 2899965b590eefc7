// P-521 keys: administrators' signature keys (ECDSA with SHA-512) and the
// unit's importer key (ECDH). Keys can be generated from an injected Entropy
// so that tests are deterministic.
#ifndef HSMSIM_CRYPTO_EC_P521_H_
#define HSMSIM_CRYPTO_EC_P521_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "crypto/openssl_ptr.h"

namespace hsmsim::crypto {

inline constexpr size_t kP521ScalarSize = 66;
inline constexpr size_t kKeyIdSize = 32;

using KeyId = std::array<uint8_t, kKeyIdSize>;

// GenerateP521 returns a new P-521 key pair whose private scalar comes from
// `entropy`. Returns INTERNAL if entropy or OpenSSL fails.
absl::StatusOr<EvpPkeyPtr> GenerateP521(Entropy& entropy);

// P521FromPrivateScalar rebuilds a key pair from its 66-byte big-endian
// private scalar. Returns INVALID_ARGUMENT (BAD_PRIVATE_KEY) when the scalar
// is out of range.
absl::StatusOr<EvpPkeyPtr> P521FromPrivateScalar(absl::Span<const uint8_t> scalar);

// P521PrivateScalar returns the 66-byte big-endian private scalar of `key`.
absl::StatusOr<SecretBytes> P521PrivateScalar(const EVP_PKEY& key);

// PublicKeyDer returns the DER SubjectPublicKeyInfo of `key` (RFC 5480). For
// a P-521 key it is always the canonical form (named curve secp521r1,
// uncompressed point: 158 bytes), whatever encoding the key was read from, so
// one point has one DER and one key id. Returns INTERNAL (CRYPTO_FAILED) when
// OpenSSL cannot encode the key.
absl::StatusOr<std::string> PublicKeyDer(const EVP_PKEY& key);

// ParseP521PublicKeyDer parses a DER SubjectPublicKeyInfo. Returns
// INVALID_ARGUMENT (BAD_PUBLIC_KEY) unless `der` is exactly the canonical
// encoding of a valid P-521 point, i.e. what PublicKeyDer gives for it: named
// curve (not explicit parameters), uncompressed point (not compressed or
// hybrid, SEC 1 section 2.3.3), minimal DER lengths, no trailing bytes.
absl::StatusOr<EvpPkeyPtr> ParseP521PublicKeyDer(absl::Span<const uint8_t> der);

// PublicPoint returns the uncompressed SEC1 encoding (133 bytes) of `key`.
absl::StatusOr<std::string> PublicPoint(const EVP_PKEY& key);

// ParseP521PublicPoint parses an uncompressed SEC1 point. Returns
// INVALID_ARGUMENT (BAD_PUBLIC_KEY) for a point not on the curve.
absl::StatusOr<EvpPkeyPtr> ParseP521PublicPoint(absl::Span<const uint8_t> point);

// KeyIdOfPublicKeyDer returns SHA-256 of a DER SubjectPublicKeyInfo.
KeyId KeyIdOfPublicKeyDer(absl::Span<const uint8_t> der);

// SignSha512 returns a DER ECDSA signature over SHA-512(message).
absl::StatusOr<std::string> SignSha512(const EVP_PKEY& key, absl::Span<const uint8_t> message);

// VerifySha512 returns OK when `signature` is a valid DER ECDSA signature of
// SHA-512(message) by `key`, and UNAUTHENTICATED (BAD_SIGNATURE) otherwise.
absl::Status VerifySha512(const EVP_PKEY& key, absl::Span<const uint8_t> message,
                          absl::Span<const uint8_t> signature);

// EcdhSharedSecret returns the ECDH shared secret (the x coordinate, 66 bytes).
absl::StatusOr<SecretBytes> EcdhSharedSecret(const EVP_PKEY& private_key, const EVP_PKEY& peer);

}  // namespace hsmsim::crypto

#endif  // HSMSIM_CRYPTO_EC_P521_H_

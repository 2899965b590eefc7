// Key parts: encrypting a 32-byte master key part to a unit's importer key
// (so it never crosses the wire in clear), and password-protected key part
// files ("workstation files") at rest. Used by both the host (to encrypt) and
// the firmware (to decrypt): this is the one implementation.
#ifndef HSMSIM_CRYPTO_KEY_PART_H_
#define HSMSIM_CRYPTO_KEY_PART_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "crypto/openssl_ptr.h"
#include "crypto/verification_pattern.h"
#include "hsmsim/v1/keypart.pb.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::crypto {

inline constexpr size_t kKeyPartSize = 32;

// EncryptKeyPartToImporter encrypts `part` (32 bytes) to the importer public
// key given as DER SubjectPublicKeyInfo: ECDH with an ephemeral P-521 key from
// `entropy`, HKDF-SHA-256 (salt = importer key id, info = label || ephemeral
// point), then AES-256 key wrap with padding (RFC 5649).
//
// With `kdf` KEY_PART_KDF_TOKEN_AES_ECB the wrapping key is derived with the
// card KDF (v2, see KeyPartTokenKdfContext) instead: the software twin of what
// host/pkcs11 has a token compute, for tests and for tools without a card.
// The message's `kdf` field is left unset for HKDF (as before the field).
absl::StatusOr<v1::EncryptedKeyPart> EncryptKeyPartToImporter(
    absl::Span<const uint8_t> part, absl::Span<const uint8_t> importer_public_key_der,
    Entropy& entropy, v1::KeyPartKdf kdf = v1::KEY_PART_KDF_HKDF_SHA256);

// The card KDF (v2, docs/protocol.md section 13), built only from what a
// PKCS#11 token can compute on the token:
//   Z'  = the last 32 bytes of the 66-byte ECDH x coordinate Z (what
//         CKM_ECDH1_DERIVE with CKD_NULL gives for a CKK_AES key of
//         CKA_VALUE_LEN 32, PKCS#11 2.40 section 2.3.16)
//   D   = SHA-256("hsmsim/v1 key part import v2" || importer key id ||
//         ephemeral point)                       (public: computed by the host)
//   KEK = AES-256-ECB(key = Z', D)               (CKM_AES_ECB_ENCRYPT_DATA)
// KeyPartTokenKdfContext returns D (32 bytes).
std::string KeyPartTokenKdfContext(absl::Span<const uint8_t> importer_key_id,
                                   std::string_view ephemeral_point);

// KeyPartTokenKdfKek returns the 32-byte KEK of the card KDF from the whole
// 66-byte shared secret Z. INVALID_ARGUMENT (BAD_KEY_PART) when Z is shorter
// than 32 bytes or D is not 32 bytes; INTERNAL if OpenSSL fails.
absl::StatusOr<SecretBytes> KeyPartTokenKdfKek(absl::Span<const uint8_t> shared_secret,
                                               std::string_view context);

// DecryptKeyPartWithImporter reverses EncryptKeyPartToImporter inside the
// unit, with the KDF the message names (unset: HKDF). Returns
// INVALID_ARGUMENT with reason WRONG_IMPORTER_KEY when the part was encrypted
// to another importer key, UNKNOWN_KEY_PART_KDF for a KDF this build does not
// know, AUTHENTICATION_FAILED when it does
// not decrypt, BAD_KEY_PART when it is not 32 bytes.
absl::StatusOr<SecretBytes> DecryptKeyPartWithImporter(const EVP_PKEY& importer_private_key,
                                                       absl::Span<const uint8_t> importer_key_id,
                                                       const v1::EncryptedKeyPart& encrypted);

// Options for sealing a key part file.
struct PartFileOptions {
  v1::PasswordKdf kdf = v1::PASSWORD_KDF_PBKDF2_HMAC_SHA256;
  // PBKDF2 iterations (>= 10,000), or scrypt log2(N) (10..20).
  uint32_t cost = 600'000;
  std::string description;
};

// SealKeyPartFile returns the serialized KeyPartFile holding `part` under a
// key derived from `password`. Returns INVALID_ARGUMENT for an empty password
// or out-of-range KDF cost.
absl::StatusOr<std::string> SealKeyPartFile(absl::Span<const uint8_t> part,
                                            std::string_view password,
                                            const PartFileOptions& options, Entropy& entropy);

// ParseKeyPartFile parses and checks a key part file's envelope without the
// password (for `keypart show`). Returns INVALID_ARGUMENT (BAD_PART_FILE)
// naming what is wrong, FAILED_PRECONDITION (UNSUPPORTED_VERSION) for a newer
// format.
absl::StatusOr<v1::KeyPartFile> ParseKeyPartFile(std::string_view file_bytes);

// OpenKeyPartFile returns the 32-byte part. Returns PERMISSION_DENIED with
// reason WRONG_PASSWORD when the password is wrong or the file was altered,
// and the errors of ParseKeyPartFile.
absl::StatusOr<SecretBytes> OpenKeyPartFile(std::string_view file_bytes, std::string_view password);

}  // namespace hsmsim::crypto

#endif  // HSMSIM_CRYPTO_KEY_PART_H_

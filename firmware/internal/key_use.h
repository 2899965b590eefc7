// Key use for applications (docs/protocol.md sections 10.7 to 10.9): AES-GCM
// and AES-CBC-PAD encryption and decryption of caller data with the AES key
// in a blob, the
// import of a clear AES key value as a blob under CURRENT, and the wrapping
// of one blob's AES key with another's (RFC 5649) and back. The PKCS#11
// module is the client. Unsigned and read-only, like the other workload
// operations (firmware/internal/workload.h). Internal to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_KEY_USE_H_
#define HSMSIM_FIRMWARE_INTERNAL_KEY_USE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "firmware/unit_state.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware::internal {

// The most data (plaintext, or ciphertext without its tag) and the most AAD
// one EncryptAesGcm or DecryptAesGcm takes.
inline constexpr size_t kMaxKeyUseMessageSize = 65'536;

// EncryptAesGcm returns the ciphertext and tag of the request's plaintext
// under the blob's key, with the caller's IV, AAD and tag size. Returns
// INVALID_ARGUMENT (MESSAGE_TOO_LARGE) for data or AAD over 65,536 bytes,
// INVALID_ARGUMENT (BAD_GCM_PARAMETERS) for an IV outside 1..128 bytes or a
// tag size outside 12..16, and the blob's refusals (OpenRootKey): a blob
// under another master key answers FAILED_PRECONDITION (UNKNOWN_WKID), so the
// caller may retry with the key's other blob.
absl::StatusOr<v1::EncryptAesGcmResponse> EncryptAesGcm(const v1::EncryptAesGcmRequest& request,
                                                        const UnitState& state);

// DecryptAesGcm returns the plaintext of the request's ciphertext and tag.
// Errors as EncryptAesGcm, and INVALID_ARGUMENT
// (CIPHERTEXT_AUTHENTICATION_FAILED) when the tag does not verify.
absl::StatusOr<v1::DecryptAesGcmResponse> DecryptAesGcm(const v1::DecryptAesGcmRequest& request,
                                                        const UnitState& state);

// ImportKey returns a blob under CURRENT holding the request's clear AES key
// value. Returns INVALID_ARGUMENT (BAD_AES_KEY_SIZE) for a value that is not
// 16, 24 or 32 bytes, INVALID_ARGUMENT (BAD_KEY_ID) for a bad key id,
// FAILED_PRECONDITION (CURRENT_REGISTER_EMPTY) without a VALID CURRENT.
absl::StatusOr<v1::ImportKeyResponse> ImportKey(const v1::ImportKeyRequest& request,
                                                const UnitState& state, crypto::Entropy& entropy);

// AesKeyWrapPad returns RFC 5649 AES Key Wrap with Padding of `key` (1..
// 1024 bytes) under the 16-, 24- or 32-byte `kek`: the key's size rounded up
// to 8 bytes, plus 8. Returns INVALID_ARGUMENT (BAD_AES_KEY_SIZE) for another
// KEK size, INVALID_ARGUMENT (BAD_DATA_KEY_SIZE) for a key outside 1..1024
// bytes, INTERNAL (CRYPTO_FAILED) when OpenSSL fails.
absl::StatusOr<std::string> AesKeyWrapPad(absl::Span<const uint8_t> kek,
                                          absl::Span<const uint8_t> key);

// AesKeyUnwrapPad reverses AesKeyWrapPad. Returns the key in a wiping
// buffer; INVALID_ARGUMENT (BAD_AES_KEY_SIZE) for another KEK size,
// INVALID_ARGUMENT (MALFORMED_WRAPPED_KEY) for a size that is not a multiple
// of 8 in 16..1032, INVALID_ARGUMENT (WRAPPED_KEY_AUTHENTICATION_FAILED) when
// the integrity check (RFC 5649 section 3) fails.
absl::StatusOr<SecretBytes> AesKeyUnwrapPad(absl::Span<const uint8_t> kek,
                                            absl::Span<const uint8_t> wrapped);

// WrapAesKeyPad returns the key in `key_blob` wrapped with the key in
// `wrapping_blob` (AesKeyWrapPad). Each blob may be under CURRENT or OLD;
// the blobs' refusals as OpenRootKey (UNKNOWN_WKID: the caller may retry
// with the key's other blob).
absl::StatusOr<v1::WrapAesKeyPadResponse> WrapAesKeyPad(const v1::WrapAesKeyPadRequest& request,
                                                        const UnitState& state);

// UnwrapAesKeyPad unwraps `wrapped` with the key in `wrapping_blob` and
// returns the key as a new blob under CURRENT. Returns INVALID_ARGUMENT
// (MALFORMED_WRAPPED_KEY) for a size other than 24, 32 or 40 bytes,
// INVALID_ARGUMENT (WRAPPED_KEY_AUTHENTICATION_FAILED) when it does not
// unwrap, INVALID_ARGUMENT (BAD_AES_KEY_SIZE) when the key inside is not 16,
// 24 or 32 bytes, and ImportKey's and the blob's refusals.
absl::StatusOr<v1::UnwrapAesKeyPadResponse> UnwrapAesKeyPad(
    const v1::UnwrapAesKeyPadRequest& request, const UnitState& state, crypto::Entropy& entropy);

// EncryptAesCbcPad returns the request's plaintext, PKCS#7-padded to the
// next multiple of 16 bytes, encrypted with AES-CBC under the blob's key
// with the caller's IV. Returns INVALID_ARGUMENT (MESSAGE_TOO_LARGE) for
// data over 65,536 bytes, INVALID_ARGUMENT (BAD_CBC_PARAMETERS) for an IV
// that is not 16 bytes, and the blob's refusals (OpenRootKey).
absl::StatusOr<v1::EncryptAesCbcPadResponse> EncryptAesCbcPad(
    const v1::EncryptAesCbcPadRequest& request, const UnitState& state);

// DecryptAesCbcPad reverses EncryptAesCbcPad. Errors as EncryptAesCbcPad,
// INVALID_ARGUMENT (BAD_CBC_PARAMETERS) for a ciphertext that is not a
// non-empty multiple of 16 bytes, INVALID_ARGUMENT (CBC_PADDING_INVALID)
// when the padding is wrong (no plaintext is returned then).
absl::StatusOr<v1::DecryptAesCbcPadResponse> DecryptAesCbcPad(
    const v1::DecryptAesCbcPadRequest& request, const UnitState& state);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_KEY_USE_H_

// Symmetric primitives: AES-256-GCM, AES-256 key wrap with padding (RFC 5649)
// and HKDF-SHA-256. Thin, hard-to-misuse wrappers over OpenSSL's EVP API.
#ifndef HSMSIM_CRYPTO_SYMMETRIC_H_
#define HSMSIM_CRYPTO_SYMMETRIC_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/openssl_ptr.h"

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

// AesGcmKey is one AES-256-GCM key whose key schedule is expanded once, not
// per message: it keeps OpenSSL cipher contexts already keyed for encryption
// and decryption in a small pool, and an operation only sets the IV.
//
// Thread-safe and immutable from the outside. A caller that does many
// operations in a row takes a Session, which leases one context pair for its
// lifetime (one lock per session, none per message); Seal() and Open() on the
// key itself lease a pair for one call. The pooled contexts hold the key
// schedule: they are freed with EVP_CIPHER_CTX_free, which wipes them, when
// the key is destroyed, so key material never outlives the AesGcmKey.
// REQUIRES: no Session outlives the AesGcmKey it came from.
class AesGcmKey {
 public:
  // Create returns a key for the 32-byte `key`. Returns INVALID_ARGUMENT
  // (BAD_KEY_SIZE) for another size, INTERNAL when OpenSSL fails.
  static absl::StatusOr<std::unique_ptr<const AesGcmKey>> Create(absl::Span<const uint8_t> key);

  AesGcmKey(const AesGcmKey&) = delete;
  AesGcmKey& operator=(const AesGcmKey&) = delete;

  // Session: a leased context pair. Not thread-safe; movable.
  class Session {
   public:
    Session(Session&& other) noexcept = default;
    Session& operator=(Session&&) = delete;
    ~Session();

    // Seal and Open behave as AesGcmSeal and AesGcmOpen under the key.
    absl::Status Seal(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                      absl::Span<const uint8_t> plaintext, absl::Span<uint8_t> ciphertext,
                      absl::Span<uint8_t> tag);
    absl::Status Open(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                      absl::Span<const uint8_t> ciphertext, absl::Span<const uint8_t> tag,
                      absl::Span<uint8_t> plaintext);

   private:
    friend class AesGcmKey;
    Session(const AesGcmKey* owner, EvpCipherCtxPtr encrypt, EvpCipherCtxPtr decrypt)
        : owner_(owner), encrypt_(std::move(encrypt)), decrypt_(std::move(decrypt)) {}

    const AesGcmKey* owner_;
    EvpCipherCtxPtr encrypt_;
    EvpCipherCtxPtr decrypt_;
  };

  // StartSession leases a context pair (keying a new one when none is
  // idle). Returns INTERNAL when OpenSSL cannot allocate or key one.
  absl::StatusOr<Session> StartSession() const;

  // Seal and Open do one operation on a leased pair.
  absl::Status Seal(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                    absl::Span<const uint8_t> plaintext, absl::Span<uint8_t> ciphertext,
                    absl::Span<uint8_t> tag) const;
  absl::Status Open(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                    absl::Span<const uint8_t> ciphertext, absl::Span<const uint8_t> tag,
                    absl::Span<uint8_t> plaintext) const;

 private:
  explicit AesGcmKey(SecretBytes key) : key_(std::move(key)) {}
  void Return(EvpCipherCtxPtr encrypt, EvpCipherCtxPtr decrypt) const;

  const SecretBytes key_;  // keys new contexts
  mutable std::mutex mu_;
  // Idle keyed contexts, guarded by mu_.
  mutable std::vector<std::pair<EvpCipherCtxPtr, EvpCipherCtxPtr>> idle_;
};

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

#endif  // HSMSIM_CRYPTO_SYMMETRIC_H_

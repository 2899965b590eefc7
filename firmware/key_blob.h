// Key storage blobs: a key wrapped under a master key. The byte layout and
// the header reader live in proto/wire/blob_format.h, shared with the host;
// this file holds what needs the key: sealing, opening and re-encryption.
//
// The body is AES-256-GCM under a key-encryption key (KEK) derived from the
// master key by HKDF-SHA-256 (RFC 5869; never the master key itself), with
// the whole header as associated data.
#ifndef HSMSIM_FIRMWARE_KEY_BLOB_H_
#define HSMSIM_FIRMWARE_KEY_BLOB_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "crypto/symmetric.h"
#include "crypto/verification_pattern.h"
#include "proto/wire/blob_format.h"

namespace hsmsim::firmware {

using wire::BuildBlobHeader;
using wire::kBlobAlgorithmAes256;
using wire::kBlobFormatVersion;
using wire::kMaxKeyIdSize;
using wire::kRootKeySize;
using wire::ParseBlob;
using wire::ParsedBlob;

static_assert(wire::kBlobIvSize == crypto::kGcmIvSize && wire::kBlobTagSize == crypto::kGcmTagSize);
static_assert(std::is_same_v<wire::BlobWkid, crypto::Wkid>);

// BlobKek is the key-encryption key of one master key, with its WKID.
// Immutable after Create; thread-safe. Shared by the registers that hold it
// and by re-encryption work in flight. Its AES key schedule is expanded once
// (crypto::AesGcmKey) and wiped when the BlobKek is destroyed.
class BlobKek {
 public:
  // Create derives the KEK from a 32-byte master key.
  static absl::StatusOr<std::shared_ptr<const BlobKek>> Create(
      absl::Span<const uint8_t> master_key);

  const crypto::Wkid& wkid() const { return wkid_; }

  // Seal returns a new blob holding `key` with the given header fields.
  // Returns INVALID_ARGUMENT for a bad key id or key size.
  absl::StatusOr<std::string> Seal(std::string_view key_id, uint32_t attributes,
                                   absl::Span<const uint8_t> key, crypto::Entropy& entropy) const;

  // SealAesKey returns a new blob holding the 16-, 24- or 32-byte AES `key`
  // (algorithm AES-128, AES-192 or AES-256; a shorter key zero-padded to 32
  // bytes inside). Returns INVALID_ARGUMENT (BAD_KEY_ID) for a bad key id,
  // INVALID_ARGUMENT (BAD_AES_KEY_SIZE) for another key size.
  absl::StatusOr<std::string> SealAesKey(std::string_view key_id, uint32_t attributes,
                                         absl::Span<const uint8_t> key,
                                         crypto::Entropy& entropy) const;

  // Open returns the key inside `blob`. Returns FAILED_PRECONDITION
  // (WRONG_MASTER_KEY) when the blob names another WKID, INVALID_ARGUMENT
  // (BLOB_AUTHENTICATION_FAILED) when it does not authenticate.
  absl::StatusOr<SecretBytes> Open(const ParsedBlob& blob) const;

  // Rewrap opens `blob` (which must be under this KEK) and seals its key
  // under `target` with a fresh IV, keeping key id, algorithm and attributes.
  // For many blobs use a BlobRewrapper, which does the same per blob with
  // less overhead.
  absl::StatusOr<std::string> Rewrap(const ParsedBlob& blob, const BlobKek& target,
                                     crypto::Entropy& entropy) const;

 private:
  friend class BlobRewrapper;
  friend class BlobSealer;
  BlobKek(std::unique_ptr<const crypto::AesGcmKey> kek, const crypto::Wkid& wkid)
      : kek_(std::move(kek)), wkid_(wkid) {}
  absl::StatusOr<std::string> SealWithHeader(std::string header, absl::Span<const uint8_t> key,
                                             crypto::Entropy& entropy) const;

  std::unique_ptr<const crypto::AesGcmKey> kek_;
  crypto::Wkid wkid_;
};

// BlobRewrapper re-encrypts a batch of blobs from `source` to `target`: the
// re-encryption kernel. Per blob it does what BlobKek::Rewrap does, without
// the per-blob setup: it leases one keyed cipher context from each KEK for
// its lifetime, draws the fresh IVs from the entropy source in chunks rather
// than one call per blob, decrypts the key into one wiping buffer it reuses,
// and writes the new blob with a single allocation.
//
// Not thread-safe: one per batch, used on one thread. `source`, `target` and
// `entropy` must outlive it.
class BlobRewrapper {
 public:
  // Create prepares a rewrapper for about `expected_blobs` blobs (a hint for
  // how many IVs to draw at once). Returns INTERNAL when OpenSSL fails.
  static absl::StatusOr<BlobRewrapper> Create(const BlobKek& source, const BlobKek& target,
                                              crypto::Entropy& entropy, size_t expected_blobs);

  BlobRewrapper(BlobRewrapper&&) noexcept = default;
  BlobRewrapper& operator=(BlobRewrapper&&) = delete;

  // Rewrap returns `blob` (which must be under `source`) re-encrypted under
  // `target` with a fresh IV, keeping key id, algorithm and attributes.
  // Errors as BlobKek::Rewrap: FAILED_PRECONDITION (WRONG_MASTER_KEY),
  // INVALID_ARGUMENT (BLOB_AUTHENTICATION_FAILED), INTERNAL (ENTROPY_FAILED
  // or CRYPTO_FAILED).
  absl::StatusOr<std::string> Rewrap(const ParsedBlob& blob);

  // RewrapInto is Rewrap writing the new blob into `out`, which must be
  // exactly RewrappedSize(blob) bytes (the size of `blob`: the new blob has
  // the same size), e.g. space in a packed answer. Errors as Rewrap, and
  // INVALID_ARGUMENT (BAD_BUFFER_SIZE) for an `out` of another size; `out` holds no
  // part of the root key on any error.
  absl::Status RewrapInto(const ParsedBlob& blob, absl::Span<uint8_t> out);

  // RewrappedSize returns the size of the blob Rewrap makes of `blob`.
  static size_t RewrappedSize(const ParsedBlob& blob);

 private:
  BlobRewrapper(const BlobKek& source, const BlobKek& target, crypto::Entropy& entropy,
                crypto::AesGcmKey::Session source_session,
                crypto::AesGcmKey::Session target_session, size_t expected_blobs);
  absl::Status NextIv(absl::Span<uint8_t> iv);

  const BlobKek& source_;
  const BlobKek& target_;
  crypto::Entropy& entropy_;
  crypto::AesGcmKey::Session source_session_;
  crypto::AesGcmKey::Session target_session_;
  size_t ivs_wanted_;         // IVs still expected, to size the next draw
  std::vector<uint8_t> ivs_;  // drawn, not yet used: ivs_[iv_pos_..]
  size_t iv_pos_ = 0;
  SecretBytes key_;  // the root key between open and seal
};

// BlobSealer makes new root keys as blobs under one KEK for a batch
// (GenerateKeys): per key what drawing a key and BlobKek::Seal do, without
// the per-key setup. It leases one keyed cipher context for its lifetime,
// draws the keys and IVs from the entropy source in chunks (one call per 256
// keys instead of two per key: RAND_bytes costs about 2 us a call), and
// writes each blob straight into the caller's buffer. The keys drawn ahead
// live in a wiping buffer and each is wiped once sealed.
//
// Not thread-safe: one per batch, used on one thread. `kek` and `entropy`
// must outlive it.
class BlobSealer {
 public:
  // Create prepares a sealer for about `expected_keys` keys (a hint for how
  // much randomness to draw at once). Returns INTERNAL when OpenSSL fails.
  static absl::StatusOr<BlobSealer> Create(const BlobKek& kek, crypto::Entropy& entropy,
                                           size_t expected_keys);

  BlobSealer(BlobSealer&&) noexcept = default;
  BlobSealer& operator=(BlobSealer&&) = delete;

  // SealedSize returns the size of the blob SealNewKeyInto makes for
  // `key_id`: wire::kBlobOverhead + its size (docs/protocol.md section 11).
  static size_t SealedSize(std::string_view key_id) { return wire::kBlobOverhead + key_id.size(); }

  // SealNewKeyInto writes into `out` (exactly SealedSize(key_id) bytes) a
  // blob holding a new random 32-byte root key with the given header fields.
  // Returns INVALID_ARGUMENT (BAD_KEY_ID) for a key id outside 1..255 bytes,
  // INVALID_ARGUMENT (BAD_BUFFER_SIZE) for an `out` of another size,
  // INTERNAL (ENTROPY_FAILED or CRYPTO_FAILED); `out` holds no key on error.
  absl::Status SealNewKeyInto(std::string_view key_id, uint32_t attributes,
                              absl::Span<uint8_t> out);

 private:
  BlobSealer(const BlobKek& kek, crypto::Entropy& entropy, crypto::AesGcmKey::Session session,
             size_t expected_keys);
  // Next returns the next key and IV, drawing a chunk when none is left.
  absl::Status Next(absl::Span<uint8_t>& key, absl::Span<uint8_t>& iv);

  const BlobKek& kek_;
  crypto::Entropy& entropy_;
  crypto::AesGcmKey::Session session_;
  size_t wanted_;      // keys still expected, to size the next draw
  SecretBytes drawn_;  // keys and IVs drawn, not yet used: drawn_[pos_..]
  size_t pos_ = 0;
};

}  // namespace hsmsim::firmware

#endif  // HSMSIM_FIRMWARE_KEY_BLOB_H_

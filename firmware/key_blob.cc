#include "firmware/key_blob.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <string>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/symmetric.h"

namespace hsmsim::firmware {
namespace {

// IVs drawn from the entropy source at once by a BlobRewrapper: one call per
// 256 blobs instead of one per blob (RAND_bytes costs about 2 us a call).
constexpr size_t kIvChunk = 256;
constexpr std::string_view kKekInfo = "hsmsim/v1 blob kek";

absl::Status Malformed(std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedBlob,
               StrCat("key blob is malformed: ", what));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const BlobKek>> BlobKek::Create(
    absl::Span<const uint8_t> master_key) {
  if (master_key.size() != crypto::kMasterKeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeySize,
                 StrCat("master key must be 32 bytes, got ", master_key.size()));
  }
  HSMSIM_ASSIGN_OR_RETURN(
      SecretBytes kek_bytes,
      crypto::HkdfSha256(master_key, {}, AsBytes(kKekInfo), crypto::kAes256KeySize));
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<const crypto::AesGcmKey> kek,
                          crypto::AesGcmKey::Create(kek_bytes));
  crypto::Wkid wkid = crypto::WkidOf(crypto::ComputeVerificationPattern(master_key));
  return std::shared_ptr<const BlobKek>(new BlobKek(std::move(kek), wkid));
}

absl::StatusOr<std::string> BlobKek::SealWithHeader(std::string header,
                                                    absl::Span<const uint8_t> key,
                                                    crypto::Entropy& entropy) const {
  size_t header_size = header.size();
  std::string blob = std::move(header);
  blob.resize(header_size + crypto::kGcmIvSize + key.size() + crypto::kGcmTagSize);
  auto* base = reinterpret_cast<uint8_t*>(blob.data());
  absl::Span<uint8_t> iv(base + header_size, crypto::kGcmIvSize);
  HSMSIM_RETURN_IF_ERROR(entropy.Generate(iv));
  HSMSIM_RETURN_IF_ERROR(
      kek_->Seal(iv, absl::Span<const uint8_t>(base, header_size), key,
                 absl::Span<uint8_t>(base + header_size + crypto::kGcmIvSize, key.size()),
                 absl::Span<uint8_t>(base + header_size + crypto::kGcmIvSize + key.size(),
                                     crypto::kGcmTagSize)));
  return blob;
}

absl::StatusOr<std::string> BlobKek::Seal(std::string_view key_id, uint32_t attributes,
                                          absl::Span<const uint8_t> key,
                                          crypto::Entropy& entropy) const {
  if (key_id.empty() || key_id.size() > kMaxKeyIdSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyId,
                 StrCat("key id must be 1..255 bytes, got ", key_id.size()));
  }
  if (key.size() != kRootKeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeySize,
                 StrCat("root key must be 32 bytes, got ", key.size()));
  }
  return SealWithHeader(BuildBlobHeader(kBlobAlgorithmAes256, attributes, wkid_, key_id), key,
                        entropy);
}

absl::StatusOr<std::string> BlobKek::SealAesKey(std::string_view key_id, uint32_t attributes,
                                                absl::Span<const uint8_t> key,
                                                crypto::Entropy& entropy) const {
  if (key_id.empty() || key_id.size() > kMaxKeyIdSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyId,
                 StrCat("key id must be 1..255 bytes, got ", key_id.size()));
  }
  uint8_t algorithm = 0;
  for (uint8_t a : {wire::kBlobAlgorithmAes128, wire::kBlobAlgorithmAes192, kBlobAlgorithmAes256}) {
    if (wire::BlobKeySize(a) == key.size()) algorithm = a;
  }
  if (algorithm == 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadAesKeySize,
                 StrCat("an AES key is 16, 24 or 32 bytes, got ", key.size()));
  }
  SecretBytes padded(kRootKeySize, 0);
  std::copy(key.begin(), key.end(), padded.begin());
  return SealWithHeader(BuildBlobHeader(algorithm, attributes, wkid_, key_id), padded, entropy);
}

absl::StatusOr<SecretBytes> BlobKek::Open(const ParsedBlob& blob) const {
  if (!std::equal(blob.wkid.begin(), blob.wkid.end(), wkid_.begin())) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kWrongMasterKey,
                 StrCat("blob for key '", Printable(blob.key_id), "' is under master key WKID ",
                        ToHex(blob.wkid), ", not ", ToHex(wkid_)));
  }
  SecretBytes key(blob.ciphertext.size());
  absl::Status opened =
      kek_->Open(blob.iv, blob.header, blob.ciphertext, blob.tag, absl::MakeSpan(key));
  if (!opened.ok()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBlobAuthenticationFailed,
                 StrCat("blob for key '", Printable(blob.key_id),
                        "' does not authenticate under master key WKID ", ToHex(wkid_),
                        ": it was altered or damaged"));
  }
  return key;
}

absl::StatusOr<std::string> BlobKek::Rewrap(const ParsedBlob& blob, const BlobKek& target,
                                            crypto::Entropy& entropy) const {
  HSMSIM_ASSIGN_OR_RETURN(BlobRewrapper rewrapper,
                          BlobRewrapper::Create(*this, target, entropy, /*expected_blobs=*/1));
  return rewrapper.Rewrap(blob);
}

// --- BlobRewrapper ---------------------------------------------------------------

absl::StatusOr<BlobRewrapper> BlobRewrapper::Create(const BlobKek& source, const BlobKek& target,
                                                    crypto::Entropy& entropy,
                                                    size_t expected_blobs) {
  HSMSIM_ASSIGN_OR_RETURN(crypto::AesGcmKey::Session source_session, source.kek_->StartSession());
  HSMSIM_ASSIGN_OR_RETURN(crypto::AesGcmKey::Session target_session, target.kek_->StartSession());
  return BlobRewrapper(source, target, entropy, std::move(source_session),
                       std::move(target_session), expected_blobs);
}

BlobRewrapper::BlobRewrapper(const BlobKek& source, const BlobKek& target, crypto::Entropy& entropy,
                             crypto::AesGcmKey::Session source_session,
                             crypto::AesGcmKey::Session target_session, size_t expected_blobs)
    : source_(source),
      target_(target),
      entropy_(entropy),
      source_session_(std::move(source_session)),
      target_session_(std::move(target_session)),
      ivs_wanted_(std::max<size_t>(expected_blobs, 1)),
      key_(kRootKeySize) {}

absl::Status BlobRewrapper::NextIv(absl::Span<uint8_t> iv) {
  if (iv_pos_ == ivs_.size()) {
    const size_t count = std::clamp<size_t>(ivs_wanted_, 1, kIvChunk);
    ivs_.resize(count * crypto::kGcmIvSize);
    iv_pos_ = 0;
    absl::Status drawn = entropy_.Generate(absl::MakeSpan(ivs_));
    if (!drawn.ok()) {
      ivs_.clear();  // never use bytes of a failed draw
      return drawn;
    }
  }
  std::copy_n(ivs_.begin() + static_cast<std::ptrdiff_t>(iv_pos_), iv.size(), iv.begin());
  iv_pos_ += iv.size();
  if (ivs_wanted_ > 1) --ivs_wanted_;
  return absl::OkStatus();
}

size_t BlobRewrapper::RewrappedSize(const ParsedBlob& blob) {
  return blob.header.size() + crypto::kGcmIvSize + kRootKeySize + crypto::kGcmTagSize;
}

absl::StatusOr<std::string> BlobRewrapper::Rewrap(const ParsedBlob& blob) {
  std::string out(RewrappedSize(blob), '\0');
  HSMSIM_RETURN_IF_ERROR(
      RewrapInto(blob, absl::MakeSpan(reinterpret_cast<uint8_t*>(out.data()), out.size())));
  return out;
}

absl::Status BlobRewrapper::RewrapInto(const ParsedBlob& blob, absl::Span<uint8_t> out) {
  if (!std::equal(blob.wkid.begin(), blob.wkid.end(), source_.wkid_.begin())) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kWrongMasterKey,
                 StrCat("blob for key '", Printable(blob.key_id), "' is under master key WKID ",
                        ToHex(blob.wkid), ", not ", ToHex(source_.wkid_)));
  }
  if (blob.ciphertext.size() != key_.size()) {
    return Malformed(
        StrCat("key body of ", blob.ciphertext.size(), " bytes, expected ", key_.size()));
  }
  if (out.size() != RewrappedSize(blob)) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kBadBufferSize,
        StrCat("a re-encrypted blob takes ", RewrappedSize(blob), " bytes, not ", out.size()));
  }
  absl::Status opened =
      source_session_.Open(blob.iv, blob.header, blob.ciphertext, blob.tag, absl::MakeSpan(key_));
  if (!opened.ok()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBlobAuthenticationFailed,
                 StrCat("blob for key '", Printable(blob.key_id),
                        "' does not authenticate under master key WKID ", ToHex(source_.wkid_),
                        ": it was altered or damaged"));
  }

  // The new blob is the old header with the target's WKID, a fresh IV, the
  // new ciphertext and tag: same size as the old blob. The header is copied
  // first: `out` may not overlap `blob`.
  const size_t header_size = blob.header.size();
  uint8_t* base = out.data();
  std::copy(blob.header.begin(), blob.header.end(), base);
  std::copy(target_.wkid_.begin(), target_.wkid_.end(), base + wire::kBlobWkidOffset);
  absl::Span<uint8_t> iv(base + header_size, crypto::kGcmIvSize);
  uint8_t* body = iv.data() + iv.size();
  absl::Status sealed = NextIv(iv);
  if (sealed.ok()) {
    sealed = target_session_.Seal(iv, absl::Span<const uint8_t>(base, header_size), key_,
                                  absl::Span<uint8_t>(body, key_.size()),
                                  absl::Span<uint8_t>(body + key_.size(), crypto::kGcmTagSize));
  }
  OPENSSL_cleanse(key_.data(), key_.size());
  if (!sealed.ok()) {
    // Whatever the failed seal left in the body is not handed out.
    OPENSSL_cleanse(out.data(), out.size());
    return sealed;
  }
  return absl::OkStatus();
}

// --- BlobSealer ------------------------------------------------------------------

namespace {
// A key and its IV, drawn together.
constexpr size_t kDrawnPerKey = kRootKeySize + crypto::kGcmIvSize;
}  // namespace

absl::StatusOr<BlobSealer> BlobSealer::Create(const BlobKek& kek, crypto::Entropy& entropy,
                                              size_t expected_keys) {
  HSMSIM_ASSIGN_OR_RETURN(crypto::AesGcmKey::Session session, kek.kek_->StartSession());
  return BlobSealer(kek, entropy, std::move(session), expected_keys);
}

BlobSealer::BlobSealer(const BlobKek& kek, crypto::Entropy& entropy,
                       crypto::AesGcmKey::Session session, size_t expected_keys)
    : kek_(kek),
      entropy_(entropy),
      session_(std::move(session)),
      wanted_(std::max<size_t>(expected_keys, 1)) {}

absl::Status BlobSealer::Next(absl::Span<uint8_t>& key, absl::Span<uint8_t>& iv) {
  if (pos_ == drawn_.size()) {
    const size_t count = std::clamp<size_t>(wanted_, 1, kIvChunk);
    drawn_ = SecretBytes(count * kDrawnPerKey);  // the old buffer is wiped
    pos_ = 0;
    absl::Status got = entropy_.Generate(absl::MakeSpan(drawn_));
    if (!got.ok()) {
      drawn_ = SecretBytes();  // never use bytes of a failed draw
      return got;
    }
  }
  key = absl::MakeSpan(drawn_.data() + pos_, kRootKeySize);
  iv = absl::MakeSpan(drawn_.data() + pos_ + kRootKeySize, crypto::kGcmIvSize);
  pos_ += kDrawnPerKey;
  if (wanted_ > 1) --wanted_;
  return absl::OkStatus();
}

absl::Status BlobSealer::SealNewKeyInto(std::string_view key_id, uint32_t attributes,
                                        absl::Span<uint8_t> out) {
  if (key_id.empty() || key_id.size() > kMaxKeyIdSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyId,
                 StrCat("key id must be 1..255 bytes, got ", key_id.size()));
  }
  if (out.size() != SealedSize(key_id)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadBufferSize,
                 StrCat("a blob for a key id of ", key_id.size(), " bytes takes ",
                        SealedSize(key_id), " bytes, not ", out.size()));
  }
  absl::Span<uint8_t> key;
  absl::Span<uint8_t> drawn_iv;
  HSMSIM_RETURN_IF_ERROR(Next(key, drawn_iv));
  const size_t header_size = wire::BlobHeaderSize(key_id);
  wire::WriteBlobHeader(kBlobAlgorithmAes256, attributes, kek_.wkid_, key_id,
                        out.first(header_size));
  absl::Span<uint8_t> iv = out.subspan(header_size, crypto::kGcmIvSize);
  std::copy(drawn_iv.begin(), drawn_iv.end(), iv.begin());
  uint8_t* body = iv.data() + iv.size();
  absl::Status sealed =
      session_.Seal(iv, out.first(header_size), key, absl::Span<uint8_t>(body, kRootKeySize),
                    absl::Span<uint8_t>(body + kRootKeySize, crypto::kGcmTagSize));
  OPENSSL_cleanse(key.data(), key.size());  // the blob holds it now
  if (!sealed.ok()) {
    OPENSSL_cleanse(out.data(), out.size());
    return sealed;
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::firmware

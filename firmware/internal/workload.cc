#include "firmware/internal/workload.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/symmetric.h"
#include "firmware/internal/refusal.h"
#include "firmware/key_blob.h"
#include "proto/wire/packed_blobs.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::firmware::internal {
namespace {

constexpr std::string_view kWrapLabel = "hsmsim/v1 data key wrap|";
constexpr uint8_t kWrappedKeyVersion = 1;
// version || IV || ciphertext || tag
constexpr size_t kWrapOverhead = 1 + crypto::kGcmIvSize + crypto::kGcmTagSize;

// CheckGenerate returns OK when a root key of `algorithm` can be generated.
absl::Status CheckGenerate(v1::KeyAlgorithm algorithm, const UnitState& state) {
  if (algorithm < v1::KEY_ALGORITHM_UNSPECIFIED || algorithm > v1::KEY_ALGORITHM_AES_192) {
    return Invalid(reason::kUnsupportedAlgorithm,
                   StrCat("key algorithm ", static_cast<int>(algorithm),
                          " is not supported; use AES_256, AES_128 or AES_192"));
  }
  if (!state.current_register.HoldsKey()) {
    return Precondition(reason::kCurrentRegisterEmpty,
                        "GENERATE_KEY needs a VALID CURRENT master key");
  }
  return absl::OkStatus();
}

// KeyIdsOf returns the key ids of a GenerateKeys batch, whichever form it
// uses, once each is 1..kMaxKeyIdSize bytes and there are at most
// kMaxBatchBlobs. The views live as long as `request`.
absl::StatusOr<std::vector<std::string_view>> KeyIdsOf(const v1::GenerateKeysRequest& request) {
  const size_t count = request.has_packed_key_ids()
                           ? static_cast<size_t>(request.packed_key_ids().sizes_size())
                           : static_cast<size_t>(request.key_ids_size());
  if (count > kMaxBatchBlobs) {
    return Invalid(reason::kBatchTooLarge,
                   StrCat("a batch holds at most ", kMaxBatchBlobs, " keys, got ", count));
  }
  HSMSIM_ASSIGN_OR_RETURN(
      std::vector<std::string_view> key_ids,
      wire::BatchBlobs(request.key_ids(),
                       request.has_packed_key_ids() ? &request.packed_key_ids() : nullptr));
  for (size_t i = 0; i < key_ids.size(); ++i) {
    const size_t size = key_ids[i].size();
    if (size == 0 || size > kMaxKeyIdSize) {
      return Invalid(reason::kBadKeyId, StrCat("key id ", i + 1, " of the batch has ", size,
                                               " bytes; key ids are 1..", kMaxKeyIdSize, " bytes"));
    }
  }
  return key_ids;
}

// CheckRootKeySize refuses a blob of an AES-128 or -192 key for the data
// key wrap, which is defined with AES-256 root keys only.
absl::Status CheckRootKeySize(const RootKey& root) {
  if (root.key.size() == kRootKeySize) return absl::OkStatus();
  return Invalid(
      reason::kUnsupportedAlgorithm,
      StrCat("the blob of key '", Printable(root.key_id), "' holds an AES-", root.key.size() * 8,
             " key; WrapKey and UnwrapKey need an AES-256 root key"));
}

}  // namespace

// OpenRootKey opens a root-key blob under CURRENT or OLD.
absl::StatusOr<RootKey> OpenRootKey(std::string_view blob, const UnitState& state) {
  HSMSIM_ASSIGN_OR_RETURN(ParsedBlob parsed, ParseBlob(AsBytes(blob)));
  RootKey root;
  root.key_id = std::string(parsed.key_id);
  const auto matches = [&](const MasterKeyRegister& r) {
    return r.HoldsKey() && r.kek()->wkid() == parsed.wkid;
  };
  // A shorter AES key sits zero-padded in the 32 bytes: the padding is
  // not secret, so dropping it needs no wipe.
  if (matches(state.current_register)) {
    HSMSIM_ASSIGN_OR_RETURN(root.key, state.current_register.kek()->Open(parsed));
    root.key.resize(wire::BlobKeySize(parsed.algorithm));
    return root;
  }
  if (matches(state.old_register)) {
    HSMSIM_ASSIGN_OR_RETURN(root.key, state.old_register.kek()->Open(parsed));
    root.key.resize(wire::BlobKeySize(parsed.algorithm));
    root.under_old = true;
    return root;
  }
  if (matches(state.new_register)) {
    return Precondition(
        reason::kBlobUnderNew,
        StrCat("blob for key '", Printable(parsed.key_id), "' is under WKID ", ToHex(parsed.wkid),
               ", which this unit holds only in NEW (not yet promoted)"));
  }
  return Precondition(
      reason::kUnknownWkid,
      StrCat("blob for key '", Printable(parsed.key_id), "' is under WKID ", ToHex(parsed.wkid),
             ", which this unit holds in neither CURRENT nor OLD"));
}

absl::StatusOr<v1::GenerateKeyResponse> GenerateKey(const v1::GenerateKeyRequest& request,
                                                    const UnitState& state,
                                                    crypto::Entropy& entropy) {
  HSMSIM_RETURN_IF_ERROR(CheckGenerate(request.algorithm(), state));
  size_t size = kRootKeySize;
  if (request.algorithm() == v1::KEY_ALGORITHM_AES_128) size = 16;
  if (request.algorithm() == v1::KEY_ALGORITHM_AES_192) size = 24;
  SecretBytes key(size);
  HSMSIM_RETURN_IF_ERROR(entropy.Generate(absl::MakeSpan(key)));
  HSMSIM_ASSIGN_OR_RETURN(std::string blob,
                          state.current_register.kek()->SealAesKey(
                              request.key_id(), request.attributes(), key, entropy));
  v1::GenerateKeyResponse response;
  response.set_blob(std::move(blob));
  return response;
}

absl::StatusOr<v1::GenerateKeysResponse> GenerateKeys(const v1::GenerateKeysRequest& request,
                                                      const UnitState& state,
                                                      crypto::Entropy& entropy) {
  HSMSIM_RETURN_IF_ERROR(CheckGenerate(request.algorithm(), state));
  if (request.algorithm() > v1::KEY_ALGORITHM_AES_256) {
    return Invalid(reason::kUnsupportedAlgorithm,
                   StrCat("GenerateKeys makes AES_256 keys only, not algorithm ",
                          static_cast<int>(request.algorithm())));
  }
  HSMSIM_ASSIGN_OR_RETURN(const std::vector<std::string_view> key_ids, KeyIdsOf(request));
  const bool packed = request.has_packed_key_ids();
  v1::GenerateKeysResponse response;
  std::optional<wire::PackedBlobsWriter> writer;
  if (packed) {
    writer.emplace(*response.mutable_packed(), key_ids.size(),
                   wire::PackedSize(key_ids) + key_ids.size() * wire::kBlobOverhead);
  } else {
    response.mutable_blobs()->Reserve(static_cast<int>(key_ids.size()));
  }
  // One sealer for the batch: a context leased once, keys and IVs drawn in
  // chunks; each blob written straight into the answer.
  HSMSIM_ASSIGN_OR_RETURN(BlobSealer sealer, BlobSealer::Create(*state.current_register.kek(),
                                                                entropy, key_ids.size()));
  for (std::string_view key_id : key_ids) {
    const size_t size = BlobSealer::SealedSize(key_id);
    if (packed) {
      HSMSIM_RETURN_IF_ERROR(
          sealer.SealNewKeyInto(key_id, request.attributes(), writer->Extend(size)));
    } else {
      std::string* blob = response.add_blobs();
      blob->resize(size);
      HSMSIM_RETURN_IF_ERROR(sealer.SealNewKeyInto(
          key_id, request.attributes(),
          absl::MakeSpan(reinterpret_cast<uint8_t*>(blob->data()), blob->size())));
    }
  }
  return response;
}

absl::StatusOr<v1::WrapKeyResponse> WrapKey(const v1::WrapKeyRequest& request,
                                            const UnitState& state, crypto::Entropy& entropy) {
  const std::string& plaintext = request.plaintext();
  if (plaintext.empty() || plaintext.size() > kMaxDataKeySize) {
    return Invalid(reason::kBadDataKeySize,
                   StrCat("data key must be 1..1024 bytes, got ", plaintext.size()));
  }
  HSMSIM_ASSIGN_OR_RETURN(RootKey root, OpenRootKey(request.blob(), state));
  HSMSIM_RETURN_IF_ERROR(CheckRootKeySize(root));
  const std::string aad = StrCat(kWrapLabel, root.key_id);
  std::string out(kWrapOverhead + plaintext.size(), '\0');
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  o[0] = kWrappedKeyVersion;
  absl::Span<uint8_t> iv(o + 1, crypto::kGcmIvSize);
  HSMSIM_RETURN_IF_ERROR(entropy.Generate(iv));
  HSMSIM_RETURN_IF_ERROR(crypto::AesGcmSeal(
      root.key, iv, AsBytes(aad), AsBytes(plaintext),
      absl::Span<uint8_t>(o + 1 + crypto::kGcmIvSize, plaintext.size()),
      absl::Span<uint8_t>(o + 1 + crypto::kGcmIvSize + plaintext.size(), crypto::kGcmTagSize)));
  v1::WrapKeyResponse response;
  response.set_wrapped(std::move(out));
  response.set_blob_under_old(root.under_old);
  return response;
}

absl::StatusOr<v1::UnwrapKeyResponse> UnwrapKey(const v1::UnwrapKeyRequest& request,
                                                const UnitState& state) {
  const std::string& w = request.wrapped();
  if (w.size() <= kWrapOverhead || w.size() > kWrapOverhead + kMaxDataKeySize ||
      static_cast<uint8_t>(w[0]) != kWrappedKeyVersion) {
    return Invalid(
        reason::kMalformedWrappedKey,
        StrCat("wrapped data key of ", w.size(), " bytes is not a version-1 hsmsim wrapped key"));
  }
  HSMSIM_ASSIGN_OR_RETURN(RootKey root, OpenRootKey(request.blob(), state));
  HSMSIM_RETURN_IF_ERROR(CheckRootKeySize(root));
  const std::string aad = StrCat(kWrapLabel, root.key_id);
  const auto* in = reinterpret_cast<const uint8_t*>(w.data());
  const size_t ct_size = w.size() - kWrapOverhead;
  SecretBytes plaintext(ct_size);
  absl::Status opened = crypto::AesGcmOpen(
      root.key, absl::Span<const uint8_t>(in + 1, crypto::kGcmIvSize), AsBytes(aad),
      absl::Span<const uint8_t>(in + 1 + crypto::kGcmIvSize, ct_size),
      absl::Span<const uint8_t>(in + 1 + crypto::kGcmIvSize + ct_size, crypto::kGcmTagSize),
      absl::MakeSpan(plaintext));
  if (!opened.ok()) {
    return Invalid(
        reason::kWrappedKeyAuthenticationFailed,
        StrCat("wrapped data key does not authenticate under root key '", Printable(root.key_id),
               "': it was altered, or wrapped under another root key"));
  }
  v1::UnwrapKeyResponse response;
  response.set_plaintext(std::string(AsStringView(plaintext)));
  response.set_blob_under_old(root.under_old);
  return response;
}

absl::StatusOr<v1::CheckBlobsResponse> CheckBlobs(const v1::CheckBlobsRequest& request,
                                                  const UnitState& state) {
  const v1::PackedBlobs* packed = wire::PackedOrNull(request);
  const size_t count = packed != nullptr ? static_cast<size_t>(packed->sizes_size())
                                         : static_cast<size_t>(request.blobs_size());
  if (count > kMaxBatchBlobs) {
    return Invalid(reason::kBatchTooLarge,
                   StrCat("a batch holds at most ", kMaxBatchBlobs, " blobs, got ", count));
  }
  HSMSIM_ASSIGN_OR_RETURN(const std::vector<std::string_view> blobs,
                          wire::BatchBlobs(request.blobs(), packed));
  v1::CheckBlobsResponse response;
  if (packed == nullptr) response.mutable_results()->Reserve(static_cast<int>(blobs.size()));
  for (size_t i = 0; i < blobs.size(); ++i) {
    auto root = OpenRootKey(blobs[i], state);
    const bool under_old = root.ok() && root->under_old;
    if (packed == nullptr) {
      v1::BlobCheck* check = response.add_results();
      *check->mutable_status() = wire::ToWireStatus(root.status());
      check->set_under_old(under_old);
    } else if (!root.ok()) {
      v1::BlobFailure* failure = response.add_failures();
      failure->set_index(static_cast<uint32_t>(i));
      *failure->mutable_status() = wire::ToWireStatus(root.status());
    } else if (under_old) {
      response.add_under_old(static_cast<uint32_t>(i));
    }
  }
  if (packed != nullptr) response.set_checked(static_cast<uint32_t>(blobs.size()));
  return response;
}

}  // namespace hsmsim::firmware::internal

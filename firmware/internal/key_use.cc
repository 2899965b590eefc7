#include "firmware/internal/key_use.h"

#include <string>
#include <string_view>
#include <utility>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/aes_gcm_ext.h"
#include "firmware/internal/refusal.h"
#include "firmware/internal/workload.h"

namespace hsmsim::firmware::internal {
namespace {

// CheckMessageSizes refuses data (without a tag) or AAD over the limit
// before the blob is opened.
absl::Status CheckMessageSizes(size_t data_size, size_t aad_size) {
  if (data_size > kMaxKeyUseMessageSize || aad_size > kMaxKeyUseMessageSize) {
    return Invalid(reason::kMessageTooLarge,
                   StrCat("AES-GCM takes at most ", kMaxKeyUseMessageSize,
                          " bytes of data and of AAD per request, got ", data_size,
                          " bytes of data and ", aad_size, " of AAD"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::EncryptAesGcmResponse> EncryptAesGcm(const v1::EncryptAesGcmRequest& request,
                                                        const UnitState& state) {
  HSMSIM_RETURN_IF_ERROR(CheckMessageSizes(request.plaintext().size(), request.aad().size()));
  HSMSIM_ASSIGN_OR_RETURN(RootKey root, OpenRootKey(request.blob(), state));
  HSMSIM_ASSIGN_OR_RETURN(
      std::string ciphertext,
      crypto::AesGcmEncrypt(root.key, AsBytes(request.iv()), AsBytes(request.aad()),
                            AsBytes(request.plaintext()), request.tag_size()));
  v1::EncryptAesGcmResponse response;
  response.set_ciphertext(std::move(ciphertext));
  response.set_blob_under_old(root.under_old);
  return response;
}

absl::StatusOr<v1::DecryptAesGcmResponse> DecryptAesGcm(const v1::DecryptAesGcmRequest& request,
                                                        const UnitState& state) {
  const size_t size = request.ciphertext().size();
  const size_t tag = request.tag_size();
  HSMSIM_RETURN_IF_ERROR(CheckMessageSizes(size > tag ? size - tag : 0, request.aad().size()));
  HSMSIM_ASSIGN_OR_RETURN(RootKey root, OpenRootKey(request.blob(), state));
  HSMSIM_ASSIGN_OR_RETURN(
      SecretBytes plaintext,
      crypto::AesGcmDecrypt(root.key, AsBytes(request.iv()), AsBytes(request.aad()),
                            AsBytes(request.ciphertext()), tag));
  v1::DecryptAesGcmResponse response;
  response.set_plaintext(std::string(AsStringView(plaintext)));
  response.set_blob_under_old(root.under_old);
  return response;
}

absl::StatusOr<v1::ImportKeyResponse> ImportKey(const v1::ImportKeyRequest& request,
                                                const UnitState& state, crypto::Entropy& entropy) {
  const std::string& value = request.key_value();
  if (value.size() != 16 && value.size() != 24 && value.size() != 32) {
    return Invalid(reason::kBadAesKeySize,
                   StrCat("an AES key value is 16, 24 or 32 bytes, got ", value.size()));
  }
  if (!state.current_register.HoldsKey()) {
    return Precondition(reason::kCurrentRegisterEmpty,
                        "IMPORT_KEY needs a VALID CURRENT master key");
  }
  HSMSIM_ASSIGN_OR_RETURN(std::string blob,
                          state.current_register.kek()->SealAesKey(
                              request.key_id(), request.attributes(), AsBytes(value), entropy));
  v1::ImportKeyResponse response;
  response.set_blob(std::move(blob));
  return response;
}

}  // namespace hsmsim::firmware::internal

#include "firmware/internal/key_use.h"

#include <openssl/evp.h>

#include <string>
#include <string_view>
#include <utility>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/aes_gcm_ext.h"
#include "crypto/openssl_ptr.h"
#include "firmware/internal/refusal.h"
#include "firmware/internal/workload.h"
#include "firmware/limits.h"
#include "proto/wire/blob_attributes.h"
#include "proto/wire/blob_format.h"

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

// The RFC 5649 output of a wrapped key: rounded up to 8 bytes, plus 8.
constexpr size_t kKeyWrapPadOverhead = 8;

// KeyWrapPadCipher fetches AES Key Wrap with Padding for a KEK of `size`
// bytes: fetched (not EVP_aes_*_wrap_pad) so that OpenSSL 3 does not need
// EVP_CIPHER_CTX_FLAG_WRAP_ALLOW; the flag is set anyway for older paths.
absl::StatusOr<crypto::EvpCipherPtr> KeyWrapPadCipher(size_t size) {
  const char* name = size == 16   ? "AES-128-WRAP-PAD"
                     : size == 24 ? "AES-192-WRAP-PAD"
                     : size == 32 ? "AES-256-WRAP-PAD"
                                  : nullptr;
  if (name == nullptr) {
    return Invalid(reason::kBadAesKeySize,
                   StrCat("an AES wrapping key is 16, 24 or 32 bytes, got ", size));
  }
  crypto::EvpCipherPtr cipher(EVP_CIPHER_fetch(nullptr, name, nullptr));
  if (cipher == nullptr) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed,
                 StrCat("OpenSSL has no ", name, " cipher"));
  }
  return cipher;
}

// KeyWrapPad runs one wrap (`encrypt`) or unwrap of `in` into `out` (large
// enough) and returns the bytes written, or -1 when OpenSSL refuses (for an
// unwrap: the integrity check failed).
absl::StatusOr<int> KeyWrapPad(bool encrypt, absl::Span<const uint8_t> kek,
                               absl::Span<const uint8_t> in, uint8_t* out) {
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpCipherPtr cipher, KeyWrapPadCipher(kek.size()));
  crypto::EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed, "EVP_CIPHER_CTX_new failed");
  }
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex2(ctx.get(), cipher.get(), kek.data(), nullptr, encrypt ? 1 : 0, nullptr) !=
      1) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed,
                 "OpenSSL refused the AES key wrap key");
  }
  int len = 0;
  if (EVP_CipherUpdate(ctx.get(), out, &len, in.data(), static_cast<int>(in.size())) != 1 ||
      len <= 0) {
    return -1;
  }
  int tail = 0;
  if (EVP_CipherFinal_ex(ctx.get(), out + len, &tail) != 1) return -1;
  return len + tail;
}

constexpr size_t kAesBlockSize = 16;

const EVP_CIPHER* CbcCipherFor(size_t key_size) {
  if (key_size == 16) return EVP_aes_128_cbc();
  if (key_size == 24) return EVP_aes_192_cbc();
  return EVP_aes_256_cbc();  // blob keys are 16, 24 or 32 bytes
}

// AesCbcPad encrypts or decrypts `in` into `out` (resized to what was
// written) with PKCS#7 padding. Returns false when OpenSSL refuses: for a
// decryption, bad padding.
absl::StatusOr<bool> AesCbcPad(bool encrypt, const SecretBytes& key, std::string_view iv,
                               std::string_view in, uint8_t* out, size_t* out_size) {
  crypto::EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr ||
      EVP_CipherInit_ex(ctx.get(), CbcCipherFor(key.size()), nullptr, key.data(),
                        reinterpret_cast<const uint8_t*>(iv.data()), encrypt ? 1 : 0) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed, "AES-CBC set-up failed");
  }
  int len = 0;
  int tail = 0;
  if (EVP_CipherUpdate(ctx.get(), out, &len, reinterpret_cast<const uint8_t*>(in.data()),
                       static_cast<int>(in.size())) != 1) {
    return false;
  }
  if (EVP_CipherFinal_ex(ctx.get(), out + len, &tail) != 1) return false;
  *out_size = static_cast<size_t>(len + tail);
  return true;
}

absl::Status CheckCbcIv(const std::string& iv) {
  if (iv.size() != kAesBlockSize) {
    return Invalid(reason::kBadCbcParameters,
                   StrCat("the AES-CBC IV is 16 bytes, got ", iv.size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::EncryptAesCbcPadResponse> EncryptAesCbcPad(
    const v1::EncryptAesCbcPadRequest& request, const UnitState& state) {
  HSMSIM_RETURN_IF_ERROR(CheckMessageSizes(request.plaintext().size(), 0));
  HSMSIM_RETURN_IF_ERROR(CheckCbcIv(request.iv()));
  HSMSIM_ASSIGN_OR_RETURN(RootKey root, OpenRootKey(request.blob(), state));
  std::string out(request.plaintext().size() + kAesBlockSize, '\0');
  size_t size = 0;
  HSMSIM_ASSIGN_OR_RETURN(bool ok, AesCbcPad(true, root.key, request.iv(), request.plaintext(),
                                             reinterpret_cast<uint8_t*>(out.data()), &size));
  if (!ok) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed, "AES-CBC encryption failed");
  }
  out.resize(size);
  v1::EncryptAesCbcPadResponse response;
  response.set_ciphertext(std::move(out));
  response.set_blob_under_old(root.under_old);
  return response;
}

absl::StatusOr<v1::DecryptAesCbcPadResponse> DecryptAesCbcPad(
    const v1::DecryptAesCbcPadRequest& request, const UnitState& state) {
  const size_t in = request.ciphertext().size();
  HSMSIM_RETURN_IF_ERROR(CheckMessageSizes(in > kAesBlockSize ? in - kAesBlockSize : 0, 0));
  HSMSIM_RETURN_IF_ERROR(CheckCbcIv(request.iv()));
  if (in == 0 || in % kAesBlockSize != 0) {
    return Invalid(reason::kBadCbcParameters,
                   StrCat("an AES-CBC ciphertext is a non-empty multiple of 16 bytes, got ", in));
  }
  HSMSIM_ASSIGN_OR_RETURN(RootKey root, OpenRootKey(request.blob(), state));
  SecretBytes plaintext(in + kAesBlockSize);
  size_t size = 0;
  HSMSIM_ASSIGN_OR_RETURN(bool ok, AesCbcPad(false, root.key, request.iv(), request.ciphertext(),
                                             plaintext.data(), &size));
  if (!ok) {
    return Invalid(reason::kCbcPaddingInvalid,
                   "the AES-CBC padding is wrong: altered data, or another key or IV");
  }
  v1::DecryptAesCbcPadResponse response;
  response.set_plaintext(reinterpret_cast<const char*>(plaintext.data()), size);
  response.set_blob_under_old(root.under_old);
  return response;
}

absl::StatusOr<std::string> AesKeyWrapPad(absl::Span<const uint8_t> kek,
                                          absl::Span<const uint8_t> key) {
  if (key.empty() || key.size() > kMaxDataKeySize) {
    return Invalid(reason::kBadDataKeySize, StrCat("AES key wrap takes a key of 1..",
                                                   kMaxDataKeySize, " bytes, got ", key.size()));
  }
  std::string out((key.size() + 7) / 8 * 8 + kKeyWrapPadOverhead, '\0');
  HSMSIM_ASSIGN_OR_RETURN(int len,
                          KeyWrapPad(true, kek, key, reinterpret_cast<uint8_t*>(out.data())));
  if (len != static_cast<int>(out.size())) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed,
                 StrCat("AES key wrap with padding gave ", len, " bytes, not ", out.size()));
  }
  return out;
}

absl::StatusOr<SecretBytes> AesKeyUnwrapPad(absl::Span<const uint8_t> kek,
                                            absl::Span<const uint8_t> wrapped) {
  HSMSIM_RETURN_IF_ERROR(KeyWrapPadCipher(kek.size()).status());
  if (wrapped.size() < 16 || wrapped.size() % 8 != 0 ||
      wrapped.size() > kMaxDataKeySize + kKeyWrapPadOverhead) {
    return Invalid(reason::kMalformedWrappedKey,
                   StrCat("an RFC 5649 wrapped key is a multiple of 8 bytes from 16 to ",
                          kMaxDataKeySize + kKeyWrapPadOverhead, ", got ", wrapped.size()));
  }
  SecretBytes key(wrapped.size());
  HSMSIM_ASSIGN_OR_RETURN(int len, KeyWrapPad(false, kek, wrapped, key.data()));
  if (len <= 0) {
    return Invalid(reason::kWrappedKeyAuthenticationFailed,
                   "the wrapped key does not unwrap with this key (RFC 5649 integrity check)");
  }
  key.resize(static_cast<size_t>(len));  // the padding stays in the wiping buffer
  return key;
}

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

absl::StatusOr<v1::WrapAesKeyPadResponse> WrapAesKeyPad(const v1::WrapAesKeyPadRequest& request,
                                                        const UnitState& state) {
  HSMSIM_ASSIGN_OR_RETURN(RootKey kek, OpenRootKey(request.wrapping_blob(), state));
  HSMSIM_ASSIGN_OR_RETURN(RootKey key, OpenRootKey(request.key_blob(), state));
  // The header was authenticated by OpenRootKey (it is the blob's
  // associated data): only a key whose creator asked for it leaves the
  // unit, never one of hsmctl's root keys.
  absl::StatusOr<wire::ParsedBlob> header = wire::ParseBlob(AsBytes(request.key_blob()));
  if (!header.ok() || (header->attributes & wire::kBlobAttributeExtractable) == 0) {
    return Precondition(reason::kKeyNotExtractable,
                        "the key's blob is not marked extractable (blob attribute 0x1, set only "
                        "when its creator asks, as for a PKCS#11 key with CKA_EXTRACTABLE TRUE); "
                        "it does not leave the unit");
  }
  v1::WrapAesKeyPadResponse response;
  HSMSIM_ASSIGN_OR_RETURN(*response.mutable_wrapped(), AesKeyWrapPad(kek.key, key.key));
  response.set_wrapping_blob_under_old(kek.under_old);
  response.set_key_blob_under_old(key.under_old);
  return response;
}

absl::StatusOr<v1::UnwrapAesKeyPadResponse> UnwrapAesKeyPad(
    const v1::UnwrapAesKeyPadRequest& request, const UnitState& state, crypto::Entropy& entropy) {
  const size_t size = request.wrapped().size();
  if (size != 24 && size != 32 && size != 40) {
    return Invalid(reason::kMalformedWrappedKey,
                   StrCat("a wrapped AES key is 24, 32 or 40 bytes (RFC 5649 of 16, 24 or 32), "
                          "got ",
                          size));
  }
  HSMSIM_ASSIGN_OR_RETURN(RootKey kek, OpenRootKey(request.wrapping_blob(), state));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes key, AesKeyUnwrapPad(kek.key, AsBytes(request.wrapped())));
  if (key.size() != 16 && key.size() != 24 && key.size() != 32) {
    return Invalid(reason::kBadAesKeySize,
                   StrCat("the wrapped key is ", key.size(), " bytes, not an AES key"));
  }
  if (!state.current_register.HoldsKey()) {
    return Precondition(reason::kCurrentRegisterEmpty,
                        "UNWRAP_AES_KEY_PAD needs a VALID CURRENT master key");
  }
  v1::UnwrapAesKeyPadResponse response;
  HSMSIM_ASSIGN_OR_RETURN(*response.mutable_blob(),
                          state.current_register.kek()->SealAesKey(
                              request.key_id(), request.attributes(), key, entropy));
  response.set_wrapping_blob_under_old(kek.under_old);
  return response;
}

}  // namespace hsmsim::firmware::internal

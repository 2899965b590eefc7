#include "crypto/aes_gcm_ext.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <climits>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/openssl_ptr.h"

namespace hsmsim::crypto {
namespace {

// CipherFor returns the AES-GCM cipher for a key of `size` bytes, or null.
const EVP_CIPHER* CipherFor(size_t size) {
  switch (size) {
    case 16:
      return EVP_aes_128_gcm();
    case 24:
      return EVP_aes_192_gcm();
    case 32:
      return EVP_aes_256_gcm();
    default:
      return nullptr;
  }
}

absl::Status CheckParameters(absl::Span<const uint8_t> key, absl::Span<const uint8_t> iv,
                             absl::Span<const uint8_t> aad, size_t data_size, size_t tag_size) {
  if (CipherFor(key.size()) == nullptr) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadAesKeySize,
                 StrCat("an AES key is 16, 24 or 32 bytes, got ", key.size()));
  }
  if (iv.size() < kMinGcmIvSize || iv.size() > kMaxGcmIvSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadGcmParameters,
                 StrCat("the GCM IV must be 1..128 bytes, got ", iv.size()));
  }
  if (tag_size < kMinGcmTagSize || tag_size > kMaxGcmTagSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadGcmParameters,
                 StrCat("the GCM tag must be 12..16 bytes (96..128 bits), got ", tag_size));
  }
  if (data_size > INT_MAX || aad.size() > INT_MAX) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadGcmParameters,
                 "the data or the AAD is too large for AES-GCM");
  }
  return absl::OkStatus();
}

// StartGcm keys `ctx` for `encrypt`ion or decryption with `key` and `iv` and
// feeds it `aad`.
absl::Status StartGcm(EVP_CIPHER_CTX* ctx, bool encrypt, absl::Span<const uint8_t> key,
                      absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad) {
  int len = 0;
  const int enc = encrypt ? 1 : 0;
  if (EVP_CipherInit_ex(ctx, CipherFor(key.size()), nullptr, nullptr, nullptr, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr) != 1 ||
      EVP_CipherInit_ex(ctx, nullptr, nullptr, key.data(), iv.data(), enc) != 1 ||
      (!aad.empty() &&
       EVP_CipherUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)) {
    return OpenSslError(reason::kCryptoFailed, "AES-GCM set-up failed");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> AesGcmEncrypt(absl::Span<const uint8_t> key,
                                          absl::Span<const uint8_t> iv,
                                          absl::Span<const uint8_t> aad,
                                          absl::Span<const uint8_t> plaintext, size_t tag_size) {
  HSMSIM_RETURN_IF_ERROR(CheckParameters(key, iv, aad, plaintext.size(), tag_size));
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return OpenSslError(reason::kCryptoFailed, "EVP_CIPHER_CTX_new failed");
  HSMSIM_RETURN_IF_ERROR(StartGcm(ctx.get(), true, key, iv, aad));
  std::string out(plaintext.size() + tag_size, '\0');
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  int len = 0;
  int final_len = 0;
  if ((!plaintext.empty() && EVP_EncryptUpdate(ctx.get(), o, &len, plaintext.data(),
                                               static_cast<int>(plaintext.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx.get(), o + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_size),
                          o + plaintext.size()) != 1) {
    return OpenSslError(reason::kCryptoFailed, "AES-GCM encryption failed");
  }
  return out;
}

absl::StatusOr<SecretBytes> AesGcmDecrypt(absl::Span<const uint8_t> key,
                                          absl::Span<const uint8_t> iv,
                                          absl::Span<const uint8_t> aad,
                                          absl::Span<const uint8_t> ciphertext_and_tag,
                                          size_t tag_size) {
  HSMSIM_RETURN_IF_ERROR(CheckParameters(key, iv, aad, ciphertext_and_tag.size(), tag_size));
  if (ciphertext_and_tag.size() < tag_size) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadGcmParameters,
                 StrCat("the ciphertext of ", ciphertext_and_tag.size(),
                        " bytes is shorter than its ", tag_size, "-byte tag"));
  }
  const size_t size = ciphertext_and_tag.size() - tag_size;
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return OpenSslError(reason::kCryptoFailed, "EVP_CIPHER_CTX_new failed");
  HSMSIM_RETURN_IF_ERROR(StartGcm(ctx.get(), false, key, iv, aad));
  SecretBytes plaintext(size);
  // The tag is copied: OpenSSL takes a non-const pointer.
  uint8_t tag[kMaxGcmTagSize];
  std::copy(ciphertext_and_tag.begin() + size, ciphertext_and_tag.end(), tag);
  int len = 0;
  int final_len = 0;
  if ((size > 0 && EVP_DecryptUpdate(ctx.get(), plaintext.data(), &len, ciphertext_and_tag.data(),
                                     static_cast<int>(size)) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_size), tag) != 1) {
    return OpenSslError(reason::kCryptoFailed, "AES-GCM decryption failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + len, &final_len) != 1) {
    ClearOpenSslErrors();
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return Error(absl::StatusCode::kInvalidArgument, reason::kCiphertextAuthenticationFailed,
                 "the AES-GCM tag does not verify: wrong key, IV, AAD or tag length, or the "
                 "ciphertext was altered");
  }
  return plaintext;
}

}  // namespace hsmsim::crypto

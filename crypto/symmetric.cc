#include "crypto/symmetric.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <climits>
#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/openssl_ptr.h"

namespace hsmsim::crypto {
namespace {

// Fetched once: implicit fetches by name cost a lookup on every call.
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}
const EVP_CIPHER* Aes256WrapPad() {
  static const EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-WRAP-PAD", nullptr);
  return cipher;
}

absl::Status CheckSizes(absl::Span<const uint8_t> key, absl::Span<const uint8_t> iv) {
  if (key.size() != kAes256KeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeySize,
                 StrCat("AES-256 key must be 32 bytes, got ", key.size()));
  }
  if (iv.size() != kGcmIvSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadIvSize,
                 StrCat("GCM IV must be 12 bytes, got ", iv.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckIvAndBuffers(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                               absl::Span<const uint8_t> in, size_t out_size, size_t tag_size) {
  if (iv.size() != kGcmIvSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadIvSize,
                 StrCat("GCM IV must be 12 bytes, got ", iv.size()));
  }
  if (out_size != in.size() || tag_size != kGcmTagSize || in.size() > INT_MAX ||
      aad.size() > INT_MAX) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadBufferSize,
                 "AES-GCM buffers do not match the input size");
  }
  return absl::OkStatus();
}

// SealWithContext encrypts with `ctx`, already keyed for AES-256-GCM
// encryption: only the IV is set here.
absl::Status SealWithContext(EVP_CIPHER_CTX* ctx, absl::Span<const uint8_t> iv,
                             absl::Span<const uint8_t> aad, absl::Span<const uint8_t> plaintext,
                             absl::Span<uint8_t> ciphertext, absl::Span<uint8_t> tag) {
  HSMSIM_RETURN_IF_ERROR(CheckIvAndBuffers(iv, aad, plaintext, ciphertext.size(), tag.size()));
  int len = 0;
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx, ciphertext.data(), &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx, ciphertext.data() + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kGcmTagSize, tag.data()) != 1) {
    return OpenSslError(reason::kCryptoFailed, "AES-256-GCM encryption failed");
  }
  return absl::OkStatus();
}

// OpenWithContext decrypts with `ctx`, already keyed for AES-256-GCM
// decryption. Wipes `plaintext` on failure.
absl::Status OpenWithContext(EVP_CIPHER_CTX* ctx, absl::Span<const uint8_t> iv,
                             absl::Span<const uint8_t> aad, absl::Span<const uint8_t> ciphertext,
                             absl::Span<const uint8_t> tag, absl::Span<uint8_t> plaintext) {
  HSMSIM_RETURN_IF_ERROR(CheckIvAndBuffers(iv, aad, ciphertext, plaintext.size(), tag.size()));
  int len = 0;
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx, plaintext.data(), &len, ciphertext.data(),
                        static_cast<int>(ciphertext.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kGcmTagSize,
                          const_cast<uint8_t*>(tag.data())) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return OpenSslError(reason::kCryptoFailed, "AES-256-GCM decryption failed");
  }
  if (EVP_DecryptFinal_ex(ctx, plaintext.data() + len, &len) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    ClearOpenSslErrors();
    return Error(absl::StatusCode::kInvalidArgument, reason::kAuthenticationFailed,
                 "AES-256-GCM tag does not verify: wrong key, or the data was altered");
  }
  return absl::OkStatus();
}

// NewKeyedContext returns a context keyed with `key` for encryption
// (`encrypt`) or decryption, or null when OpenSSL fails.
EvpCipherCtxPtr NewKeyedContext(absl::Span<const uint8_t> key, bool encrypt) {
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return nullptr;
  int ok = encrypt ? EVP_EncryptInit_ex2(ctx.get(), Aes256Gcm(), key.data(), nullptr, nullptr)
                   : EVP_DecryptInit_ex2(ctx.get(), Aes256Gcm(), key.data(), nullptr, nullptr);
  if (ok != 1) return nullptr;
  return ctx;
}

// Idle context pairs kept per key; more are freed on return. Enough for the
// worker pool of a unit on any machine we run on.
constexpr size_t kMaxIdleContexts = 256;

}  // namespace

absl::Status AesGcmSeal(absl::Span<const uint8_t> key, absl::Span<const uint8_t> iv,
                        absl::Span<const uint8_t> aad, absl::Span<const uint8_t> plaintext,
                        absl::Span<uint8_t> ciphertext, absl::Span<uint8_t> tag) {
  HSMSIM_RETURN_IF_ERROR(CheckSizes(key, iv));
  HSMSIM_RETURN_IF_ERROR(CheckIvAndBuffers(iv, aad, plaintext, ciphertext.size(), tag.size()));
  EvpCipherCtxPtr ctx = NewKeyedContext(key, /*encrypt=*/true);
  if (!ctx) return OpenSslError(reason::kCryptoFailed, "AES-256-GCM encryption failed");
  return SealWithContext(ctx.get(), iv, aad, plaintext, ciphertext, tag);
}

absl::Status AesGcmOpen(absl::Span<const uint8_t> key, absl::Span<const uint8_t> iv,
                        absl::Span<const uint8_t> aad, absl::Span<const uint8_t> ciphertext,
                        absl::Span<const uint8_t> tag, absl::Span<uint8_t> plaintext) {
  HSMSIM_RETURN_IF_ERROR(CheckSizes(key, iv));
  HSMSIM_RETURN_IF_ERROR(CheckIvAndBuffers(iv, aad, ciphertext, plaintext.size(), tag.size()));
  EvpCipherCtxPtr ctx = NewKeyedContext(key, /*encrypt=*/false);
  if (!ctx) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return OpenSslError(reason::kCryptoFailed, "AES-256-GCM decryption failed");
  }
  return OpenWithContext(ctx.get(), iv, aad, ciphertext, tag, plaintext);
}

// --- AesGcmKey -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<const AesGcmKey>> AesGcmKey::Create(absl::Span<const uint8_t> key) {
  if (key.size() != kAes256KeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeySize,
                 StrCat("AES-256 key must be 32 bytes, got ", key.size()));
  }
  std::unique_ptr<const AesGcmKey> k(new AesGcmKey(MakeSecret(key)));
  // Key one pair now, so that a key OpenSSL cannot use fails here.
  HSMSIM_ASSIGN_OR_RETURN(Session session, k->StartSession());
  return k;
}

absl::StatusOr<AesGcmKey::Session> AesGcmKey::StartSession() const {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto pair = std::move(idle_.back());
      idle_.pop_back();
      return Session(this, std::move(pair.first), std::move(pair.second));
    }
  }
  EvpCipherCtxPtr encrypt = NewKeyedContext(key_, /*encrypt=*/true);
  EvpCipherCtxPtr decrypt = NewKeyedContext(key_, /*encrypt=*/false);
  if (!encrypt || !decrypt) {
    return OpenSslError(reason::kCryptoFailed, "AES-256-GCM context setup failed");
  }
  return Session(this, std::move(encrypt), std::move(decrypt));
}

void AesGcmKey::Return(EvpCipherCtxPtr encrypt, EvpCipherCtxPtr decrypt) const {
  std::lock_guard lock(mu_);
  if (idle_.size() < kMaxIdleContexts) idle_.emplace_back(std::move(encrypt), std::move(decrypt));
  // Otherwise both are freed (and wiped) here.
}

AesGcmKey::Session::~Session() {
  if (owner_ != nullptr && encrypt_ && decrypt_) {
    owner_->Return(std::move(encrypt_), std::move(decrypt_));
  }
}

absl::Status AesGcmKey::Session::Seal(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                                      absl::Span<const uint8_t> plaintext,
                                      absl::Span<uint8_t> ciphertext, absl::Span<uint8_t> tag) {
  return SealWithContext(encrypt_.get(), iv, aad, plaintext, ciphertext, tag);
}

absl::Status AesGcmKey::Session::Open(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                                      absl::Span<const uint8_t> ciphertext,
                                      absl::Span<const uint8_t> tag,
                                      absl::Span<uint8_t> plaintext) {
  return OpenWithContext(decrypt_.get(), iv, aad, ciphertext, tag, plaintext);
}

absl::Status AesGcmKey::Seal(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                             absl::Span<const uint8_t> plaintext, absl::Span<uint8_t> ciphertext,
                             absl::Span<uint8_t> tag) const {
  HSMSIM_ASSIGN_OR_RETURN(Session session, StartSession());
  return session.Seal(iv, aad, plaintext, ciphertext, tag);
}

absl::Status AesGcmKey::Open(absl::Span<const uint8_t> iv, absl::Span<const uint8_t> aad,
                             absl::Span<const uint8_t> ciphertext, absl::Span<const uint8_t> tag,
                             absl::Span<uint8_t> plaintext) const {
  auto session = StartSession();
  if (!session.ok()) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return session.status();
  }
  return session->Open(iv, aad, ciphertext, tag, plaintext);
}

absl::StatusOr<std::string> AesKeyWrapPad(absl::Span<const uint8_t> kek,
                                          absl::Span<const uint8_t> plaintext) {
  if (kek.size() != kAes256KeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeySize,
                 StrCat("key-wrap key must be 32 bytes, got ", kek.size()));
  }
  if (plaintext.empty() || plaintext.size() > 4096) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadBufferSize,
                 StrCat("key wrap input must be 1..4096 bytes, got ", plaintext.size()));
  }
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(((plaintext.size() + 7) / 8) * 8 + 8, '\0');
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  int len = 0;
  int total = 0;
  if (!ctx || EVP_EncryptInit_ex2(ctx.get(), Aes256WrapPad(), kek.data(), nullptr, nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o, &len, plaintext.data(), static_cast<int>(plaintext.size())) !=
          1) {
    return OpenSslError(reason::kCryptoFailed, "AES key wrap failed");
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), o + total, &len) != 1) {
    return OpenSslError(reason::kCryptoFailed, "AES key wrap failed");
  }
  total += len;
  out.resize(static_cast<size_t>(total));
  return out;
}

absl::StatusOr<SecretBytes> AesKeyUnwrapPad(absl::Span<const uint8_t> kek,
                                            absl::Span<const uint8_t> wrapped) {
  if (kek.size() != kAes256KeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeySize,
                 StrCat("key-wrap key must be 32 bytes, got ", kek.size()));
  }
  if (wrapped.size() < 16 || wrapped.size() % 8 != 0 || wrapped.size() > 4104) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kBadWrappedSize,
        StrCat("wrapped key must be 16..4104 bytes in multiples of 8, got ", wrapped.size()));
  }
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  SecretBytes out(wrapped.size());
  int len = 0;
  int total = 0;
  if (!ctx || EVP_DecryptInit_ex2(ctx.get(), Aes256WrapPad(), kek.data(), nullptr, nullptr) != 1) {
    return OpenSslError(reason::kCryptoFailed, "AES key unwrap setup failed");
  }
  if (EVP_DecryptUpdate(ctx.get(), out.data(), &len, wrapped.data(),
                        static_cast<int>(wrapped.size())) != 1 ||
      (total = len, EVP_DecryptFinal_ex(ctx.get(), out.data() + total, &len) != 1)) {
    ClearOpenSslErrors();
    return Error(absl::StatusCode::kInvalidArgument, reason::kAuthenticationFailed,
                 "AES key unwrap integrity check failed: wrong key, or the data was altered");
  }
  total += len;
  out.resize(static_cast<size_t>(total));
  return out;
}

absl::StatusOr<SecretBytes> HkdfSha256(absl::Span<const uint8_t> ikm,
                                       absl::Span<const uint8_t> salt,
                                       absl::Span<const uint8_t> info, size_t length) {
  EvpKdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) return OpenSslError(reason::kCryptoFailed, "HKDF is not available");
  EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return OpenSslError(reason::kCryptoFailed, "HKDF context allocation failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<uint8_t*>(salt.data()), salt.size());
  }
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                  const_cast<uint8_t*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslError(reason::kCryptoFailed, "HKDF-SHA-256 derivation failed");
  }
  return out;
}

}  // namespace hsmsim::crypto

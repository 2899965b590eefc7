// RAII owners for every OpenSSL object hsmsim uses, and the conversion of
// OpenSSL's error queue into a Status. No manual frees anywhere else.
#ifndef HSMSIM_CRYPTO_OPENSSL_PTR_H_
#define HSMSIM_CRYPTO_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>

#include <memory>
#include <string_view>

#include "absl/status/status.h"

namespace hsmsim::crypto {

template <auto kFree>
struct OpenSslDeleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    kFree(p);
  }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpenSslDeleter<EVP_PKEY_CTX_free>>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OpenSslDeleter<EVP_CIPHER_CTX_free>>;
using EvpCipherPtr = std::unique_ptr<EVP_CIPHER, OpenSslDeleter<EVP_CIPHER_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpenSslDeleter<EVP_MD_CTX_free>>;
using EvpKdfPtr = std::unique_ptr<EVP_KDF, OpenSslDeleter<EVP_KDF_free>>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, OpenSslDeleter<EVP_KDF_CTX_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpenSslDeleter<BN_clear_free>>;
using BnCtxPtr = std::unique_ptr<BN_CTX, OpenSslDeleter<BN_CTX_free>>;
using EcGroupPtr = std::unique_ptr<EC_GROUP, OpenSslDeleter<EC_GROUP_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, OpenSslDeleter<EC_POINT_clear_free>>;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OpenSslDeleter<OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, OpenSslDeleter<OSSL_PARAM_free>>;
using BioPtr = std::unique_ptr<BIO, OpenSslDeleter<BIO_free_all>>;

// OpenSslError returns INTERNAL with `reason`, `what` and the first entry of
// OpenSSL's error queue (then clears the queue). OpenSSL's messages carry no
// key material.
absl::Status OpenSslError(std::string_view reason, std::string_view what);

// ClearOpenSslErrors drops whatever OpenSSL queued, e.g. after an expected
// authentication failure, so it does not leak into a later message.
void ClearOpenSslErrors();

}  // namespace hsmsim::crypto

#endif  // HSMSIM_CRYPTO_OPENSSL_PTR_H_

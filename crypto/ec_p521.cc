#include "crypto/ec_p521.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::crypto {
namespace {

constexpr char kGroupName[] = "secp521r1";

absl::Status BadPublicKey(std::string_view what) {
  ClearOpenSslErrors();
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadPublicKey, what);
}

// FromData builds an EVP_PKEY from the group name plus the given public point
// and optional private scalar.
absl::StatusOr<EvpPkeyPtr> FromData(const BIGNUM* priv, absl::Span<const uint8_t> point) {
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kGroupName, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1 ||
      (priv != nullptr && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv) != 1)) {
    return OpenSslError(reason::kCryptoFailed, "building P-521 key parameters failed");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return OpenSslError(reason::kCryptoFailed, "P-521 key import setup failed");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, priv != nullptr ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                        params.get()) != 1) {
    return BadPublicKey("P-521 point is not valid");
  }
  return EvpPkeyPtr(raw);
}

bool IsP521(const EVP_PKEY& key) {
  if (EVP_PKEY_is_a(&key, "EC") != 1) return false;
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(&key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) !=
      1) {
    return false;
  }
  return std::string_view(name, len) == kGroupName;
}

// UncompressedPoint returns 0x04 || X || Y (133 bytes, SEC 1 section 2.3.3)
// of a P-521 key, read from its affine coordinates so that the result does
// not depend on how the key was encoded when it came in (named or explicit
// curve parameters, compressed, hybrid or uncompressed point).
absl::StatusOr<std::string> UncompressedPoint(const EVP_PKEY& key) {
  BIGNUM* raw_x = nullptr;
  BIGNUM* raw_y = nullptr;
  const int got_x = EVP_PKEY_get_bn_param(&key, OSSL_PKEY_PARAM_EC_PUB_X, &raw_x);
  BignumPtr x(raw_x);
  const int got_y = EVP_PKEY_get_bn_param(&key, OSSL_PKEY_PARAM_EC_PUB_Y, &raw_y);
  BignumPtr y(raw_y);
  if (got_x != 1 || got_y != 1) {
    return OpenSslError(reason::kCryptoFailed, "P-521 public point coordinates are unavailable");
  }
  std::string point(1 + 2 * kP521ScalarSize, '\0');
  point[0] = 0x04;
  auto* out = reinterpret_cast<unsigned char*>(point.data());
  if (BN_bn2binpad(x.get(), out + 1, static_cast<int>(kP521ScalarSize)) < 0 ||
      BN_bn2binpad(y.get(), out + 1 + kP521ScalarSize, static_cast<int>(kP521ScalarSize)) < 0) {
    return BadPublicKey("P-521 point coordinate is out of range");
  }
  return point;
}

// CanonicalPublicKey rebuilds a P-521 public key from its point alone, on the
// named curve: the one form whose DER is the administrator's identity.
absl::StatusOr<EvpPkeyPtr> CanonicalPublicKey(const EVP_PKEY& key) {
  HSMSIM_ASSIGN_OR_RETURN(std::string point, UncompressedPoint(key));
  return FromData(nullptr, AsBytes(point));
}

absl::StatusOr<std::string> EncodePublicKeyDer(const EVP_PKEY& key) {
  int len = i2d_PUBKEY(const_cast<EVP_PKEY*>(&key), nullptr);
  if (len <= 0) return OpenSslError(reason::kCryptoFailed, "public key DER encoding failed");
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  if (i2d_PUBKEY(const_cast<EVP_PKEY*>(&key), &p) != len) {
    return OpenSslError(reason::kCryptoFailed, "public key DER encoding failed");
  }
  return out;
}

}  // namespace

absl::StatusOr<EvpPkeyPtr> P521FromPrivateScalar(absl::Span<const uint8_t> scalar) {
  if (scalar.size() != kP521ScalarSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPrivateKey,
                 StrCat("P-521 private scalar must be 66 bytes, got ", scalar.size()));
  }
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_secp521r1));
  BnCtxPtr bn_ctx(BN_CTX_new());
  BignumPtr priv(BN_secure_new());
  if (!group || !bn_ctx || !priv ||
      BN_bin2bn(scalar.data(), static_cast<int>(scalar.size()), priv.get()) == nullptr) {
    return OpenSslError(reason::kCryptoFailed, "P-521 scalar import failed");
  }
  if (BN_is_zero(priv.get()) || BN_cmp(priv.get(), EC_GROUP_get0_order(group.get())) >= 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPrivateKey,
                 "P-521 private scalar is out of range");
  }
  EcPointPtr pub(EC_POINT_new(group.get()));
  uint8_t point[133];
  size_t point_len = 0;
  if (!pub ||
      EC_POINT_mul(group.get(), pub.get(), priv.get(), nullptr, nullptr, bn_ctx.get()) != 1 ||
      (point_len = EC_POINT_point2oct(group.get(), pub.get(), POINT_CONVERSION_UNCOMPRESSED, point,
                                      sizeof(point), bn_ctx.get())) == 0) {
    return OpenSslError(reason::kCryptoFailed, "P-521 public point computation failed");
  }
  return FromData(priv.get(), absl::Span<const uint8_t>(point, point_len));
}

absl::StatusOr<EvpPkeyPtr> GenerateP521(Entropy& entropy) {
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_secp521r1));
  if (!group) return OpenSslError(reason::kCryptoFailed, "P-521 group unavailable");
  // Rejection sampling: mask to 521 bits; the order is so close to 2^521 that
  // a retry is rare.
  for (int attempt = 0; attempt < 64; ++attempt) {
    SecretBytes scalar(kP521ScalarSize);
    HSMSIM_RETURN_IF_ERROR(entropy.Generate(absl::MakeSpan(scalar)));
    scalar[0] &= 0x01;
    auto key = P521FromPrivateScalar(scalar);
    if (key.ok()) return key;
    if (ReasonOf(key.status()) != reason::kBadPrivateKey) return key.status();
  }
  return Error(absl::StatusCode::kInternal, reason::kEntropyFailed,
               "entropy produced 64 out-of-range P-521 scalars in a row");
}

absl::StatusOr<SecretBytes> P521PrivateScalar(const EVP_PKEY& key) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(&key, OSSL_PKEY_PARAM_PRIV_KEY, &raw) != 1) {
    return OpenSslError(reason::kCryptoFailed, "P-521 key has no private scalar");
  }
  BignumPtr priv(raw);
  SecretBytes out(kP521ScalarSize);
  if (BN_bn2binpad(priv.get(), out.data(), static_cast<int>(out.size())) < 0) {
    return OpenSslError(reason::kCryptoFailed, "P-521 private scalar export failed");
  }
  return out;
}

absl::StatusOr<std::string> PublicKeyDer(const EVP_PKEY& key) {
  if (!IsP521(key)) return EncodePublicKeyDer(key);
  HSMSIM_ASSIGN_OR_RETURN(EvpPkeyPtr canonical, CanonicalPublicKey(key));
  return EncodePublicKeyDer(*canonical);
}

absl::StatusOr<EvpPkeyPtr> ParseP521PublicKeyDer(absl::Span<const uint8_t> der) {
  if (der.empty() || der.size() > 4096) {
    return BadPublicKey(StrCat("public key DER must be 1..4096 bytes, got ", der.size()));
  }
  const unsigned char* p = der.data();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return BadPublicKey("public key is not a DER SubjectPublicKeyInfo");
  if (p != der.data() + der.size()) {
    return BadPublicKey("public key DER has trailing bytes");
  }
  if (!IsP521(*key)) return BadPublicKey("public key is not on curve P-521");
  // One key, one encoding: key ids hash the DER bytes, so explicit curve
  // parameters, a compressed or hybrid point, or a longer-than-needed DER
  // length must not give the same point a second id. The canonical form is
  // rebuilt from the point alone and the input must be exactly it.
  HSMSIM_ASSIGN_OR_RETURN(EvpPkeyPtr canonical, CanonicalPublicKey(*key));
  HSMSIM_ASSIGN_OR_RETURN(std::string canonical_der, EncodePublicKeyDer(*canonical));
  if (canonical_der != AsStringView(der)) {
    return BadPublicKey(
        "public key must be DER SubjectPublicKeyInfo with the named curve secp521r1 and an "
        "uncompressed point (the canonical encoding, RFC 5480 section 2)");
  }
  return canonical;
}

absl::StatusOr<std::string> PublicPoint(const EVP_PKEY& key) {
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(&key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0, &len) !=
      1) {
    return OpenSslError(reason::kCryptoFailed, "public point export failed");
  }
  std::string out(len, '\0');
  if (EVP_PKEY_get_octet_string_param(&key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      reinterpret_cast<unsigned char*>(out.data()), out.size(),
                                      &len) != 1) {
    return OpenSslError(reason::kCryptoFailed, "public point export failed");
  }
  out.resize(len);
  return out;
}

absl::StatusOr<EvpPkeyPtr> ParseP521PublicPoint(absl::Span<const uint8_t> point) {
  if (point.size() != 133 || point[0] != 0x04) {
    return BadPublicKey(StrCat("P-521 point must be 133 bytes, uncompressed; got ", point.size()));
  }
  return FromData(nullptr, point);
}

KeyId KeyIdOfPublicKeyDer(absl::Span<const uint8_t> der) {
  KeyId id;
  SHA256(der.data(), der.size(), id.data());
  return id;
}

absl::StatusOr<std::string> SignSha512(const EVP_PKEY& key, absl::Span<const uint8_t> message) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx ||
      EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA512", nullptr, nullptr,
                            const_cast<EVP_PKEY*>(&key), nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()) != 1) {
    return OpenSslError(reason::kCryptoFailed, "ECDSA signing setup failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, message.data(),
                     message.size()) != 1) {
    return OpenSslError(reason::kCryptoFailed, "ECDSA signing failed");
  }
  sig.resize(len);
  return sig;
}

absl::Status VerifySha512(const EVP_PKEY& key, absl::Span<const uint8_t> message,
                          absl::Span<const uint8_t> signature) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA512", nullptr, nullptr,
                                      const_cast<EVP_PKEY*>(&key), nullptr) != 1) {
    return OpenSslError(reason::kCryptoFailed, "ECDSA verification setup failed");
  }
  int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                            message.size());
  if (rc != 1) {
    ClearOpenSslErrors();
    return Error(absl::StatusCode::kUnauthenticated, reason::kBadSignature,
                 "ECDSA P-521/SHA-512 signature does not verify");
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> EcdhSharedSecret(const EVP_PKEY& private_key, const EVP_PKEY& peer) {
  EvpPkeyCtxPtr ctx(
      EVP_PKEY_CTX_new_from_pkey(nullptr, const_cast<EVP_PKEY*>(&private_key), nullptr));
  size_t len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), const_cast<EVP_PKEY*>(&peer)) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) {
    return OpenSslError(reason::kCryptoFailed, "ECDH setup failed");
  }
  SecretBytes secret(len);
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1) {
    return OpenSslError(reason::kCryptoFailed, "ECDH derivation failed");
  }
  secret.resize(len);
  return secret;
}

}  // namespace hsmsim::crypto

// Every encoding of one P-521 public key that DER (X.690) and SEC 1 allow
// besides the canonical one (RFC 5480: named curve, uncompressed point,
// minimal lengths). Shared by the crypto and firmware tests: each must be
// refused, or counted as the same administrator, never as a second one.
#ifndef HSMSIM_TESTS_CRYPTO_KEY_ENCODINGS_H_
#define HSMSIM_TESTS_CRYPTO_KEY_ENCODINGS_H_

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <iterator>
#include <string>
#include <vector>

#include "crypto/openssl_ptr.h"

namespace hsmsim::crypto::encodings {

struct KeyEncoding {
  std::string name;  // a gtest-safe name: letters, digits and underscores
  std::string der;
};

// RawDer encodes `key` as OpenSSL would with the given EC parameter encoding
// ("named_curve" or "explicit") and point format ("uncompressed",
// "compressed" or "hybrid"), without hsmsim's canonicalization. `key` is
// copied, never changed.
inline std::string RawDer(const EVP_PKEY& key, const char* param_encoding,
                          const char* point_format) {
  EvpPkeyPtr copy(EVP_PKEY_dup(const_cast<EVP_PKEY*>(&key)));
  if (!copy) return {};
  if (EVP_PKEY_set_utf8_string_param(copy.get(), OSSL_PKEY_PARAM_EC_ENCODING, param_encoding) !=
          1 ||
      EVP_PKEY_set_utf8_string_param(copy.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                     point_format) != 1) {
    return {};
  }
  int len = i2d_PUBKEY(copy.get(), nullptr);
  if (len <= 0) return {};
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_PUBKEY(copy.get(), &p);
  return out;
}

// WithNonMinimalOuterLength and WithNonMinimalBitStringLength take the
// canonical SubjectPublicKeyInfo (30 81 9b 30 10 ... 03 81 86 00 04 ...) and
// write one length with an extra leading zero octet (0x81 n becomes
// 0x82 0x00 n): valid BER, not DER. They return "" for another layout.
inline std::string WithNonMinimalOuterLength(const std::string& canonical) {
  std::string out = canonical;
  if (out.size() < 3 || static_cast<uint8_t>(out[1]) != 0x81) return {};
  out.replace(1, 2, std::string("\x82\x00", 2) + out[2]);
  return out;
}

inline std::string WithNonMinimalBitStringLength(const std::string& canonical) {
  // The BIT STRING is the last element: 03 81 86 00 04 <132 bytes>.
  const size_t bit_string = canonical.size() - 137;
  if (static_cast<uint8_t>(canonical[bit_string]) != 0x03 ||
      static_cast<uint8_t>(canonical[bit_string + 1]) != 0x81) {
    return {};
  }
  std::string out = canonical;
  out.replace(bit_string + 1, 2, std::string("\x82\x00", 2) + canonical[bit_string + 2]);
  // The outer SEQUENCE grows by one octet.
  out[2] = static_cast<char>(static_cast<uint8_t>(out[2]) + 1);
  return out;
}

// The variants NonCanonicalEncodings returns, in its order (test names).
inline constexpr const char* kVariantNames[] = {
    "ExplicitParameters",
    "ExplicitParametersCompressed",
    "ExplicitParametersHybrid",
    "CompressedPoint",
    "HybridPoint",
    "NonMinimalOuterLength",
    "NonMinimalBitStringLength",
    "TrailingZeroByte",
    "TrailingBytes",
    "DerAppendedTwice",
};
inline constexpr int kVariantCount = static_cast<int>(std::size(kVariantNames));

// NonCanonicalEncodings returns every other encoding of the point of `key`,
// kVariantCount of them, named as in kVariantNames.
inline std::vector<KeyEncoding> NonCanonicalEncodings(const EVP_PKEY& key) {
  const std::string canonical = RawDer(key, "named_curve", "uncompressed");
  return {
      {"ExplicitParameters", RawDer(key, "explicit", "uncompressed")},
      {"ExplicitParametersCompressed", RawDer(key, "explicit", "compressed")},
      {"ExplicitParametersHybrid", RawDer(key, "explicit", "hybrid")},
      {"CompressedPoint", RawDer(key, "named_curve", "compressed")},
      {"HybridPoint", RawDer(key, "named_curve", "hybrid")},
      {"NonMinimalOuterLength", WithNonMinimalOuterLength(canonical)},
      {"NonMinimalBitStringLength", WithNonMinimalBitStringLength(canonical)},
      {"TrailingZeroByte", canonical + std::string(1, '\0')},
      {"TrailingBytes", canonical + "trailing"},
      {"DerAppendedTwice", canonical + canonical},
  };
}

}  // namespace hsmsim::crypto::encodings

#endif  // HSMSIM_TESTS_CRYPTO_KEY_ENCODINGS_H_

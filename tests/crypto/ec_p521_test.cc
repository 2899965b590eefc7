// P-521 keys: generation, encodings, ECDSA and ECDH.
#include "crypto/ec_p521.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <string>

#include "common/status.h"
#include "tests/crypto/key_encodings.h"

namespace hsmsim::crypto {
namespace {

TEST(EcP521Test, SameEntropyGivesSameKey) {
  SeededEntropy a(5), b(5);
  auto ka = GenerateP521(a), kb = GenerateP521(b);
  ASSERT_TRUE(ka.ok() && kb.ok());
  EXPECT_EQ(*PublicKeyDer(**ka), *PublicKeyDer(**kb));
}

TEST(EcP521Test, ScalarRoundTrip) {
  SeededEntropy e(6);
  auto key = *GenerateP521(e);
  auto scalar = *P521PrivateScalar(*key);
  EXPECT_EQ(scalar.size(), kP521ScalarSize);
  auto again = P521FromPrivateScalar(scalar);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*PublicKeyDer(**again), *PublicKeyDer(*key));
}

TEST(EcP521Test, OutOfRangeScalarsRefused) {
  EXPECT_EQ(ReasonOf(P521FromPrivateScalar(SecretBytes(66, 0)).status()), "BAD_PRIVATE_KEY");
  EXPECT_EQ(ReasonOf(P521FromPrivateScalar(SecretBytes(66, 0xff)).status()), "BAD_PRIVATE_KEY");
  EXPECT_EQ(ReasonOf(P521FromPrivateScalar(SecretBytes(65, 1)).status()), "BAD_PRIVATE_KEY");
}

TEST(EcP521Test, SignVerify) {
  SeededEntropy e(7);
  auto key = *GenerateP521(e);
  std::string der = *PublicKeyDer(*key);
  auto pub = ParseP521PublicKeyDer(AsBytes(der));
  ASSERT_TRUE(pub.ok()) << pub.status();
  std::string msg = "command bytes";
  std::string sig = *SignSha512(*key, AsBytes(msg));
  EXPECT_TRUE(VerifySha512(**pub, AsBytes(msg), AsBytes(sig)).ok());
  std::string other = "command bytez";
  absl::Status bad = VerifySha512(**pub, AsBytes(other), AsBytes(sig));
  EXPECT_EQ(bad.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ReasonOf(bad), "BAD_SIGNATURE");
  EXPECT_EQ(ReasonOf(VerifySha512(**pub, AsBytes(msg), AsBytes(std::string("junk")))),
            "BAD_SIGNATURE");
}

TEST(EcP521Test, KeyIdIsSha256OfDer) {
  SeededEntropy e(8);
  auto key = *GenerateP521(e);
  std::string der = *PublicKeyDer(*key);
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_Digest(der.data(), der.size(), digest, &len, EVP_sha256(), nullptr);
  KeyId id = KeyIdOfPublicKeyDer(AsBytes(der));
  EXPECT_EQ(std::string(id.begin(), id.end()), std::string(digest, digest + 32));
}

TEST(EcP521Test, OtherCurvesAndGarbageRefused) {
  EvpPkeyPtr p256(EVP_EC_gen("P-256"));
  ASSERT_TRUE(p256);
  std::string der = *PublicKeyDer(*p256);
  EXPECT_EQ(ReasonOf(ParseP521PublicKeyDer(AsBytes(der)).status()), "BAD_PUBLIC_KEY");
  EXPECT_EQ(ReasonOf(ParseP521PublicKeyDer(AsBytes(std::string("garbage"))).status()),
            "BAD_PUBLIC_KEY");
  SeededEntropy e(9);
  std::string good = *PublicKeyDer(**GenerateP521(e));
  EXPECT_EQ(ReasonOf(ParseP521PublicKeyDer(AsBytes(good + "x")).status()), "BAD_PUBLIC_KEY");
  EXPECT_EQ(ReasonOf(ParseP521PublicKeyDer({}).status()), "BAD_PUBLIC_KEY");
}

TEST(EcP521Test, PointNotOnCurveRefused) {
  SeededEntropy e(10);
  std::string point = *PublicPoint(**GenerateP521(e));
  ASSERT_EQ(point.size(), 133u);
  EXPECT_TRUE(ParseP521PublicPoint(AsBytes(point)).ok());
  point[70] ^= 0x01;
  EXPECT_EQ(ReasonOf(ParseP521PublicPoint(AsBytes(point)).status()), "BAD_PUBLIC_KEY");
  EXPECT_EQ(ReasonOf(ParseP521PublicPoint(AsBytes(point.substr(1))).status()), "BAD_PUBLIC_KEY");
}

TEST(EcP521Test, EcdhAgrees) {
  SeededEntropy e(11);
  auto a = *GenerateP521(e);
  auto b = *GenerateP521(e);
  auto ab = EcdhSharedSecret(*a, *b);
  auto ba = EcdhSharedSecret(*b, *a);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(ab->size(), 66u);
  EXPECT_TRUE(*ab == *ba);
}

// One point, one identity: every other encoding of an administrator's key is
// refused by the parser, and PublicKeyDer gives the canonical form whatever
// encoding a key was read from (issue: explicit parameters let one person
// install their key twice).
class NonCanonicalEncodingTest : public ::testing::TestWithParam<int> {
 protected:
  static EvpPkeyPtr Key() {
    SeededEntropy e(12);
    return *GenerateP521(e);
  }
};

TEST_P(NonCanonicalEncodingTest, RefusedByParserAndCanonicalizedByEncoder) {
  EvpPkeyPtr key = Key();
  const std::string canonical = *PublicKeyDer(*key);
  const encodings::KeyEncoding variant = encodings::NonCanonicalEncodings(*key)[GetParam()];
  ASSERT_FALSE(variant.der.empty()) << variant.name;
  ASSERT_NE(variant.der, canonical) << variant.name;
  auto parsed = ParseP521PublicKeyDer(AsBytes(variant.der));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << variant.name;
  EXPECT_EQ(ReasonOf(parsed.status()), "BAD_PUBLIC_KEY") << variant.name;

  // Where OpenSSL itself can read the variant, re-encoding it gives back the
  // canonical DER, hence the same key id.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(variant.der.data());
  EvpPkeyPtr decoded(d2i_PUBKEY(nullptr, &p, static_cast<long>(variant.der.size())));
  if (decoded) {
    auto again = PublicKeyDer(*decoded);
    ASSERT_TRUE(again.ok()) << variant.name << ": " << again.status();
    EXPECT_EQ(*again, canonical) << variant.name;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryVariant, NonCanonicalEncodingTest,
                         ::testing::Range(0, encodings::kVariantCount),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return std::string(encodings::kVariantNames[param_info.param]);
                         });

TEST(EcP521Test, VariantListMatchesItsNames) {
  SeededEntropy e(12);
  const auto variants = encodings::NonCanonicalEncodings(**GenerateP521(e));
  ASSERT_EQ(static_cast<int>(variants.size()), encodings::kVariantCount);
  for (int i = 0; i < encodings::kVariantCount; ++i) {
    EXPECT_EQ(variants[i].name, encodings::kVariantNames[i]);
  }
}

TEST(EcP521Test, ExplicitParameterPrivateKeyGivesTheCanonicalPublicKey) {
  // An administrator key file re-encoded with `openssl ec -param_enc
  // explicit` holds the same private key; its public DER is the canonical one.
  SeededEntropy e(13);
  EvpPkeyPtr key = *GenerateP521(e);
  EvpPkeyPtr explicit_key(EVP_PKEY_dup(key.get()));
  ASSERT_EQ(
      EVP_PKEY_set_utf8_string_param(explicit_key.get(), OSSL_PKEY_PARAM_EC_ENCODING, "explicit"),
      1);
  ASSERT_NE(encodings::RawDer(*explicit_key, "explicit", "uncompressed"), *PublicKeyDer(*key));
  EXPECT_EQ(*PublicKeyDer(*explicit_key), *PublicKeyDer(*key));
  EXPECT_TRUE(ParseP521PublicKeyDer(AsBytes(*PublicKeyDer(*explicit_key))).ok());
}

}  // namespace
}  // namespace hsmsim::crypto

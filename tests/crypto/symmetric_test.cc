// Symmetric primitives against published vectors.
#include "crypto/symmetric.h"

#include <gtest/gtest.h>

#include <string>

#include "common/hex.h"
#include "common/status.h"

namespace hsmsim::crypto {
namespace {

std::string Unhex(const std::string& hex) { return *FromHex(hex); }

// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14.
TEST(AesGcmTest, GcmSpecTestCase14) {
  std::string key(32, '\0'), iv(12, '\0'), pt(16, '\0');
  std::string ct(16, '\0'), tag(16, '\0');
  ASSERT_TRUE(AesGcmSeal(AsBytes(key), AsBytes(iv), {}, AsBytes(pt),
                         absl::MakeSpan(reinterpret_cast<uint8_t*>(ct.data()), 16),
                         absl::MakeSpan(reinterpret_cast<uint8_t*>(tag.data()), 16))
                  .ok());
  EXPECT_EQ(ToHex(ct), "cea7403d4d606b6e074ec5d3baf39d18");
  EXPECT_EQ(ToHex(tag), "d0d1c8a799996bf0265b98b5d48ab919");
}

// Test case 13: empty plaintext, the tag alone.
TEST(AesGcmTest, GcmSpecTestCase13) {
  std::string key(32, '\0'), iv(12, '\0'), tag(16, '\0');
  ASSERT_TRUE(AesGcmSeal(AsBytes(key), AsBytes(iv), {}, {}, {},
                         absl::MakeSpan(reinterpret_cast<uint8_t*>(tag.data()), 16))
                  .ok());
  EXPECT_EQ(ToHex(tag), "530f8afbc74536b9a963b4f1c4cb738b");
}

TEST(AesGcmTest, OpenRejectsTamperingAndWipesOutput) {
  std::string key(32, 'k'), iv(12, 'i'), aad = "header", pt = "sixteen byte msg";
  std::string ct(pt.size(), '\0'), tag(16, '\0');
  ASSERT_TRUE(AesGcmSeal(AsBytes(key), AsBytes(iv), AsBytes(aad), AsBytes(pt),
                         absl::MakeSpan(reinterpret_cast<uint8_t*>(ct.data()), ct.size()),
                         absl::MakeSpan(reinterpret_cast<uint8_t*>(tag.data()), 16))
                  .ok());
  SecretBytes out(pt.size());
  ASSERT_TRUE(AesGcmOpen(AsBytes(key), AsBytes(iv), AsBytes(aad), AsBytes(ct), AsBytes(tag),
                         absl::MakeSpan(out))
                  .ok());
  EXPECT_EQ(std::string(out.begin(), out.end()), pt);
  std::string bad_aad = "headeR";
  absl::Status s = AesGcmOpen(AsBytes(key), AsBytes(iv), AsBytes(bad_aad), AsBytes(ct),
                              AsBytes(tag), absl::MakeSpan(out));
  EXPECT_EQ(ReasonOf(s), "AUTHENTICATION_FAILED");
  EXPECT_EQ(std::string(out.begin(), out.end()), std::string(pt.size(), '\0'));
}

TEST(AesGcmTest, WrongSizesRefused) {
  std::string key(31, 'k'), iv(12, 'i');
  uint8_t tag[16];
  EXPECT_EQ(ReasonOf(AesGcmSeal(AsBytes(key), AsBytes(iv), {}, {}, {}, absl::MakeSpan(tag))),
            "BAD_KEY_SIZE");
  key.resize(32);
  iv.resize(11);
  EXPECT_EQ(ReasonOf(AesGcmSeal(AsBytes(key), AsBytes(iv), {}, {}, {}, absl::MakeSpan(tag))),
            "BAD_IV_SIZE");
}

// RFC 5869, test case 1.
TEST(HkdfTest, Rfc5869TestCase1) {
  std::string ikm(22, '\x0b');
  std::string salt = Unhex("000102030405060708090a0b0c");
  std::string info = Unhex("f0f1f2f3f4f5f6f7f8f9");
  auto okm = HkdfSha256(AsBytes(ikm), AsBytes(salt), AsBytes(info), 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(ToHex(absl::MakeConstSpan(*okm)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(AesKeyWrapPadTest, RoundTripForEveryLengthUpTo40) {
  std::string kek(32, 'w');
  for (size_t len = 1; len <= 40; ++len) {
    std::string pt(len, static_cast<char>('a' + len % 26));
    auto wrapped = AesKeyWrapPad(AsBytes(kek), AsBytes(pt));
    ASSERT_TRUE(wrapped.ok()) << wrapped.status();
    EXPECT_EQ(wrapped->size(), ((len + 7) / 8) * 8 + 8);
    auto back = AesKeyUnwrapPad(AsBytes(kek), AsBytes(*wrapped));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(std::string(back->begin(), back->end()), pt);
  }
}

TEST(AesKeyWrapPadTest, TamperingAndWrongKeyRejected) {
  std::string kek(32, 'w'), other(32, 'x'), pt(32, 'p');
  std::string wrapped = *AesKeyWrapPad(AsBytes(kek), AsBytes(pt));
  EXPECT_EQ(ReasonOf(AesKeyUnwrapPad(AsBytes(other), AsBytes(wrapped)).status()),
            "AUTHENTICATION_FAILED");
  for (size_t i = 0; i < wrapped.size(); ++i) {
    std::string bad = wrapped;
    bad[i] ^= 0x10;
    EXPECT_EQ(ReasonOf(AesKeyUnwrapPad(AsBytes(kek), AsBytes(bad)).status()),
              "AUTHENTICATION_FAILED")
        << "byte " << i;
  }
  EXPECT_EQ(ReasonOf(AesKeyUnwrapPad(AsBytes(kek), AsBytes(wrapped.substr(0, 20))).status()),
            "BAD_WRAPPED_SIZE");
}

}  // namespace
}  // namespace hsmsim::crypto

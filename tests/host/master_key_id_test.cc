// VerificationPattern and Wkid: sizes, hex, the one short form, equality.
#include "host/master_key_id.h"

#include <gtest/gtest.h>

#include <string>

#include "common/status.h"

namespace hsmsim::host {
namespace {

std::string Bytes(size_t n, char first) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(first + i));
  return s;
}

TEST(VerificationPatternTest, FromBytesKeepsTheBytesAndPrintsThemInFullAndShort) {
  const std::string raw = Bytes(32, 1);
  auto vp = VerificationPattern::FromBytes(raw);
  ASSERT_TRUE(vp.ok()) << vp.status();
  EXPECT_EQ(vp->bytes(), raw);
  EXPECT_EQ(vp->Hex(), "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
  EXPECT_EQ(vp->Short(), "0102030405060708");
}

TEST(VerificationPatternTest, FromBytesRefusesAnotherSize) {
  for (size_t n : {0, 16, 31, 33}) {
    auto vp = VerificationPattern::FromBytes(Bytes(n, 1));
    ASSERT_FALSE(vp.ok()) << n;
    EXPECT_EQ(vp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ReasonOf(vp.status()), "BAD_VP");
  }
}

TEST(VerificationPatternTest, FromHexAcceptsEitherCaseAndRoundTrips) {
  const std::string hex = "0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20";
  auto vp = VerificationPattern::FromHex(hex);
  ASSERT_TRUE(vp.ok()) << vp.status();
  EXPECT_EQ(vp->bytes(), Bytes(32, 1));
  EXPECT_EQ(vp->Hex(), "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
}

TEST(VerificationPatternTest, FromHexRefusesBadDigitsAndLengths) {
  for (std::string bad : {std::string(), std::string(63, 'a'), std::string(62, 'a'),
                          std::string(66, 'a'), std::string(63, 'a') + "g"}) {
    auto vp = VerificationPattern::FromHex(bad);
    ASSERT_FALSE(vp.ok()) << bad;
    EXPECT_EQ(ReasonOf(vp.status()), "BAD_VP");
  }
}

TEST(VerificationPatternTest, EqualityComparesEveryByte) {
  const std::string raw = Bytes(32, 1);
  std::string last_differs = raw;
  last_differs.back() ^= 1;
  EXPECT_TRUE(*VerificationPattern::FromBytes(raw) == *VerificationPattern::FromBytes(raw));
  EXPECT_FALSE(*VerificationPattern::FromBytes(raw) ==
               *VerificationPattern::FromBytes(last_differs));
}

TEST(WkidTest, OfAVpIsItsFirstSixteenBytesWithTheSameShortForm) {
  auto vp = *VerificationPattern::FromBytes(Bytes(32, 1));
  Wkid wkid = Wkid::Of(vp);
  EXPECT_EQ(wkid.bytes(), Bytes(16, 1));
  EXPECT_EQ(wkid.Hex(), "0102030405060708090a0b0c0d0e0f10");
  EXPECT_EQ(wkid.Short(), vp.Short());
  EXPECT_TRUE(wkid == vp.wkid());
  EXPECT_TRUE(wkid == *Wkid::FromBytes(Bytes(16, 1)));
  EXPECT_FALSE(wkid == *Wkid::FromBytes(Bytes(16, 2)));
}

TEST(WkidTest, FromBytesRefusesAnotherSize) {
  for (size_t n : {0, 15, 17, 32}) {
    auto wkid = Wkid::FromBytes(Bytes(n, 1));
    ASSERT_FALSE(wkid.ok()) << n;
    EXPECT_EQ(ReasonOf(wkid.status()), "BAD_WKID");
  }
}

TEST(ShortIdTest, EmptyIsADashAndShortInputIsPrintedWhole) {
  EXPECT_EQ(ShortId(""), "-");
  EXPECT_EQ(ShortId(Bytes(3, 1)), "010203");
  EXPECT_EQ(ShortId(Bytes(32, 1)), "0102030405060708");
}

TEST(SameIdTest, ComparesLengthAndBytes) {
  EXPECT_TRUE(SameId("", ""));
  EXPECT_TRUE(SameId("abc", "abc"));
  EXPECT_FALSE(SameId("abc", "abd"));
  EXPECT_FALSE(SameId("abc", "abcd"));
}

}  // namespace
}  // namespace hsmsim::host

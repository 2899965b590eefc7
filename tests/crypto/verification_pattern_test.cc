// Verification patterns against values computed outside the code under test.
#include "crypto/verification_pattern.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>

#include "common/hex.h"
#include "tests/support/subprocess.h"

namespace hsmsim::crypto {
namespace {

std::array<uint8_t, 32> CountingKey() {
  std::array<uint8_t, 32> key;
  for (int i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(i);
  return key;
}

// The expected value was computed with the openssl command line:
//   python3 -c "import sys; sys.stdout.buffer.write(bytes([1])+bytes(range(32)))" > in.bin
//   openssl dgst -sha256 -hex in.bin
//   -> 491176b0f443c65a7c7d72df47d6cbc0d04e111fb5a619f60d3e77677ab6f919
// and the last 4 bytes (8 hex digits) zeroed, as the EP11 convention says.
TEST(VerificationPatternTest, FixedKeyMatchesOpensslCommandLine) {
  EXPECT_EQ(ToHex(ComputeVerificationPattern(CountingKey())),
            "491176b0f443c65a7c7d72df47d6cbc0d04e111fb5a619f60d3e776700000000");
}

TEST(VerificationPatternTest, WkidIsTheFirstSixteenBytes) {
  VerificationPattern vp = ComputeVerificationPattern(CountingKey());
  EXPECT_EQ(ToHex(WkidOf(vp)), "491176b0f443c65a7c7d72df47d6cbc0");
}

TEST(VerificationPatternTest, DiffersForDifferentKeys) {
  auto a = CountingKey();
  auto b = a;
  b[31] ^= 1;
  EXPECT_NE(ComputeVerificationPattern(a), ComputeVerificationPattern(b));
}

// Runs the openssl CLI at test time on a second key, when it is installed.
TEST(VerificationPatternTest, MatchesOpensslCliAtRunTime) {
  std::optional<std::string> openssl = test_support::FindProgram("openssl");
  if (!openssl.has_value()) {
    GTEST_SKIP() << "the openssl command line tool is not installed";
  }
  std::array<uint8_t, 32> key;
  for (int i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(0xa5 ^ (i * 13));
  std::string path = ::testing::TempDir() + "/vp_input.bin";
  {
    std::ofstream out(path, std::ios::binary);
    out.put(0x01);
    out.write(reinterpret_cast<const char*>(key.data()), key.size());
  }
  test_support::RunResult digest =
      test_support::RunProgram({*openssl, "dgst", "-sha256", "-r", path});
  ASSERT_EQ(digest.exit_code, 0) << test_support::Describe(digest);
  ASSERT_GE(digest.out.size(), 64u) << test_support::Describe(digest);
  std::string expected = digest.out.substr(0, 56) + "00000000";
  EXPECT_EQ(ToHex(ComputeVerificationPattern(key)), expected);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace hsmsim::crypto

// HardenProcess in this test process: non-dumpable afterwards, the secure
// heap initialized, and SecretBytes allocated in it (or, when it is full or
// too small, on the ordinary heap without failing).
#include "emulator/process_hardening.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/crypto.h>
#include <sys/prctl.h>

#include <vector>

#include "common/secret_bytes.h"

namespace hsmsim::emulator {
namespace {

TEST(ProcessHardeningTest, MarksNonDumpableAndSetsUpTheSecureHeap) {
  const HardeningResult result = HardenProcess();
  EXPECT_TRUE(result.non_dumpable);
  EXPECT_EQ(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
  ASSERT_NE(CRYPTO_secure_malloc_initialized(), 0);
  ASSERT_NE(result.secure_heap, SecureHeapState::kFailed);
  EXPECT_EQ(result.secure_heap_bytes, kSecureHeapBytes);
  EXPECT_THAT(result.Summary(), ::testing::HasSubstr("process marked non-dumpable"));
  if (result.secure_heap == SecureHeapState::kLocked) {
    EXPECT_TRUE(result.warnings.empty());
    EXPECT_THAT(result.Summary(),
                ::testing::HasSubstr("key material locked in memory (secure heap of 4194304"));
  } else {
    // mlock refused (RLIMIT_MEMLOCK): said clearly.
    ASSERT_EQ(result.warnings.size(), 1u);
    EXPECT_THAT(result.warnings[0], ::testing::HasSubstr("NOT locked in memory"));
    EXPECT_THAT(result.warnings[0], ::testing::HasSubstr("RLIMIT_MEMLOCK"));
  }

  // A second call does not set up a second heap and reports the first.
  const HardeningResult again = HardenProcess();
  EXPECT_EQ(again.secure_heap, result.secure_heap);
  EXPECT_EQ(again.secure_heap_bytes, result.secure_heap_bytes);
}

TEST(ProcessHardeningTest, SecretBytesLiveInTheSecureHeap) {
  HardenProcess();
  ASSERT_NE(CRYPTO_secure_malloc_initialized(), 0);
  const size_t used_before = CRYPTO_secure_used();
  {
    SecretBytes key(32, 0xab);
    EXPECT_NE(CRYPTO_secure_allocated(key.data()), 0);
    EXPECT_GT(CRYPTO_secure_used(), used_before);
    key.resize(5000, 0xcd);  // grows: the old block is wiped and freed
    EXPECT_NE(CRYPTO_secure_allocated(key.data()), 0);
    EXPECT_EQ(key[0], 0xab);
    EXPECT_EQ(key[4999], 0xcd);
  }
  EXPECT_EQ(CRYPTO_secure_used(), used_before);
}

TEST(ProcessHardeningTest, SecretBytesLargerThanTheSecureHeapFallBack) {
  HardenProcess();
  SecretBytes huge(2 * kSecureHeapBytes, 0x11);
  EXPECT_EQ(CRYPTO_secure_allocated(huge.data()), 0);
  EXPECT_EQ(huge[kSecureHeapBytes], 0x11);
  // Fill the heap up; the rest still allocates.
  std::vector<SecretBytes> many;
  for (size_t i = 0; i < 2 * kSecureHeapBytes / 4096; ++i) many.emplace_back(4096, 0x22);
  EXPECT_EQ(CRYPTO_secure_allocated(many.back().data()), 0);
  EXPECT_EQ(many.back()[4095], 0x22);
}

}  // namespace
}  // namespace hsmsim::emulator

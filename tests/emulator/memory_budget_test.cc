// The unit-wide memory budget against the real hsmsim-unit process: many
// connections sending large frames at once, and a client that sends and
// never reads its replies, keep the unit's peak resident memory (VmHWM)
// within its budget plus a margin, and the unit keeps serving. Every bound
// asserted is on memory, never on time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/emulator/prepared_unit.h"
#include "tests/emulator/unit_harness.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::emulator::testing::Connection;
using ::hsmsim::emulator::testing::GetInfo;
using ::hsmsim::emulator::testing::GetInfoRequest;
using ::hsmsim::emulator::testing::PaddedGetInfoFrame;
using ::hsmsim::emulator::testing::PrepareRotationReadyUnit;
using ::hsmsim::emulator::testing::UnitProcess;
using ::hsmsim::test_support::TempDir;
using ::testing::HasSubstr;
using namespace std::chrono_literals;  // NOLINT

// Sanitizers keep freed memory in quarantine and add shadow memory: the
// resident size then says nothing about the budget, so only the behaviour is
// checked under them.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kResidentSizeIsMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool kResidentSizeIsMeaningful = false;
#else
constexpr bool kResidentSizeIsMeaningful = true;
#endif
#else
constexpr bool kResidentSizeIsMeaningful = true;
#endif

constexpr size_t kMiB = size_t{1} << 20;
// What the unit may use above its budget: one frame being parsed (the
// request's copy next to its read buffer, on the single connection thread),
// up to two frames' worth the allocator keeps for reuse, and a fixed slack
// for protobuf and the allocator. glibc raises its mmap threshold to the
// size of a freed mmapped block (a frame) and its trim threshold to twice
// that (mallopt(3), M_MMAP_THRESHOLD "dynamic adjustment"), so up to two
// frames of freed heap stay resident after the first large frame. Measured:
// 64 MiB budget, 16 MiB frames: 97 MiB of growth on an idle machine, up to
// 113 MiB under load (more frames freed before the heap is trimmed).
constexpr size_t kFixedSlack = 8 * kMiB;
size_t AllowedGrowth(size_t budget, size_t max_frame) {
  return budget + 3 * max_frame + kFixedSlack;
}

class MemoryBudgetTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> args) {
    unit_ = std::make_unique<UnitProcess>(dir_.Join("state"), dir_.path(), std::move(args));
    auto port = unit_->WaitForPort();
    ASSERT_TRUE(port.has_value()) << unit_->Stderr();
    port_ = *port;
    auto info = GetInfo(port_);
    ASSERT_TRUE(info.has_value());
    before_ = *info;
    baseline_kb_ = unit_->StatusKilobytes("VmHWM");
    ASSERT_GT(baseline_kb_, 0);
  }

  // ExpectPeakWithin: the unit's peak resident memory grew by at most
  // AllowedGrowth(budget, max_frame) since it started serving.
  void ExpectPeakWithin(size_t budget, size_t max_frame) {
    const long peak_kb = unit_->StatusKilobytes("VmHWM");
    ASSERT_GT(peak_kb, 0);
    RecordProperty("peak_growth_kb", static_cast<int>(peak_kb - baseline_kb_));
    if (!kResidentSizeIsMeaningful) return;
    EXPECT_LE(peak_kb - baseline_kb_, static_cast<long>(AllowedGrowth(budget, max_frame) / 1024))
        << "baseline " << baseline_kb_ << " kB, peak " << peak_kb << " kB";
  }

  // ExpectServingUnchangedAndNothingHeld: a new connection is served and the state is
  // what it was; after SIGTERM the unit reports no budget held.
  void ExpectServingUnchangedAndNothingHeld() {
    auto info = GetInfo(port_);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->SerializeAsString(), before_.SerializeAsString());
    unit_->Signal(SIGTERM);
    auto status = unit_->WaitForExit();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << unit_->Stderr();
    EXPECT_THAT(unit_->Stderr(), HasSubstr("stopped (0 bytes of the memory budget still held)"));
  }

  TempDir dir_;
  std::unique_ptr<UnitProcess> unit_;
  uint16_t port_ = 0;
  long baseline_kb_ = 0;
  v1::GetInfoResponse before_;
};

TEST_F(MemoryBudgetTest, TwentyFourLargeFramesAtOnceStayWithinTheBudget) {
  const size_t budget = 64 * kMiB;
  const size_t max_frame = 16 * kMiB;
  ASSERT_NO_FATAL_FAILURE(Start({"--memory-budget-bytes", std::to_string(budget),
                                 "--max-frame-bytes", std::to_string(max_frame)}));
  // Without the budget, 24 such frames take the unit to about 280 MiB.
  constexpr int kConnections = 24;
  const std::string frame = PaddedGetInfoFrame(7, max_frame);  // body just under the maximum
  std::atomic<int> served{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.emplace_back([&] {
      Connection conn(port_);
      if (!conn.connected() || !conn.SendBytes(frame)) return;
      auto response = conn.Receive();
      if (!response.has_value()) return;
      if (response->status().code() == 0 && response->id() == 7) {
        ++served;
      } else if (response->status().reason() == "MEMORY_BUDGET_EXHAUSTED") {
        ++refused;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(served + refused, kConnections);
  EXPECT_GT(served, 0);
  ExpectPeakWithin(budget, max_frame);
  ExpectServingUnchangedAndNothingHeld();
}

TEST_F(MemoryBudgetTest, AClientThatNeverReadsItsRepliesCannotGrowTheUnit) {
  // Large replies: re-encryption batches return every blob re-encrypted.
  auto prepared = PrepareRotationReadyUnit(dir_.Join("state"), 1000);
  const size_t budget = 32 * kMiB;
  const size_t max_frame = 4 * kMiB;
  ASSERT_NO_FATAL_FAILURE(
      Start({"--memory-budget-bytes", std::to_string(budget), "--max-frame-bytes",
             std::to_string(max_frame), "--read-timeout-ms", "3000"}));
  v1::Request batch;
  batch.set_id(50);
  for (int copy = 0; copy < 10; ++copy) {
    for (const std::string& blob : prepared.blobs) batch.mutable_reencrypt_batch()->add_blobs(blob);
  }
  const std::string frame = wire::EncodeFrame(batch);
  ASSERT_GT(frame.size(), 500'000u);

  // 300 batches (over 250 MB of replies), never reading one reply.
  Connection greedy(port_);
  greedy.SetSendTimeout(5s);
  std::atomic<int> sent{0};
  std::thread sender([&] {
    for (int i = 0; i < 300; ++i) {
      if (!greedy.SendBytes(frame)) return;
      ++sent;
    }
  });
  // Meanwhile another client is served, again and again.
  for (int i = 0; i < 20; ++i) {
    auto info = GetInfo(port_);
    ASSERT_TRUE(info.has_value()) << "round " << i;
    std::this_thread::sleep_for(100ms);
  }
  sender.join();
  EXPECT_LT(sent, 300) << "the unit kept reading a client that never reads";
  ExpectPeakWithin(budget, max_frame);
  // The greedy connection is closed: its replies were not taken, or its
  // next frame got no memory.
  EXPECT_THAT(unit_->Stderr(), ::testing::AnyOf(HasSubstr("not taken within 3000 ms"),
                                                HasSubstr("got no memory within 3000 ms")));
  ExpectServingUnchangedAndNothingHeld();
}

TEST_F(MemoryBudgetTest, ManyTinyRequestsNeverReadCannotGrowTheUnit) {
  // Tiny requests: the byte budget sees 5 bytes per GetInfo, but each one
  // read costs a coroutine, a worker task and a reply of a few hundred
  // bytes. Before the per-connection cap, 40 MB of them took the unit past
  // a gigabyte.
  ASSERT_NO_FATAL_FAILURE(Start({"--read-timeout-ms", "3000"}));
  std::string chunk;
  for (uint64_t id = 1; chunk.size() < kMiB; ++id) {
    chunk += wire::EncodeFrame(GetInfoRequest(100 + id % 100));
  }
  constexpr int kChunks = 40;  // about 6 million requests
  Connection greedy(port_);
  greedy.SetSendTimeout(5s);
  std::atomic<int> sent{0};
  std::thread sender([&] {
    for (int i = 0; i < kChunks; ++i) {
      if (!greedy.SendBytes(chunk)) return;
      ++sent;
    }
  });
  // Meanwhile another client is served, again and again.
  for (int i = 0; i < 20; ++i) {
    auto info = GetInfo(port_);
    ASSERT_TRUE(info.has_value()) << "round " << i;
    std::this_thread::sleep_for(100ms);
  }
  sender.join();
  EXPECT_LT(sent, kChunks) << "the unit kept reading a client that never reads";
  // The unit's budget is the default 512 MiB; a capped connection holds a
  // few hundred small replies, far below it.
  ASSERT_NO_FATAL_FAILURE(ExpectPeakWithin(16 * kMiB, 0));
  EXPECT_THAT(unit_->Stderr(), HasSubstr("not taken within 3000 ms"));
  ExpectServingUnchangedAndNothingHeld();
}

TEST(MemoryBudgetFlagsTest, UnusableValuesAreUsageErrors) {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--max-frame-bytes", "4294967295"},
       "--max-frame-bytes 4294967295 is outside 1..268435456 (256 MiB)"},
      {{"--max-frame-bytes", "0"}, "--max-frame-bytes 0 is outside 1..268435456"},
      {{"--memory-budget-bytes", "100000000"},
       "--memory-budget-bytes 100000000 is less than twice --max-frame-bytes 67108864: it must "
       "be at least 134217728"},
      {{"--max-frame-bytes", "1000", "--memory-budget-bytes", "1999"},
       "--memory-budget-bytes 1999 is less than twice --max-frame-bytes 1000"},
  };
  for (const Case& c : cases) {
    UnitProcess unit(dir.Join("state"), dir.path(), c.args);
    auto status = unit.WaitForExit();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << unit.Stderr();
    EXPECT_THAT(unit.Stderr(), HasSubstr(c.message));
  }
  // Exactly twice is enough.
  UnitProcess unit(dir.Join("state"), dir.path(),
                   {"--max-frame-bytes", "1000", "--memory-budget-bytes", "2000"});
  EXPECT_TRUE(unit.WaitForPort().has_value()) << unit.Stderr();
}

}  // namespace
}  // namespace hsmsim::emulator

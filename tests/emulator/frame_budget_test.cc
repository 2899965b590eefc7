// FrameBudget's accounting, alone and as the sessions of an in-process
// UnitServer use it: whatever clients do and however their connections end,
// every byte reserved is given back.
#include "emulator/frame_budget.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "crypto/entropy.h"
#include "emulator/request_dispatcher.h"
#include "emulator/state_file_system.h"
#include "emulator/state_store.h"
#include "emulator/unit_server.h"
#include "tests/emulator/unit_harness.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::emulator::testing::Connection;
using ::hsmsim::emulator::testing::GetInfoRequest;
using ::hsmsim::emulator::testing::PaddedGetInfoFrame;
using ::hsmsim::test_support::TempDir;
using namespace std::chrono_literals;  // NOLINT

TEST(FrameBudgetTest, ReservesWithinTheLimitOnly) {
  FrameBudget budget(100);
  EXPECT_EQ(budget.limit(), 100u);
  EXPECT_EQ(budget.connection_share(), 100u / kConnectionShareDivisor);
  EXPECT_TRUE(budget.TryReserve(60));
  EXPECT_FALSE(budget.TryReserve(41));
  EXPECT_EQ(budget.used(), 60u);
  EXPECT_TRUE(budget.TryReserve(40));
  EXPECT_FALSE(budget.TryReserve(1));
  budget.Release(100);
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_FALSE(budget.TryReserve(101));
  EXPECT_FALSE(budget.TryReserve(SIZE_MAX));
  EXPECT_EQ(budget.used(), 0u);
}

TEST(FrameBudgetTest, AddGoesPastTheLimitAndBlocksReservations) {
  FrameBudget budget(100);
  budget.Add(150);
  EXPECT_EQ(budget.used(), 150u);
  EXPECT_FALSE(budget.TryReserve(1));
  budget.Release(60);
  EXPECT_TRUE(budget.TryReserve(10));
  budget.Release(100);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(FrameBudgetTest, ConcurrentReservationsNeverPassTheLimit) {
  FrameBudget budget(1000);
  std::atomic<size_t> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (budget.TryReserve(7)) {
          size_t now = budget.used();
          size_t seen = peak.load();
          while (now > seen && !peak.compare_exchange_weak(seen, now)) {
          }
          budget.Release(7);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 1000u);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(FrameBudgetDeathTest, ReleasingMoreThanHeldIsABug) {
  FrameBudget budget(100);
  ASSERT_TRUE(budget.TryReserve(10));
  EXPECT_DEATH(budget.Release(11), "CHECK failed");
}

// An in-process unit on an ephemeral port, served by one io thread as in
// hsmsim-unit.
class InProcessUnit {
 public:
  InProcessUnit(const std::string& dir, size_t budget_bytes, size_t max_frame_bytes,
                std::chrono::milliseconds read_timeout)
      : budget_(budget_bytes) {
    auto store = StateStore::Open(dir, PosixStateFileSystemInstance(), entropy_);
    HSMSIM_CHECK(store.ok());
    store_ = std::move(store).value();
    auto unit = LoadOrCreateUnit(*store_, entropy_);
    HSMSIM_CHECK(unit.ok());
    dispatcher_.emplace(std::move(unit).value(), *store_);
    server_.emplace(io_, pool_, *dispatcher_, budget_,
                    SessionConfig{max_frame_bytes, read_timeout});
    auto endpoint = server_->Listen("127.0.0.1", 0);
    HSMSIM_CHECK(endpoint.ok());
    port_ = endpoint->port();
    server_->Start();
    io_thread_ = std::thread([this] { io_.run(); });
  }
  ~InProcessUnit() { Stop(); }

  void Stop() {
    if (!io_thread_.joinable()) return;
    server_->Stop();
    io_thread_.join();
    pool_.join();
  }

  // WaitForBudget waits until `done(bytes in use)` holds or the limit
  // passes; returns the bytes in use then.
  template <typename Done>
  size_t WaitForBudget(Done done) {
    auto deadline = std::chrono::steady_clock::now() + testing::kWaitLimit;
    while (!done(budget_.used()) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    return budget_.used();
  }
  size_t WaitForNoBudgetUsed() {
    return WaitForBudget([](size_t used) { return used == 0; });
  }

  uint16_t port() const { return port_; }
  FrameBudget& budget() { return budget_; }

 private:
  crypto::SeededEntropy entropy_{3};
  FrameBudget budget_;
  std::unique_ptr<StateStore> store_;
  std::optional<RequestDispatcher> dispatcher_;
  boost::asio::io_context io_{1};
  boost::asio::thread_pool pool_{2};
  std::optional<UnitServer> server_;
  std::thread io_thread_;
  uint16_t port_ = 0;
};

TEST(FrameBudgetAccountingTest, EveryCloseGivesEveryByteBack) {
  TempDir dir;
  InProcessUnit unit(dir.Join("state"), 8 << 20, 1 << 20, 1000ms);
  const size_t big = 900 * 1024;
  {
    // Served requests, small and large, then a clean close.
    Connection conn(unit.port());
    ASSERT_TRUE(conn.Send(GetInfoRequest(1)));
    ASSERT_TRUE(conn.SendBytes(PaddedGetInfoFrame(2, big)));
    for (int i = 0; i < 2; ++i) {
      auto response = conn.Receive();
      ASSERT_TRUE(response.has_value());
      EXPECT_EQ(response->status().code(), 0);
    }
    EXPECT_EQ(unit.WaitForNoBudgetUsed(), 0u);
  }
  {
    // A frame too large, a malformed one.
    Connection too_large(unit.port());
    ASSERT_TRUE(too_large.SendBytes(std::string("\xff\xff\xff\x7f", 4)));
    EXPECT_EQ(too_large.Receive()->status().reason(), "FRAME_TOO_LARGE");
    Connection malformed(unit.port());
    ASSERT_TRUE(malformed.SendBytes(std::string("\x02\xff\xff", 3)));
    EXPECT_EQ(malformed.Receive()->status().reason(), "MALFORMED_FRAME");
  }
  {
    // Closed inside a reserved frame; a frame left to time out.
    Connection cut(unit.port());
    ASSERT_TRUE(cut.SendBytes(PaddedGetInfoFrame(3, big).substr(0, 1000)));
    Connection stalled(unit.port());
    ASSERT_TRUE(stalled.SendBytes(PaddedGetInfoFrame(4, big).substr(0, 1000)));
    EXPECT_GE(unit.WaitForBudget([&](size_t used) { return used >= 2 * big; }), 2 * big);
    cut.ShutdownWrite();
    EXPECT_TRUE(stalled.WaitForClose());  // the read timeout
  }
  {
    // Many pipelined requests whose replies are never read; then the
    // client goes away.
    Connection greedy(unit.port());
    for (uint64_t id = 10; id < 40; ++id) {
      ASSERT_TRUE(greedy.SendBytes(PaddedGetInfoFrame(id, 200 * 1024)));
    }
  }
  EXPECT_EQ(unit.WaitForNoBudgetUsed(), 0u);
  unit.Stop();
  EXPECT_EQ(unit.budget().used(), 0u);
}

TEST(FrameBudgetAccountingTest, AFrameThatGetsNoBudgetIsRefusedAndOthersAreServed) {
  TempDir dir;
  InProcessUnit unit(dir.Join("state"), 2 << 20, 1 << 20, 300ms);
  // Someone else holds all but 1 KiB of the budget.
  const size_t taken = (2 << 20) - 1024;
  ASSERT_TRUE(unit.budget().TryReserve(taken));
  Connection refused_conn(unit.port());
  ASSERT_TRUE(refused_conn.SendBytes(PaddedGetInfoFrame(3, 100 * 1024).substr(0, 100)));
  auto refused = refused_conn.Receive();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->id(), 0u);
  EXPECT_EQ(refused->status().code(), 8);  // RESOURCE_EXHAUSTED
  EXPECT_EQ(refused->status().reason(), "MEMORY_BUDGET_EXHAUSTED");
  EXPECT_NE(refused->status().message().find("--memory-budget-bytes"), std::string::npos)
      << refused->status().message();
  EXPECT_TRUE(refused_conn.WaitForClose());
  // A frame that fits in what is left is served meanwhile.
  Connection small(unit.port());
  ASSERT_TRUE(small.Send(GetInfoRequest(4)));
  auto served = small.Receive();
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(served->status().code(), 0);
  // A frame waiting for memory is read once memory is released.
  Connection waiting(unit.port());
  ASSERT_TRUE(waiting.SendBytes(PaddedGetInfoFrame(5, 100 * 1024)));
  std::this_thread::sleep_for(50ms);
  unit.budget().Release(taken);
  auto late = waiting.Receive();
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->id(), 5u);
  EXPECT_EQ(late->status().code(), 0);
  EXPECT_EQ(unit.WaitForNoBudgetUsed(), 0u);
}

}  // namespace
}  // namespace hsmsim::emulator

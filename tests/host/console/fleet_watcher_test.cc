// Tests of FleetWatcher: readings reach the sink, Refresh asks for one at
// once, Stop ends the thread.
#include "host/console/fleet_watcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace hsmsim::console {
namespace {

using json = nlohmann::json;

// Readings counts the sink's calls and lets a test wait for the n-th.
class Readings {
 public:
  void Add(const json& reading) {
    std::lock_guard<std::mutex> lock(mu_);
    last_ = reading;
    ++count_;
    cv_.notify_all();
  }
  // WaitFor returns whether `n` readings arrived within a generous bound.
  bool WaitFor(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return count_ >= n; });
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  json last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
  json last_;
};

TEST(FleetWatcherTest, ReadsEveryPeriodAndHandsEachReadingToTheSink) {
  Readings readings;
  int n = 0;  // the watcher's thread only
  FleetWatcher watcher(
      [&n] {
        return json{{"reading", ++n}};
      },
      [&readings](json r) { readings.Add(r); }, std::chrono::milliseconds(10));
  watcher.Start();
  ASSERT_TRUE(readings.WaitFor(3));
  watcher.Stop();
  const int after_stop = readings.count();
  EXPECT_EQ(readings.last()["reading"], after_stop);
  watcher.Stop();  // a second Stop does nothing
  EXPECT_EQ(readings.count(), after_stop);
}

TEST(FleetWatcherTest, RefreshReadsAtOnceWhateverThePeriod) {
  Readings readings;
  FleetWatcher watcher(
      [] {
        return json{{"ok", true}};
      },
      [&readings](json r) { readings.Add(r); }, std::chrono::hours(1));
  watcher.Start();
  watcher.Refresh();
  EXPECT_TRUE(readings.WaitFor(1)) << "Refresh did not wake the watcher";
  watcher.Refresh();
  EXPECT_TRUE(readings.WaitFor(2));
  // The destructor stops the hour-long wait at once.
}

}  // namespace
}  // namespace hsmsim::console

#include "host/console/fleet_watcher.h"

#include <utility>

namespace hsmsim::console {

FleetWatcher::FleetWatcher(Reader read, Sink sink, std::chrono::milliseconds period)
    : read_(std::move(read)), sink_(std::move(sink)), period_(period) {}

FleetWatcher::~FleetWatcher() { Stop(); }

void FleetWatcher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void FleetWatcher::Refresh() {
  std::lock_guard<std::mutex> lock(mu_);
  refresh_ = true;
  wake_.notify_all();
}

void FleetWatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void FleetWatcher::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, period_, [this] { return stop_ || refresh_; });
      if (stop_) return;
      refresh_ = false;
    }
    sink_(read_());
  }
}

}  // namespace hsmsim::console

// FleetWatcher: reads the fleet again and again on a thread of its own, so
// that hsmctl console sees changes made by anyone (another hsmctl, a unit
// that died) and pushes them to the page.
#ifndef HSMSIM_HOST_CONSOLE_FLEET_WATCHER_H_
#define HSMSIM_HOST_CONSOLE_FLEET_WATCHER_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace hsmsim::console {

// FleetWatcher calls `read` every `period` (and at once after Refresh) and
// hands each reading to `sink`, both on its own thread. `read` must return
// (a unit that does not answer is part of the reading, not a hang: its
// client's timeout bounds it). Start once; Stop (or the destructor) waits
// for a reading under way to end. Refresh and Stop are thread-safe.
class FleetWatcher {
 public:
  using Reader = std::function<nlohmann::json()>;
  using Sink = std::function<void(nlohmann::json reading)>;

  FleetWatcher(Reader read, Sink sink, std::chrono::milliseconds period);
  ~FleetWatcher();
  FleetWatcher(const FleetWatcher&) = delete;
  FleetWatcher& operator=(const FleetWatcher&) = delete;

  void Start();
  void Refresh();
  void Stop();

 private:
  void Loop();

  const Reader read_;
  const Sink sink_;
  const std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;     // guarded by mu_
  bool refresh_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace hsmsim::console

#endif  // HSMSIM_HOST_CONSOLE_FLEET_WATCHER_H_

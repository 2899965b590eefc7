// RewrapPrefetcher: the keys a rotation still has to re-encrypt, read from
// the keystore on a thread of their own, ahead of the rotation engine, so
// that reading the keystore overlaps the network fan-out and the engine's
// writes (issue "Rotation at the speed of the keystore", item 3).
//
// Thread-safety: Take is called from one thread (the engine's); the
// prefetcher's own thread is the only user of its keystore connection.
#ifndef HSMSIM_HOST_REWRAP_PREFETCH_H_
#define HSMSIM_HOST_REWRAP_PREFETCH_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "host/keystore.h"

namespace hsmsim::host {

class RewrapPrefetcher {
 public:
  // Starts reading at once: pages of `page_keys` (>= 1) keys from `reader`
  // (a connection of its own to the rotation's keystore, from
  // Keystore::Reopen; owned), with Keystore::ReadToReencrypt(`source_wkid`,
  // `target_wkid`: 16 bytes each; ids and blobs only) in key order, at
  // most `depth` (>= 1) pages ahead of Take. Each page is its own read
  // snapshot, as when the engine reads them itself.
  RewrapPrefetcher(std::unique_ptr<Keystore> reader, std::string source_wkid,
                   std::string target_wkid, size_t page_keys, size_t depth);
  // Stops the thread (a read in progress finishes first) and waits for it.
  ~RewrapPrefetcher();
  RewrapPrefetcher(const RewrapPrefetcher&) = delete;
  RewrapPrefetcher& operator=(const RewrapPrefetcher&) = delete;

  // Take returns the next keys, at most `limit` (>= 1), in key order and
  // each once; empty when every key was read. Waits for the thread when it
  // has nothing read yet. The reader's error stops it, and Take returns
  // that error from then on (keys read before it are returned first).
  absl::StatusOr<std::vector<StoredKey>> Take(size_t limit);

 private:
  void Run();

  const std::unique_ptr<Keystore> reader_;
  const std::string source_wkid_;
  const std::string target_wkid_;
  const size_t page_keys_;
  const size_t depth_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<std::vector<StoredKey>> pages_;  // read, not taken yet
  bool finished_ = false;                     // the thread read the last page or failed
  absl::Status error_;                        // why it failed
  bool stop_ = false;                         // the destructor asks it to end

  // The page Take is handing out, and its next key (engine's thread only).
  std::vector<StoredKey> current_;
  size_t current_next_ = 0;

  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_REWRAP_PREFETCH_H_

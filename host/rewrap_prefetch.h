// RewrapPrefetcher: the keys a rotation still has to re-encrypt, read from
// the keystore on a thread of their own, ahead of the rotation engine, so
// that reading the keystore overlaps the network fan-out and the engine's
// writes (issue "Rotation at the speed of the keystore", item 3).
//
// Thread-safety: Take is called from one thread (the engine's); the
// prefetcher's own thread is the only user of its keystore connection.
#ifndef HSMSIM_HOST_REWRAP_PREFETCH_H_
#define HSMSIM_HOST_REWRAP_PREFETCH_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "host/keystore.h"

namespace hsmsim::host {

// How a prefetcher of one of several rotation workers reads: by ranges it
// claims (RewrapClaims) rather than from the first key to the last.
struct RewrapClaiming {
  std::unique_ptr<RewrapClaims> claims;  // a connection of its own
  RotationJournal journal;               // the rotation the ranges are of
  std::string worker;                    // recorded with each finished range
  // How long to wait before claiming again while other workers hold every
  // unfinished range (a worker that dies leaves its range free).
  std::chrono::milliseconds retry = std::chrono::milliseconds(100);
  // Called on the prefetcher's thread before each such wait; a non-OK
  // status (the operator's interrupt) ends reading with that error. May be
  // empty.
  std::function<absl::Status()> before_wait;
};

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
  // As above, but reading only the ranges it claims (RewrapClaiming), each
  // with Keystore::ReadToReencryptIn, until no range is left unfinished; a
  // range is finished when the next one is claimed, that is once its keys
  // were read. The claims' error stops the prefetcher as the reader's
  // does.
  RewrapPrefetcher(std::unique_ptr<Keystore> reader, std::string source_wkid,
                   std::string target_wkid, size_t page_keys, size_t depth,
                   RewrapClaiming claiming);
  // Stops the thread (a read in progress finishes first) and waits for it.
  ~RewrapPrefetcher();
  RewrapPrefetcher(const RewrapPrefetcher&) = delete;
  RewrapPrefetcher& operator=(const RewrapPrefetcher&) = delete;

  // Take returns the next keys, at most `limit` (>= 1), in key order and
  // each once; empty when every key was read. Waits for the thread when it
  // has nothing read yet. The reader's error stops it, and Take returns
  // that error from then on (keys read before it are returned first).
  absl::StatusOr<std::vector<StoredKey>> Take(size_t limit);

  // Ranges this prefetcher claimed so far (any thread).
  int64_t ranges_claimed() const { return ranges_claimed_.load(); }

 private:
  void Run();
  // ReadClaimedRanges reads the ranges it claims until none is left
  // unfinished. Returns false when the prefetcher ended (stopped, or an
  // error, which it recorded).
  bool ReadClaimedRanges();
  // ReadFrom reads pages of keys with id > `after_id` and <= `last_id`
  // until none is left. Returns false as ReadClaimedRanges.
  bool ReadFrom(int64_t after_id, int64_t last_id);
  // WaitForRoom waits until fewer than depth_ pages wait; false when the
  // destructor asks the thread to end.
  bool WaitForRoom();
  // End records the end of reading (with `error` when not OK).
  void End(absl::Status error);

  const std::unique_ptr<Keystore> reader_;
  const std::string source_wkid_;
  const std::string target_wkid_;
  const size_t page_keys_;
  const size_t depth_;
  std::optional<RewrapClaiming> claiming_;
  std::atomic<int64_t> ranges_claimed_{0};

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

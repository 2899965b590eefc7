// StoreThread: batches handed over by one thread and stored, in the order
// given, on a thread of its own, so that keystore writes overlap the work
// that makes the batches (the network fan-out of a rotation or of key
// creation). PendingWriter (re-encrypted blobs) and RunPlan in
// host/key_creation.cc (new keys) are its two uses.
//
// Thread-safety: Push, Error and Finish are called from one thread (the
// producer's); `store` runs on the StoreThread's own thread only.
#ifndef HSMSIM_HOST_STORE_THREAD_H_
#define HSMSIM_HOST_STORE_THREAD_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "common/check.h"

namespace hsmsim::host {

template <typename Batch>
class StoreThread {
 public:
  // Stores one batch; a non-OK status stops the thread right there: nothing
  // more is stored (the batches still queued are discarded) and the status
  // is the thread's error.
  using Store = std::function<absl::Status(Batch& batch)>;

  // Starts the thread. At most `depth` (0 counts as 1) batches wait in the
  // queue; `store` is called for each batch on the thread.
  StoreThread(size_t depth, Store store)
      : depth_(depth == 0 ? 1 : depth), store_(std::move(store)), thread_([this] { Run(); }) {}
  // Finish, when it was not called.
  ~StoreThread() { (void)Finish(); }
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  // Push queues `batch`, waiting while `depth` batches wait already.
  // Returns the thread's error once it stopped (the batch is not queued
  // then), else OK. REQUIRES: Finish was not called (checked: the batch
  // would be lost).
  absl::Status Push(Batch batch) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [this] { return queue_.size() < depth_ || !error_.ok() || joined_; });
    if (!error_.ok()) return error_;
    HSMSIM_CHECK(!joined_);
    queue_.push_back(std::move(batch));
    changed_.notify_all();
    return absl::OkStatus();
  }

  // Error returns the thread's error so far, without waiting; OK while it
  // runs.
  absl::Status Error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

  // Finish stores every queued batch (unless the thread stopped), ends the
  // thread and returns its error, or OK. Later calls return the same.
  absl::Status Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (joined_) return error_;
      closing_ = true;
    }
    changed_.notify_all();
    thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    joined_ = true;
    return error_;
  }

 private:
  void Run() {
    while (true) {
      Batch batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        changed_.wait(lock, [this] { return !queue_.empty() || closing_ || !error_.ok(); });
        if (!error_.ok() || queue_.empty()) return;  // stopped, or closing with nothing left
        batch = std::move(queue_.front());
        queue_.pop_front();
      }
      changed_.notify_all();  // room in the queue
      absl::Status s = store_(batch);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = s;
        queue_.clear();
        changed_.notify_all();
        return;
      }
    }
  }

  const size_t depth_;
  const Store store_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Batch> queue_;
  bool closing_ = false;  // Finish: store what is queued, then end
  absl::Status error_;    // the first error of `store_`
  bool joined_ = false;

  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_STORE_THREAD_H_

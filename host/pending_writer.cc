#include "host/pending_writer.h"

#include <utility>

#include "common/check.h"

namespace hsmsim::host {

PendingWriter::PendingWriter(Keystore& keystore, int64_t keys_done, size_t depth, AfterStore after)
    : keystore_(keystore),
      depth_(depth == 0 ? 1 : depth),
      after_(std::move(after)),
      keys_done_(keys_done),
      thread_([this] { Run(); }) {}

PendingWriter::~PendingWriter() { (void)Finish(); }

void PendingWriter::Run() {
  while (true) {
    std::vector<RewrappedKey> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [this] { return !queue_.empty() || closing_ || !error_.ok(); });
      if (!error_.ok() || queue_.empty()) return;  // stopped, or closing with nothing left
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    changed_.notify_all();  // room in the queue
    absl::Status s = keystore_.StorePending(batch);
    if (s.ok()) {
      keys_stored_ += static_cast<int64_t>(batch.size());
      const int64_t done = keys_done_ += static_cast<int64_t>(batch.size());
      if (after_) s = after_(done);
    }
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = s;
      queue_.clear();
      changed_.notify_all();
      return;
    }
  }
}

absl::Status PendingWriter::Push(std::vector<RewrappedKey> batch) {
  if (batch.empty()) return Error();
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [this] { return queue_.size() < depth_ || !error_.ok() || joined_; });
  if (!error_.ok()) return error_;
  HSMSIM_CHECK(!joined_);  // a batch handed over after Finish would be lost
  queue_.push_back(std::move(batch));
  changed_.notify_all();
  return absl::OkStatus();
}

absl::Status PendingWriter::Error() {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

absl::Status PendingWriter::Finish() {
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

}  // namespace hsmsim::host

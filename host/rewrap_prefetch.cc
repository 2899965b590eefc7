#include "host/rewrap_prefetch.h"

#include <utility>

namespace hsmsim::host {

RewrapPrefetcher::RewrapPrefetcher(std::unique_ptr<Keystore> reader, std::string source_wkid,
                                   std::string target_wkid, size_t page_keys, size_t depth)
    : reader_(std::move(reader)),
      source_wkid_(std::move(source_wkid)),
      target_wkid_(std::move(target_wkid)),
      page_keys_(page_keys == 0 ? 1 : page_keys),
      depth_(depth == 0 ? 1 : depth),
      thread_([this] { Run(); }) {}

RewrapPrefetcher::~RewrapPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void RewrapPrefetcher::Run() {
  int64_t after_id = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [this] { return stop_ || pages_.size() < depth_; });
      if (stop_) return;
    }
    absl::StatusOr<std::vector<StoredKey>> page =
        reader_->ReadToReencrypt(after_id, page_keys_, source_wkid_, target_wkid_);
    std::lock_guard<std::mutex> lock(mu_);
    if (!page.ok() || page->empty()) {
      if (!page.ok()) error_ = page.status();
      finished_ = true;
      changed_.notify_all();
      return;
    }
    after_id = page->back().id;
    pages_.push_back(std::move(*page));
    changed_.notify_all();
  }
}

absl::StatusOr<std::vector<StoredKey>> RewrapPrefetcher::Take(size_t limit) {
  if (limit == 0) limit = 1;
  std::vector<StoredKey> out;
  while (out.size() < limit) {
    if (current_next_ == current_.size()) {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [this] { return !pages_.empty() || finished_; });
      if (pages_.empty()) {
        // Every page read was handed out: the end, or the reader's error
        // (after the keys read before it).
        if (!error_.ok() && out.empty()) return error_;
        break;
      }
      current_ = std::move(pages_.front());
      pages_.pop_front();
      current_next_ = 0;
      changed_.notify_all();
    }
    while (out.size() < limit && current_next_ < current_.size()) {
      out.push_back(std::move(current_[current_next_++]));
    }
  }
  return out;
}

}  // namespace hsmsim::host

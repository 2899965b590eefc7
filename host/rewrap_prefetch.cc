#include "host/rewrap_prefetch.h"

#include <limits>
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

RewrapPrefetcher::RewrapPrefetcher(std::unique_ptr<Keystore> reader, std::string source_wkid,
                                   std::string target_wkid, size_t page_keys, size_t depth,
                                   RewrapClaiming claiming)
    : reader_(std::move(reader)),
      source_wkid_(std::move(source_wkid)),
      target_wkid_(std::move(target_wkid)),
      page_keys_(page_keys == 0 ? 1 : page_keys),
      depth_(depth == 0 ? 1 : depth),
      claiming_(std::move(claiming)),
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
  if (claiming_.has_value()) {
    const bool more = ReadClaimedRanges();
    // A range claimed when the thread stopped goes back to the others.
    claiming_->claims->Release();
    if (more) End(absl::OkStatus());
    return;
  }
  if (ReadFrom(0, std::numeric_limits<int64_t>::max())) End(absl::OkStatus());
}

bool RewrapPrefetcher::ReadClaimedRanges() {
  while (true) {
    int64_t held_elsewhere = 0;
    absl::StatusOr<std::optional<KeyRange>> range =
        claiming_->claims->Claim(claiming_->journal, claiming_->worker, &held_elsewhere);
    if (!range.ok()) {
      End(range.status());
      return false;
    }
    if (range->has_value()) {
      ranges_claimed_.fetch_add(1);
      if (!ReadFrom((*range)->first_id - 1, (*range)->last_id)) return false;
      continue;
    }
    if (held_elsewhere == 0) return true;
    // Other workers hold every unfinished range: wait, then look again (a
    // worker that died leaves its range free).
    if (claiming_->before_wait) {
      if (absl::Status go_on = claiming_->before_wait(); !go_on.ok()) {
        End(go_on);
        return false;
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (changed_.wait_for(lock, claiming_->retry, [this] { return stop_; })) return false;
  }
}

bool RewrapPrefetcher::ReadFrom(int64_t after_id, int64_t last_id) {
  while (true) {
    if (!WaitForRoom()) return false;
    absl::StatusOr<std::vector<StoredKey>> page =
        claiming_.has_value()
            ? reader_->ReadToReencryptIn(after_id, last_id, page_keys_, source_wkid_, target_wkid_)
            : reader_->ReadToReencrypt(after_id, page_keys_, source_wkid_, target_wkid_);
    if (!page.ok()) {
      End(page.status());
      return false;
    }
    if (page->empty()) return true;
    after_id = page->back().id;
    std::lock_guard<std::mutex> lock(mu_);
    pages_.push_back(std::move(*page));
    changed_.notify_all();
  }
}

bool RewrapPrefetcher::WaitForRoom() {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [this] { return stop_ || pages_.size() < depth_; });
  return !stop_;
}

void RewrapPrefetcher::End(absl::Status error) {
  std::lock_guard<std::mutex> lock(mu_);
  error_ = std::move(error);
  finished_ = true;
  changed_.notify_all();
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

#include "host/pending_writer.h"

#include <utility>

#include "common/status.h"

namespace hsmsim::host {

PendingWriter::PendingWriter(Keystore& keystore, int64_t keys_done, size_t depth, AfterStore after)
    : keystore_(keystore),
      after_(std::move(after)),
      keys_done_(keys_done),
      thread_(depth, [this](std::vector<RewrappedKey>& batch) { return Store(batch); }) {}

PendingWriter::PendingWriter(Keystore& keystore, int64_t keys_done, size_t depth, AfterStore after,
                             RotationJournal worker_journal)
    : keystore_(keystore),
      after_(std::move(after)),
      worker_journal_(std::move(worker_journal)),
      keys_done_(keys_done),
      thread_(depth, [this](std::vector<RewrappedKey>& batch) { return Store(batch); }) {}

PendingWriter::~PendingWriter() { (void)Finish(); }

absl::Status PendingWriter::Store(std::vector<RewrappedKey>& batch) {
  HSMSIM_RETURN_IF_ERROR(worker_journal_.has_value()
                             ? keystore_.StorePendingFor(*worker_journal_, batch)
                             : keystore_.StorePending(batch));
  keys_stored_ += static_cast<int64_t>(batch.size());
  const int64_t done = keys_done_ += static_cast<int64_t>(batch.size());
  return after_ ? after_(done) : absl::OkStatus();
}

absl::Status PendingWriter::Push(std::vector<RewrappedKey> batch) {
  if (batch.empty()) return Error();
  return thread_.Push(std::move(batch));
}

absl::Status PendingWriter::Error() { return thread_.Error(); }

absl::Status PendingWriter::Finish() { return thread_.Finish(); }

}  // namespace hsmsim::host

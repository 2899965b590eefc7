// PendingWriter: a rotation's re-encrypted batches stored in the keystore
// (Keystore::StorePending) on a thread of their own, in the order given, so
// that keystore writes overlap the network fan-out (issue "Rotation at the
// speed of the keystore", item 3). The thread is a StoreThread.
//
// Thread-safety: Push, Finish and Error are called from one thread (the
// engine's); keys_done may be read from any. While a PendingWriter runs,
// its keystore connection is its thread's alone: the caller must not use
// it until Finish returned.
#ifndef HSMSIM_HOST_PENDING_WRITER_H_
#define HSMSIM_HOST_PENDING_WRITER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "host/keystore.h"
#include "host/store_thread.h"

namespace hsmsim::host {

class PendingWriter {
 public:
  // Called on the writer's thread after each stored batch, with the
  // journal's keys_done then; a non-OK status stops the writer right there:
  // nothing more is stored (the batches still queued are discarded), and
  // the status is the writer's error.
  using AfterStore = std::function<absl::Status(int64_t keys_done)>;

  // Starts the thread. `keystore` (not owned; outlives this) is written
  // only from it; `keys_done` is the journal's count before the first
  // batch; at most `depth` (>= 1) batches wait in the queue.
  PendingWriter(Keystore& keystore, int64_t keys_done, size_t depth, AfterStore after);
  // As above for one of several rotation workers: each batch is stored with
  // Keystore::StorePendingFor(`worker_journal`), so that a store after the
  // journal changed (JOURNAL_CHANGED) is the writer's error. keys_done then
  // counts this writer's batches only.
  PendingWriter(Keystore& keystore, int64_t keys_done, size_t depth, AfterStore after,
                RotationJournal worker_journal);
  // Finish, when it was not called.
  ~PendingWriter();
  PendingWriter(const PendingWriter&) = delete;
  PendingWriter& operator=(const PendingWriter&) = delete;

  // Push queues `batch` (empty batches are ignored), waiting while `depth`
  // batches wait already. Returns the writer's error once it stopped (the
  // batch is not queued then), else OK. Must not be called after Finish
  // (checked: the batch would be lost).
  absl::Status Push(std::vector<RewrappedKey> batch);
  // Error returns the writer's error so far, without waiting; OK while it
  // runs.
  absl::Status Error();
  // Finish stores every queued batch (unless the writer stopped), ends the
  // thread and returns the writer's error, or OK. Later calls return the
  // same.
  absl::Status Finish();

  // The journal's keys_done after the last stored batch.
  int64_t keys_done() const { return keys_done_.load(); }
  // Keys stored by this writer.
  int64_t keys_stored() const { return keys_stored_.load(); }

 private:
  // Store stores one batch and passes its checkpoint (the writer's thread).
  absl::Status Store(std::vector<RewrappedKey>& batch);

  Keystore& keystore_;
  const AfterStore after_;
  const std::optional<RotationJournal> worker_journal_;
  std::atomic<int64_t> keys_done_;
  std::atomic<int64_t> keys_stored_{0};

  StoreThread<std::vector<RewrappedKey>> thread_;  // last: starts after every member above
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_PENDING_WRITER_H_

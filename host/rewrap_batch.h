// A batch of stored keys on its way through a unit's re-encryption
// (ReencryptBatch: CURRENT -> NEW, ReencryptFromOld: OLD -> CURRENT), and the
// checks on what the unit gives back. Used by the rotation engine and by
// UpgradeStragglers, the two users of re-encryption.
#ifndef HSMSIM_HOST_REWRAP_BATCH_H_
#define HSMSIM_HOST_REWRAP_BATCH_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "host/batch_fanout.h"
#include "host/keystore.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

// Keys a report names when some could not be re-encrypted; the rest are
// counted.
inline constexpr size_t kMaxNamedFailedKeys = 10;

// The keys of one batch, in the order of the request's blobs.
struct RewrapKeys {
  std::vector<int64_t> ids;
  std::vector<std::string> names;
};

// Keys a unit refused one by one (BLOB_FAILED): counted, the first
// kMaxNamedFailedKeys named as "NAME (REASON)".
struct FailedKeys {
  int64_t count = 0;
  std::vector<std::string> named;
  // Every refused key's row and the unit's reason, for the keystore
  // (Keystore::RecordBlobProblems).
  std::vector<BlobProblem> problems;
  void Add(int64_t id, std::string_view name, std::string_view reason);
  // Merge adds `other`'s keys.
  void Merge(const FailedKeys& other);
  // List returns "k1 (R), k2 (R), ..." ("..." when some are not named).
  std::string List() const;
};

// What a batch asks of a unit: ReencryptBatch (CURRENT -> NEW),
// ReencryptFromOld (OLD -> CURRENT), or CheckBlobs (open each blob, change
// nothing: the rotation's pre-check).
enum class RewrapKind { kCurrentToNew, kOldToCurrent, kCheck };

// MakeRewrapRequest returns the ReencryptBatch (kCurrentToNew),
// ReencryptFromOld or CheckBlobs request for `page`'s blobs and fills `keys`.
v1::Request MakeRewrapRequest(RewrapKind kind, std::vector<StoredKey>& page, RewrapKeys& keys);

// TakeChecked adds each key of `keys` that `response` (a CheckBlobs answer)
// says the unit cannot open to `failed`. Returns INTERNAL (BAD_RESPONSE)
// when the unit answered another number of results; `failed` is left as it
// was then.
absl::Status TakeChecked(const v1::Response& response, const RewrapKeys& keys,
                         std::string_view unit, FailedKeys& failed);

// TakeRewrapped returns the re-encrypted blobs of `response` as keystore
// rows under `target_wkid`, adding each BLOB_FAILED key to `failed`. Returns
// INTERNAL (BAD_RESPONSE) when the unit answered another number of results,
// and DATA_LOSS (WRONG_TARGET_KEY) when a blob is not under `target_wkid` (the
// unit's register holds another key): then nothing of the batch may be
// stored, and `failed` is left as it was.
absl::StatusOr<std::vector<RewrappedKey>> TakeRewrapped(RewrapKind kind,
                                                        const v1::Response& response,
                                                        const RewrapKeys& keys,
                                                        std::string_view target_wkid,
                                                        std::string_view unit, FailedKeys& failed);

// RewrapBatches: the re-encryption batches of one fan-out, made from pages
// of stored keys, with the keys of each batch in flight kept by tag, and the
// batch size, which shrinks when a unit refuses a batch as too large.
// Thread-safety: used from the fan-out's caller thread only.
class RewrapBatches {
 public:
  // `batch_size` is the largest number of blobs per batch (>= 1).
  RewrapBatches(RewrapKind kind, size_t batch_size) : kind_(kind), batch_size_(batch_size) {}

  // batch_size returns how many keys the next page should hold: the
  // caller's size, or less once a unit refused a batch as too large.
  size_t batch_size() const { return batch_size_; }

  // Make returns the batch for `page`'s blobs (moved out of `page`) and
  // remembers its keys under a new tag.
  BatchFanout::Batch Make(std::vector<StoredKey>& page);

  // Keys returns the keys of the batch tagged `tag`. REQUIRES: Make or Split
  // returned it and Forget was not called for it.
  const RewrapKeys& Keys(uint64_t tag) const { return in_flight_.at(tag); }
  void Forget(uint64_t tag) { in_flight_.erase(tag); }

  // Split divides `batch` into two halves with tags of their own (forgetting
  // `batch`'s) and lowers batch_size() to the larger half; returns no batch
  // when `batch` holds one blob. For BatchFanout::SetSplit.
  std::vector<BatchFanout::Batch> Split(const BatchFanout::Batch& batch);

 private:
  BatchFanout::Batch Remember(v1::Request request, RewrapKeys keys);

  RewrapKind kind_;
  size_t batch_size_;
  uint64_t next_tag_ = 0;
  std::map<uint64_t, RewrapKeys> in_flight_;
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_REWRAP_BATCH_H_

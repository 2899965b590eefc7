// A batch of stored keys on its way through a unit's re-encryption
// (ReencryptBatch: CURRENT -> NEW, ReencryptFromOld: OLD -> CURRENT), and the
// checks on what the unit gives back. Used by the rotation engine and by
// UpgradeStragglers, the two users of re-encryption.
#ifndef HSMSIM_HOST_REWRAP_BATCH_H_
#define HSMSIM_HOST_REWRAP_BATCH_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
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
  void Add(std::string_view name, std::string_view reason);
  // List returns "k1 (R), k2 (R), ..." ("..." when some are not named).
  std::string List() const;
};

enum class RewrapKind { kCurrentToNew, kOldToCurrent };

// MakeRewrapRequest returns the ReencryptBatch (kCurrentToNew) or
// ReencryptFromOld request for `page`'s blobs and fills `keys`.
v1::Request MakeRewrapRequest(RewrapKind kind, std::vector<StoredKey>& page, RewrapKeys& keys);

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

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_REWRAP_BATCH_H_

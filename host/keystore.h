// Keystore: the key storage of the KMS. Each key row holds its blob (a root
// key wrapped under a master key) and that master key's WKID and, during a
// rotation, the re-encrypted blob and its WKID ("pending"). A rotation
// journal lives in the same database and is written in the same transactions
// as the blobs it describes.
//
// Reads stream in pages; nothing loads the whole keystore into memory.
// SQLite is the implementation here (OpenSqliteKeystore); the interface is
// what a PostgreSQL backend would implement for fleets that span machines.
//
// Thread-safety: a Keystore is used from one thread at a time.
#ifndef HSMSIM_HOST_KEYSTORE_H_
#define HSMSIM_HOST_KEYSTORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hsmsim::host {

struct StoredKey {
  int64_t id = 0;
  std::string name;
  std::string blob;
  std::string wkid;          // 16 bytes
  std::string pending_blob;  // empty when none
  std::string pending_wkid;  // empty when none
  // Why a unit last could not open or re-encrypt the blob (its reason, e.g.
  // BLOB_AUTHENTICATION_FAILED), recorded by the rotation's pre-check or
  // re-encryption; empty when none was recorded.
  std::string problem;
  // The operator set the key aside (hsmctl keys quarantine): it keeps its
  // blob and WKID, re-encryption skips it, and the interlock keeps its
  // master key held while it exists.
  bool quarantined = false;
};

// A key whose blob a unit could not open or re-encrypt, and the unit's
// reason.
struct BlobProblem {
  int64_t id = 0;
  std::string reason;
};

struct NewKey {
  std::string name;
  std::string blob;
  std::string wkid;
};

// A re-encrypted blob for row `id`.
struct RewrappedKey {
  int64_t id = 0;
  std::string blob;
  std::string wkid;
};

// How many keys have their blob under `wkid` and their pending blob under
// `pending_wkid` ("" for none).
struct WkidPairCount {
  std::string wkid;
  std::string pending_wkid;
  int64_t count = 0;
};

// The phases of a rotation, in order. kDone means the last rotation finished.
enum class RotationPhase {
  kReencrypting,  // re-encrypting key storage CURRENT -> NEW
  kReencrypted,   // every key has a pending blob under NEW
  kPromoting,     // set immediate is being issued to the units
  kFinalizing,    // every unit promoted; pending blobs become the blobs
  kDone,
};
std::string_view RotationPhaseName(RotationPhase phase);
absl::StatusOr<RotationPhase> ParseRotationPhase(std::string_view name);

struct RotationJournal {
  RotationPhase phase = RotationPhase::kReencrypting;
  std::string source_vp;  // 32 bytes: the CURRENT master key being replaced
  std::string target_vp;  // 32 bytes: the NEW master key
  int64_t keys_total = 0;
  int64_t keys_done = 0;
  std::string started_at;  // ISO 8601 UTC
  std::string updated_at;
};

class Keystore {
 public:
  virtual ~Keystore() = default;

  // AddKeys inserts keys in one transaction. ALREADY_EXISTS (KEY_EXISTS) if
  // a name is taken; nothing is inserted then.
  virtual absl::Status AddKeys(const std::vector<NewKey>& keys) = 0;

  // FindKey returns the key called `name`, or std::nullopt.
  virtual absl::StatusOr<std::optional<StoredKey>> FindKey(std::string_view name) = 0;

  // ReadPage returns up to `limit` keys with id > `after_id`, in id order.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadPage(int64_t after_id, size_t limit) = 0;

  // ReadNeedingRewrap returns up to `limit` keys with id > `after_id` whose
  // blob is under `source_wkid`, that have no pending blob under
  // `target_wkid` yet and are not quarantined.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadNeedingRewrap(
      int64_t after_id, size_t limit, std::string_view source_wkid,
      std::string_view target_wkid) = 0;

  // ReadUnder returns up to `limit` keys with id > `after_id` whose blob is
  // under `wkid`, that have no pending blob and are not quarantined.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadUnder(int64_t after_id, size_t limit,
                                                           std::string_view wkid) = 0;

  // StorePending records re-encrypted blobs as pending and adds
  // `rewrapped.size()` to the journal's keys_done, in one transaction.
  virtual absl::Status StorePending(const std::vector<RewrappedKey>& rewrapped) = 0;

  // ReplaceBlobs makes `rewrapped` the keys' blobs (clearing any pending).
  virtual absl::Status ReplaceBlobs(const std::vector<RewrappedKey>& rewrapped) = 0;

  // PromotePending makes the pending blobs under `target_wkid` of the next
  // `limit` ids (resuming where the previous call stopped) the
  // keys' blobs; returns how many rows changed (0 when none are left).
  virtual absl::StatusOr<int64_t> PromotePending(std::string_view target_wkid, int64_t limit) = 0;

  // RecordBlobProblems records why units could not open or re-encrypt
  // these keys' blobs (replacing what was recorded), in one transaction.
  virtual absl::Status RecordBlobProblems(const std::vector<BlobProblem>& problems) = 0;
  // ClearBlobProblems forgets the recorded problems of every key that is not
  // quarantined (before a pre-check or re-encryption records them afresh).
  virtual absl::Status ClearBlobProblems() = 0;
  // ReadProblemKeys returns up to `limit` keys with id > `after_id` that
  // have a recorded problem or are quarantined, in id order.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadProblemKeys(int64_t after_id,
                                                                 size_t limit) = 0;
  // SetQuarantined quarantines (`quarantined`) or releases the keys called
  // `names`, in one transaction. Returns NOT_FOUND (NO_SUCH_KEY) naming the
  // first unknown name, and FAILED_PRECONDITION (KEY_NOT_UNREADABLE) when a
  // key to quarantine has no recorded problem; nothing changes then.
  virtual absl::Status SetQuarantined(const std::vector<std::string>& names, bool quarantined) = 0;
  // CountQuarantined counts quarantined keys per blob WKID (pending_wkid is
  // left empty).
  virtual absl::StatusOr<std::vector<WkidPairCount>> CountQuarantined() = 0;

  // CountByWkid counts keys per (blob WKID, pending WKID).
  virtual absl::StatusOr<std::vector<WkidPairCount>> CountByWkid() = 0;
  virtual absl::StatusOr<int64_t> CountKeys() = 0;

  // ReadJournal returns the rotation journal, or std::nullopt if no
  // rotation ever ran.
  virtual absl::StatusOr<std::optional<RotationJournal>> ReadJournal() = 0;
  // WriteJournal replaces the journal (updated_at is set by the store).
  virtual absl::Status WriteJournal(const RotationJournal& journal) = 0;

  virtual const std::string& location() const = 0;
};

// OpenSqliteKeystore opens the SQLite keystore at `path` (WAL mode), creating
// it and its schema when `create`. NOT_FOUND (NO_KEYSTORE) when absent and
// !create; DATA_LOSS (BAD_KEYSTORE) when the file is not a keystore;
// FAILED_PRECONDITION (UNSUPPORTED_KEYSTORE_VERSION) for a newer schema.
absl::StatusOr<std::unique_ptr<Keystore>> OpenSqliteKeystore(const std::string& path, bool create);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_KEYSTORE_H_

// Keystore: the key storage of the KMS. Each key has its blob (a root key
// wrapped under a master key) and that master key's WKID and, during a
// rotation, the re-encrypted blob and its WKID ("pending"). A rotation
// journal lives in the same database and is written in the same transactions
// as the blobs it describes. The SQLite layout keeps blobs per generation
// (host/internal/keystore_schema.h): re-encryption appends, finalization
// switches generations.
//
// Reads stream in pages; nothing loads the whole keystore into memory.
// SQLite is the embedded default (OpenSqliteKeystore); PostgreSQL serves
// fleets that span machines (OpenPostgresKeystore); OpenKeystore picks one
// by the location's form.
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

// A new key as a creator placed it (host/key_creation.h): its blob and, when
// made during a rotation, the blob re-encrypted under the rotation's target
// as its pending blob.
struct PlacedKey {
  std::string name;
  std::string blob;
  std::string wkid;
  std::string pending_blob;  // empty when none
  std::string pending_wkid;  // empty when none
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

// SameRotationState is true when `a` and `b` are the same journal state for
// a writer of new keys: both absent, or the same rotation (source, target,
// start) in the same phase. Progress within a phase does not count.
bool SameRotationState(const std::optional<RotationJournal>& a,
                       const std::optional<RotationJournal>& b);

// What stopped the last rotation command of a keystore (mk rotate, mk
// rotate --resume), kept beside the journal so that mk rotate --status can
// show it after the command's output is gone.
struct RotationError {
  std::string error;        // "REASON: message"; never key material
  std::string phase;        // the journal's phase when it stopped, e.g. "REENCRYPTING"
  std::string recorded_at;  // ISO 8601 UTC, set by the store
};

// Who holds a keystore's rotation lock: the process, its host, when it took
// the lock and for what ("mk rotate", "recover --apply").
struct RotationLockHolder {
  int64_t pid = 0;
  std::string host;
  std::string started_at;  // ISO 8601 UTC
  std::string command;

  // Self describes this process, now, running `command`.
  static RotationLockHolder Self(std::string command);
  // Describe returns "pid P on HOST since T (COMMAND)".
  std::string Describe() const;
};

// RotationLock: the keystore's rotation lock, held by one process while it
// writes the rotation journal or the blobs of a rotation (mk rotate, its
// --resume, recover --apply). Destroying it releases the lock; so does the
// death of the process (even SIGKILL), since the operating system drops it.
class RotationLock {
 public:
  virtual ~RotationLock() = default;
  virtual const RotationLockHolder& holder() const = 0;
};

// A range of key ids [first_id, last_id] that one rotation worker
// re-encrypts (RewrapClaims).
struct KeyRange {
  int64_t number = 0;  // 1-based, in id order
  int64_t first_id = 0;
  int64_t last_id = 0;
};

// RewrapClaims shares a rotation's re-encryption among several workers
// (hsmctl mk rotate and mk rotate --join, one process each, on one or
// several machines): the keys still to re-encrypt are divided into ranges
// of ids, and each worker claims one free range at a time, so that no two
// workers read the same keys. A claim lasts until the worker claims its
// next range, releases it, or its connection ends (the worker died): then
// another worker claims that range again. A claimed range is marked
// finished once its keys were read; the keys of a finished range whose
// re-encrypted blobs a dead worker had not stored yet are re-encrypted by
// the lead's last pass (RotationEngine::Reencrypt), which reads every key
// still without a pending blob.
//
// Each RewrapClaims holds a connection of its own (docs/rotation.md,
// "Rotation workers"). Thread-safety: used from one thread at a time.
class RewrapClaims {
 public:
  virtual ~RewrapClaims() = default;

  // Plan divides the ids of the keys rotation `journal` still has to
  // re-encrypt (from the smallest to the largest such id) into ranges of
  // `range_ids` (>= 1) consecutive ids, unless ranges for this rotation
  // (its start and target) exist already: a resumed lead and every joining
  // worker keep them. In one transaction that checks that the journal is
  // still that rotation, REENCRYPTING: ABORTED (JOURNAL_CHANGED) otherwise.
  // Returns how many ranges are not finished; the store's error otherwise.
  virtual absl::StatusOr<int64_t> Plan(const RotationJournal& journal, int64_t range_ids) = 0;

  // Claim marks the range claimed before (if any) finished, then claims the
  // first unfinished range of rotation `journal` that no other worker
  // holds, for `worker` (e.g. "pid 42 on host-a"). Returns std::nullopt when
  // none is free; `*held_elsewhere` is then the number of unfinished ranges
  // other workers hold (0: every range is finished). Errors: the store's
  // (the claim is released then).
  virtual absl::StatusOr<std::optional<KeyRange>> Claim(const RotationJournal& journal,
                                                        std::string_view worker,
                                                        int64_t* held_elsewhere) = 0;

  // Release lets go of the range claimed, unfinished, so that another
  // worker claims it. Best effort (the server releases it with the
  // connection anyway).
  virtual void Release() = 0;
};

// What the ranges of a rotation look like now (mk rotate --status).
struct RewrapRangeCounts {
  int64_t total = 0;
  int64_t finished = 0;
};

class Keystore {
 public:
  virtual ~Keystore() = default;

  // AddKeys inserts keys in one transaction. ALREADY_EXISTS (KEY_EXISTS) if
  // a name is taken; nothing is inserted then.
  virtual absl::Status AddKeys(const std::vector<NewKey>& keys) = 0;

  // AddKeysPlanned inserts keys like AddKeys, in one transaction that first
  // checks that the rotation journal is still the one `planned` was read
  // from (the same phase, source, target and start; or still no open
  // rotation when `planned` is empty or DONE): the writer chose where its
  // keys go (their WKIDs and pending blobs) from that journal. ABORTED
  // (JOURNAL_CHANGED) when it changed, and ALREADY_EXISTS (KEY_EXISTS) as
  // AddKeys; nothing is inserted then.
  // The commit is not synced to disk on its own (a power loss may undo the
  // last ones until the next Flush or synced commit; a crash of the process
  // does not): the writer calls Flush before it reports the keys stored.
  virtual absl::Status AddKeysPlanned(const std::vector<PlacedKey>& keys,
                                      const std::optional<RotationJournal>& planned) = 0;

  // Flush makes every transaction committed so far durable: after it, a
  // power loss keeps them. AddKeysPlanned and StorePending commit without a
  // sync each; every other write syncs its own commit. Errors: the store's.
  virtual absl::Status Flush() = 0;

  // ReserveKeyNumbers reserves `count` (>= 1) consecutive numbers for new
  // key names PREFIX<number> and returns the first: one above the largest
  // number of a stored name PREFIX<digits> and above every number reserved
  // before for `prefix`, in one transaction. So new names never collide with
  // stored names, whatever gaps an interrupted `keys create` left, nor with
  // the names of a concurrent creator. Returns the keystore's error.
  virtual absl::StatusOr<int64_t> ReserveKeyNumbers(std::string_view prefix, int64_t count) = 0;

  // LockRotation takes the keystore's rotation lock for `holder`, without
  // waiting. FAILED_PRECONDITION (ROTATION_LOCKED) naming the holder (pid,
  // host, start, command) when another process or RotationLock holds it;
  // the keystore's I/O error otherwise. The lock outlives neither the
  // returned object nor the process.
  virtual absl::StatusOr<std::unique_ptr<RotationLock>> LockRotation(
      const RotationLockHolder& holder) = 0;

  // FindRotationLockHolder returns who holds the rotation lock now, or
  // std::nullopt when nobody does.
  virtual absl::StatusOr<std::optional<RotationLockHolder>> FindRotationLockHolder() = 0;

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

  // ReadToReencrypt returns the keys ReadNeedingRewrap returns, with only
  // what re-encryption reads: each key's id and blob (its name, WKID,
  // pending blob and problem are left empty; Keystore::ReadPage has them).
  // The rotation's read, lighter than ReadNeedingRewrap: SQLite reads
  // neither the names nor the pending blobs' rows for it. By default it is
  // ReadNeedingRewrap.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadToReencrypt(int64_t after_id, size_t limit,
                                                                 std::string_view source_wkid,
                                                                 std::string_view target_wkid) {
    return ReadNeedingRewrap(after_id, limit, source_wkid, target_wkid);
  }

  // ReadToReencryptIn is ReadToReencrypt limited to ids <= `last_id` (a
  // claimed range, RewrapClaims). By default it reads a page with
  // ReadToReencrypt and drops the keys past `last_id`.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadToReencryptIn(int64_t after_id,
                                                                   int64_t last_id, size_t limit,
                                                                   std::string_view source_wkid,
                                                                   std::string_view target_wkid) {
    absl::StatusOr<std::vector<StoredKey>> page =
        ReadToReencrypt(after_id, limit, source_wkid, target_wkid);
    if (!page.ok()) return page;
    while (!page->empty() && page->back().id > last_id) page->pop_back();
    return page;
  }

  // OpenRewrapClaims opens the claims of rotation workers on a connection
  // of its own (owned by the caller). FAILED_PRECONDITION
  // (KEYSTORE_NOT_SHARED) for a keystore that workers on other machines
  // cannot share (SQLite, the default); the store's error otherwise.
  virtual absl::StatusOr<std::unique_ptr<RewrapClaims>> OpenRewrapClaims();

  // CountRewrapRanges counts the ranges of rotation `journal` (zeros when
  // it has none, or the keystore has no claims). Errors: the store's.
  virtual absl::StatusOr<RewrapRangeCounts> CountRewrapRanges(const RotationJournal& journal) {
    (void)journal;
    return RewrapRangeCounts{};
  }

  // ReadUnder returns up to `limit` keys with id > `after_id` whose blob is
  // under `wkid`, that have no pending blob and are not quarantined.
  virtual absl::StatusOr<std::vector<StoredKey>> ReadUnder(int64_t after_id, size_t limit,
                                                           std::string_view wkid) = 0;

  // StorePending records re-encrypted blobs as pending and adds
  // `rewrapped.size()` to the journal's keys_done, in one transaction,
  // not synced on its own (see Flush): a power loss may undo the last
  // batches and their progress together, which re-encryption makes again.
  // The journal's phase changes (WriteJournal) are synced and make them
  // durable too.
  virtual absl::Status StorePending(const std::vector<RewrappedKey>& rewrapped) = 0;

  // StorePendingFor is StorePending for one of several rotation workers
  // (RewrapClaims): in the same transaction it checks that the journal is
  // still rotation `journal` (its start, source and target) in
  // REENCRYPTING, else returns ABORTED (JOURNAL_CHANGED) and stores nothing
  // (the lead moved on, or the rotation was abandoned); and a key that has
  // a pending blob under the same WKID already (another worker stored it)
  // keeps it and is not counted again in keys_done. By default (SQLite: one
  // writer, under the rotation lock) it is StorePending.
  virtual absl::Status StorePendingFor(const RotationJournal& journal,
                                       const std::vector<RewrappedKey>& rewrapped) {
    (void)journal;
    return StorePending(rewrapped);
  }

  // ReplaceBlobs makes `rewrapped` the keys' blobs (clearing any pending).
  virtual absl::Status ReplaceBlobs(const std::vector<RewrappedKey>& rewrapped) = 0;

  // PromotePending makes every pending blob under `target_wkid` its key's
  // blob, in one transaction, and returns how many (0 when none is pending,
  // and then nothing changes). Pending blobs under another WKID are dropped
  // (their keys keep their blobs). Keys without a pending blob keep theirs.
  // SQLite: a switch of the blob generation that rewrites no row when every
  // key has a pending blob (it still reads every page once: a WKID check,
  // counts, emptying the old generation); the keys without one are copied
  // into the new generation first. Errors: the store's (nothing changed
  // then).
  virtual absl::StatusOr<int64_t> PromotePending(std::string_view target_wkid) = 0;

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
  // AbandonRotation closes an abandoned rotation to `target_wkid`: in one
  // transaction it drops every pending blob under `target_wkid` (the keys
  // keep their blobs) and deletes the journal, so that ReadJournal returns
  // std::nullopt after it. Returns how many pending blobs were dropped, or
  // the store's error (nothing changed then). The caller proves first that
  // no unit promoted the target key (host/rotation_abort.h).
  virtual absl::StatusOr<int64_t> AbandonRotation(std::string_view target_wkid) = 0;

  // RecordRotationError keeps `e` (recorded_at is set by the store) as the
  // last rotation error, replacing an earlier one. ClearRotationError drops
  // it (a rotation command that finished its work). ReadRotationError
  // returns it, or std::nullopt when none is kept. Errors: the store's.
  virtual absl::Status RecordRotationError(const RotationError& e) = 0;
  virtual absl::Status ClearRotationError() = 0;
  virtual absl::StatusOr<std::optional<RotationError>> ReadRotationError() = 0;

  // Reopen opens another connection to the same keystore, for another
  // thread (host/rewrap_prefetch.h); owned by the caller. Errors: the
  // store's, as OpenSqliteKeystore's.
  virtual absl::StatusOr<std::unique_ptr<Keystore>> Reopen() = 0;

  virtual const std::string& location() const = 0;
};

// What MigrateSqliteKeystore did.
struct KeystoreMigration {
  int from_version = 0;       // the schema version found
  int to_version = 0;         // the version written (== from_version: nothing to do)
  int64_t keys = 0;           // keys in the keystore
  int64_t pending_blobs = 0;  // of them with a pending blob (an open rotation), moved too
};

// MigrateSqliteKeystore brings the SQLite keystore at `path` to the schema
// version this code reads (2, blob generations: host/internal/keystore_schema.h),
// in one transaction, holding the rotation lock: every key keeps its id,
// name, blob, WKID, pending blob, recorded problem and quarantine, and the
// rotation journal is kept, so an open rotation resumes after it. A
// keystore already current is left alone. NOT_FOUND (NO_KEYSTORE) when
// absent; DATA_LOSS (BAD_KEYSTORE) when not a keystore; FAILED_PRECONDITION
// (ROTATION_LOCKED) while a rotation command holds the lock;
// FAILED_PRECONDITION (UNSUPPORTED_KEYSTORE_VERSION) for an unknown version;
// the store's error otherwise (nothing changed then).
absl::StatusOr<KeystoreMigration> MigrateSqliteKeystore(const std::string& path);

// MigratePostgresKeystore brings the PostgreSQL keystore at `url` to the
// schema version this code reads (2: version 1 plus the rotation workers'
// ranges, host/postgres_keystore.cc), in one transaction; keys and the
// rotation journal are not touched, so an open rotation resumes after it. A
// keystore already current is left alone. Errors: OpenPostgresKeystore's
// (UNSUPPORTED_KEYSTORE_VERSION for a version other than 1 and 2).
absl::StatusOr<KeystoreMigration> MigratePostgresKeystore(const std::string& url);

// OpenSqliteKeystore opens the SQLite keystore at `path` (WAL mode), creating
// it and its schema when `create`. Its rotation lock is an flock() on
// PATH.rotation-lock, a file beside it that names the holder. NOT_FOUND (NO_KEYSTORE) when absent
// and !create; DATA_LOSS (BAD_KEYSTORE) when the file is not a keystore; FAILED_PRECONDITION
// (UNSUPPORTED_KEYSTORE_VERSION) for another schema version (version 1: the
// message names hsmctl keys migrate).
absl::StatusOr<std::unique_ptr<Keystore>> OpenSqliteKeystore(const std::string& path, bool create);

// OpenPostgresKeystore opens the PostgreSQL keystore at `url` (a libpq
// connection URI, postgresql://USER@HOST:PORT/DB?..., libpq section 34.1.1;
// the password comes from PGPASSFILE/~/.pgpass or PGPASSWORD, as for psql),
// creating its tables (host/postgres_keystore.cc) when `create`. Its
// rotation lock is a session advisory lock that the server drops with the
// holder's connection. Errors: UNAVAILABLE (KEYSTORE_IO) when the server
// cannot be reached or refuses the login (the message has the server's
// reason and the URL without any password); NOT_FOUND (NO_KEYSTORE) when
// the database has no keystore and !create; DATA_LOSS (BAD_KEYSTORE) for
// hsmsim tables without a schema version; FAILED_PRECONDITION
// (UNSUPPORTED_KEYSTORE_VERSION) for another schema version;
// INTERNAL (KEYSTORE_ERROR) for any other server error. location() is the
// URL without its password.
absl::StatusOr<std::unique_ptr<Keystore>> OpenPostgresKeystore(const std::string& url, bool create);

// OpenKeystore opens `location`: a postgresql:// or postgres:// URL with
// OpenPostgresKeystore, anything else as a SQLite file path with
// OpenSqliteKeystore. Errors: theirs.
absl::StatusOr<std::unique_ptr<Keystore>> OpenKeystore(const std::string& location, bool create);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_KEYSTORE_H_

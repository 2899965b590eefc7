#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <tuple>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/internal/keystore_schema.h"
#include "host/internal/keystore_text.h"
#include "host/internal/sqlite.h"
#include "host/keystore.h"

namespace hsmsim::host {
namespace {

using internal::DescribeJournal;
using internal::KeyNumber;
using internal::NowUtc;

std::string FormatHolder(const RotationLockHolder& h) {
  return StrCat("pid=", h.pid, "\nhost=", h.host, "\nstarted_at=", h.started_at,
                "\ncommand=", h.command, "\n");
}

RotationLockHolder ParseHolder(std::string_view text) {
  RotationLockHolder h;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, eq);
    const std::string value(line.substr(eq + 1));
    if (key == "pid") h.pid = std::strtoll(value.c_str(), nullptr, 10);
    if (key == "host") h.host = value;
    if (key == "started_at") h.started_at = value;
    if (key == "command") h.command = value;
  }
  return h;
}

// FlockRotationLock holds an flock() on the lock file through `fd_`.
class FlockRotationLock final : public RotationLock {
 public:
  FlockRotationLock(int fd, RotationLockHolder holder) : fd_(fd), holder_(std::move(holder)) {}
  ~FlockRotationLock() override { ::close(fd_); }  // closing drops the flock
  FlockRotationLock(const FlockRotationLock&) = delete;
  FlockRotationLock& operator=(const FlockRotationLock&) = delete;
  const RotationLockHolder& holder() const override { return holder_; }

 private:
  int fd_;
  RotationLockHolder holder_;
};

absl::Status LockFileError(const std::string& path, std::string_view what, int err) {
  return Error(absl::StatusCode::kUnavailable, reason::kKeystoreIo,
               StrCat("rotation lock ", path, ": ", what, ": ", std::strerror(err)));
}

// ReadHolder returns what the lock file behind `fd` says of its holder.
RotationLockHolder ReadHolder(int fd) {
  std::string text(4096, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return ParseHolder(text);
}

// SqliteKeystore: the Keystore of host/keystore.h on one SQLite database in
// the layout of host/internal/keystore_schema.h (version 2, blob
// generations).
class SqliteKeystore final : public Keystore {
 public:
  explicit SqliteKeystore(std::unique_ptr<internal::Database> db) : db_(std::move(db)) {}

  // Init sets the connection up and checks (or, when `create` and the file
  // is empty, creates) the schema.
  absl::Status Init(bool create) {
    HSMSIM_RETURN_IF_ERROR(SetUp());
    absl::StatusOr<int> version = internal::ReadSchemaVersion(*db_);
    if (!version.ok() && create && ReasonOf(version.status()) == reason::kNoKeystore) {
      return internal::CreateSchema(*db_);
    }
    HSMSIM_RETURN_IF_ERROR(version.status());
    return internal::CheckSchemaVersion(*db_, *version);
  }

  // Migrate takes the rotation lock and migrates the schema
  // (MigrateSqliteKeystore).
  absl::StatusOr<KeystoreMigration> Migrate() {
    HSMSIM_RETURN_IF_ERROR(SetUp());
    HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<RotationLock> lock,
                            LockRotation(RotationLockHolder::Self("keys migrate")));
    HSMSIM_ASSIGN_OR_RETURN(int version, internal::ReadSchemaVersion(*db_));
    return internal::MigrateSchema(*db_, version);
  }

  absl::Status AddKeys(const std::vector<NewKey>& keys) override {
    std::vector<PlacedKey> placed;
    placed.reserve(keys.size());
    for (const NewKey& k : keys) placed.push_back(PlacedKey{k.name, k.blob, k.wkid, "", ""});
    return InTransaction(Txn::kWrite,
                         [&](const internal::BlobTables& t) { return InsertKeys(t, placed); });
  }

  absl::Status AddKeysPlanned(const std::vector<PlacedKey>& keys,
                              const std::optional<RotationJournal>& planned) override {
    return InTransaction(Txn::kWriteUnsynced, [&](const internal::BlobTables& t) -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> now, ReadJournal());
      if (!SameRotationState(planned, now)) {
        return Error(
            absl::StatusCode::kAborted, reason::kJournalChanged,
            StrCat("keystore ", db_->path(), ": the rotation journal changed (",
                   DescribeJournal(planned), " when the keys were planned, ", DescribeJournal(now),
                   " now); ", keys.size(), " key(s) were not stored"));
      }
      return InsertKeys(t, keys);
    });
  }

  // A commit with synchronous=FULL syncs the WAL, and with it every frame
  // committed before (https://sqlite.org/pragma.html#pragma_synchronous):
  // one small synced write is enough.
  absl::Status Flush() override {
    return InTransaction(Txn::kWrite, [&](const internal::BlobTables&) {
      return db_->Exec("INSERT OR REPLACE INTO meta(key, value) VALUES('last_flush', '')");
    });
  }

  absl::StatusOr<int64_t> ReserveKeyNumbers(std::string_view prefix, int64_t count) override {
    int64_t first = 0;
    HSMSIM_RETURN_IF_ERROR(InTransaction(
        Txn::kWrite, [&](const internal::BlobTables&) { return Reserve(prefix, count, first); }));
    return first;
  }

  absl::StatusOr<std::unique_ptr<RotationLock>> LockRotation(
      const RotationLockHolder& holder) override {
    const std::string path = LockPath();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return LockFileError(path, "open", errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err != EWOULDBLOCK) {
        ::close(fd);
        return LockFileError(path, "flock", err);
      }
      const RotationLockHolder other = ReadHolder(fd);
      ::close(fd);
      return internal::RotationLockedError(db_->path(), other);
    }
    const std::string text = FormatHolder(holder);
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      const int err = errno;
      ::close(fd);
      return LockFileError(path, "write", err);
    }
    return std::unique_ptr<RotationLock>(std::make_unique<FlockRotationLock>(fd, holder));
  }

  absl::StatusOr<std::optional<RotationLockHolder>> FindRotationLockHolder() override {
    const std::string path = LockPath();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return std::optional<RotationLockHolder>();
      return LockFileError(path, "open", errno);
    }
    std::optional<RotationLockHolder> holder;
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
      ::flock(fd, LOCK_UN);
    } else if (errno == EWOULDBLOCK) {
      holder = ReadHolder(fd);
    } else {
      const int err = errno;
      ::close(fd);
      return LockFileError(path, "flock", err);
    }
    ::close(fd);
    return holder;
  }

  absl::StatusOr<std::optional<StoredKey>> FindKey(std::string_view name) override {
    std::optional<StoredKey> found;
    if (absl::Status done = InTransaction(Txn::kRead,
                                          [&](const internal::BlobTables& t) -> absl::Status {
                                            HSMSIM_ASSIGN_OR_RETURN(found, FindRow(t, name));
                                            return absl::OkStatus();
                                          });
        !done.ok()) {
      return done;
    }
    return found;
  }

  absl::StatusOr<std::vector<StoredKey>> ReadPage(int64_t after_id, size_t limit) override {
    return ReadWhere("k.id>? ORDER BY k.id LIMIT ?", [&](internal::Statement& q) {
      q.Bind(1, after_id).Bind(2, static_cast<int64_t>(limit));
    });
  }

  absl::StatusOr<std::vector<StoredKey>> ReadNeedingRewrap(int64_t after_id, size_t limit,
                                                           std::string_view source_wkid,
                                                           std::string_view target_wkid) override {
    return ReadWhere(
        "c.wkid=? AND k.id>? AND (n.wkid IS NULL OR n.wkid<>?) AND coalesce(p.quarantined, 0)=0 "
        "ORDER BY k.id LIMIT ?",
        [&](internal::Statement& q) {
          q.Bind(1, source_wkid).Bind(2, after_id).Bind(3, target_wkid);
          q.Bind(4, static_cast<int64_t>(limit));
        });
  }

  // One B-tree walked in key order (the current generation from `after_id`
  // on), with a lookup of the same id in the next generation and among the
  // problems (both small or appended in key order too: their pages are
  // read once). The keys table is not read.
  absl::StatusOr<std::vector<StoredKey>> ReadToReencrypt(int64_t after_id, size_t limit,
                                                         std::string_view source_wkid,
                                                         std::string_view target_wkid) override {
    std::vector<StoredKey> out;
    out.reserve(std::min<size_t>(limit, 65536));
    HSMSIM_RETURN_IF_ERROR(
        InTransaction(Txn::kRead, [&](const internal::BlobTables& t) -> absl::Status {
          HSMSIM_ASSIGN_OR_RETURN(
              auto q, db_->Prepare(StrCat(
                          "SELECT c.id, c.blob FROM ", t.current,
                          " c WHERE c.id>? AND c.wkid=? AND NOT EXISTS (SELECT 1 FROM ", t.next,
                          " n WHERE n.id=c.id AND n.wkid=?) AND NOT EXISTS (SELECT 1 FROM "
                          "key_problems p WHERE p.id=c.id AND p.quarantined<>0) ORDER BY c.id "
                          "LIMIT ?")));
          q.Bind(1, after_id).BindUnowned(2, source_wkid).BindUnowned(3, target_wkid);
          q.Bind(4, static_cast<int64_t>(limit));
          while (true) {
            HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
            if (!row) break;
            StoredKey& k = out.emplace_back();
            k.id = q.Int(0);
            k.blob = std::string(q.Text(1));
          }
          return absl::OkStatus();
        }));
    return out;
  }

  absl::StatusOr<std::vector<StoredKey>> ReadUnder(int64_t after_id, size_t limit,
                                                   std::string_view wkid) override {
    return ReadWhere(
        "c.wkid=? AND k.id>? AND n.id IS NULL AND coalesce(p.quarantined, 0)=0 "
        "ORDER BY k.id LIMIT ?",
        [&](internal::Statement& q) {
          q.Bind(1, wkid).Bind(2, after_id).Bind(3, static_cast<int64_t>(limit));
        });
  }

  // Re-encrypted blobs are appended to the next generation (key order makes
  // it an append to its B-tree) with NORMAL sync: a power loss can only
  // lose the last batches, and their journal progress with them, which
  // re-encryption then makes again.
  absl::Status StorePending(const std::vector<RewrappedKey>& rewrapped) override {
    return InTransaction(Txn::kWriteUnsynced, [&](const internal::BlobTables& t) {
      return StorePendingIn(t, rewrapped);
    });
  }

  absl::Status ReplaceBlobs(const std::vector<RewrappedKey>& rewrapped) override {
    return InTransaction(Txn::kWrite, [&](const internal::BlobTables& t) -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto update, db_->Prepare(StrCat("UPDATE ", t.current,
                                                               " SET blob=?, wkid=? WHERE id=?")));
      HSMSIM_ASSIGN_OR_RETURN(auto drop,
                              db_->Prepare(StrCat("DELETE FROM ", t.next, " WHERE id=?")));
      for (const RewrappedKey& r : rewrapped) {
        update.Bind(1, r.blob).Bind(2, r.wkid).Bind(3, r.id);
        HSMSIM_RETURN_IF_ERROR(update.Run());
        drop.Bind(1, r.id);
        HSMSIM_RETURN_IF_ERROR(drop.Run());
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<int64_t> PromotePending(std::string_view target_wkid) override {
    int64_t promoted = 0;
    HSMSIM_RETURN_IF_ERROR(InTransaction(Txn::kWrite, [&](const internal::BlobTables& t) {
      return SwitchGeneration(t, target_wkid, promoted);
    }));
    return promoted;
  }

  absl::Status RecordBlobProblems(const std::vector<BlobProblem>& problems) override {
    if (problems.empty()) return absl::OkStatus();
    return InTransaction(Txn::kWrite, [&](const internal::BlobTables&) -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto upsert,
                              db_->Prepare("INSERT INTO key_problems(id, reason) VALUES(?,?) "
                                           "ON CONFLICT(id) DO UPDATE SET reason=excluded.reason"));
      for (const BlobProblem& p : problems) {
        upsert.Bind(1, p.id).Bind(2, p.reason, false);
        HSMSIM_RETURN_IF_ERROR(upsert.Run());
      }
      return absl::OkStatus();
    });
  }

  absl::Status ClearBlobProblems() override {
    HSMSIM_RETURN_IF_ERROR(Sync(true));
    return db_->Exec("DELETE FROM key_problems WHERE quarantined=0");
  }

  absl::StatusOr<std::vector<StoredKey>> ReadProblemKeys(int64_t after_id, size_t limit) override {
    return ReadWhere(
        "k.id IN (SELECT id FROM key_problems) AND k.id>? ORDER BY k.id LIMIT ?",
        [&](internal::Statement& q) { q.Bind(1, after_id).Bind(2, static_cast<int64_t>(limit)); });
  }

  absl::Status SetQuarantined(const std::vector<std::string>& names, bool quarantined) override {
    return InTransaction(Txn::kWrite, [&](const internal::BlobTables& t) -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto mark,
                              db_->Prepare("UPDATE key_problems SET quarantined=? WHERE id=?"));
      for (const std::string& name : names) {
        HSMSIM_ASSIGN_OR_RETURN(std::optional<StoredKey> k, FindRow(t, name));
        HSMSIM_RETURN_IF_ERROR(internal::CheckQuarantineChange(name, k, quarantined, db_->path()));
        if (k->problem.empty()) continue;  // releasing a key that was never quarantined
        mark.Bind(1, int64_t{quarantined ? 1 : 0}).Bind(2, k->id);
        HSMSIM_RETURN_IF_ERROR(mark.Run());
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<WkidPairCount>> CountQuarantined() override {
    std::vector<WkidPairCount> out;
    if (absl::Status done = InTransaction(
            Txn::kRead,
            [&](const internal::BlobTables& t) -> absl::Status {
              HSMSIM_ASSIGN_OR_RETURN(
                  auto q, db_->Prepare(StrCat("SELECT c.wkid, count(*) FROM ", t.current,
                                              " c JOIN key_problems p ON p.id=c.id WHERE "
                                              "p.quarantined=1 GROUP BY c.wkid")));
              while (true) {
                HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
                if (!row) break;
                out.push_back(WkidPairCount{std::string(q.Text(0)), std::string(), q.Int(1)});
              }
              return absl::OkStatus();
            });
        !done.ok()) {
      return done;
    }
    return out;
  }

  absl::StatusOr<std::vector<WkidPairCount>> CountByWkid() override {
    std::vector<WkidPairCount> out;
    HSMSIM_RETURN_IF_ERROR(InTransaction(
        Txn::kRead, [&](const internal::BlobTables& t) { return CountPairs(t, out); }));
    return out;
  }

  absl::StatusOr<int64_t> CountKeys() override {
    return internal::CountRows(*db_, "SELECT count(*) FROM keys");
  }

  absl::StatusOr<std::optional<RotationJournal>> ReadJournal() override {
    HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare("SELECT phase, source_vp, target_vp, keys_total, "
                                                 "keys_done, started_at, updated_at FROM "
                                                 "rotation_journal WHERE id=1"));
    HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return std::optional<RotationJournal>();
    RotationJournal j;
    auto phase = ParseRotationPhase(q.Text(0));
    if (!phase.ok()) {
      return Error(absl::StatusCode::kDataLoss, reason::kBadKeystore,
                   StrCat("keystore ", db_->path(), ": rotation journal has unknown phase '",
                          q.Text(0), "'"));
    }
    j.phase = *phase;
    j.source_vp = std::string(q.Text(1));
    j.target_vp = std::string(q.Text(2));
    j.keys_total = q.Int(3);
    j.keys_done = q.Int(4);
    j.started_at = std::string(q.Text(5));
    j.updated_at = std::string(q.Text(6));
    return std::optional<RotationJournal>(std::move(j));
  }

  // A phase change is synced in full: it is what resume and recover read.
  absl::Status WriteJournal(const RotationJournal& j) override {
    HSMSIM_RETURN_IF_ERROR(Sync(true));
    HSMSIM_ASSIGN_OR_RETURN(
        auto q, db_->Prepare("INSERT OR REPLACE INTO rotation_journal(id, phase, source_vp, "
                             "target_vp, keys_total, keys_done, started_at, updated_at) "
                             "VALUES(1,?,?,?,?,?,?,?)"));
    q.Bind(1, RotationPhaseName(j.phase), false).Bind(2, j.source_vp).Bind(3, j.target_vp);
    q.Bind(4, j.keys_total).Bind(5, j.keys_done);
    q.Bind(6, j.started_at.empty() ? NowUtc() : j.started_at, false).Bind(7, NowUtc(), false);
    return q.Run();
  }

  absl::StatusOr<int64_t> AbandonRotation(std::string_view target_wkid) override {
    int64_t dropped = 0;
    if (absl::Status done = InTransaction(
            Txn::kWrite,
            [&](const internal::BlobTables& t) -> absl::Status {
              HSMSIM_ASSIGN_OR_RETURN(
                  auto drop, db_->Prepare(StrCat("DELETE FROM ", t.next, " WHERE wkid=?")));
              drop.Bind(1, target_wkid);
              HSMSIM_RETURN_IF_ERROR(drop.Run());
              dropped = sqlite3_changes(db_->handle());
              return db_->Exec("DELETE FROM rotation_journal WHERE id=1");
            });
        !done.ok()) {
      return done;
    }
    return dropped;
  }

  // The last rotation error lives in meta: three rows, written and dropped
  // together.
  absl::Status RecordRotationError(const RotationError& e) override {
    return InTransaction(Txn::kWrite, [&](const internal::BlobTables&) -> absl::Status {
      const std::pair<const char*, std::string> rows[] = {{"rotation_last_error", e.error},
                                                          {"rotation_last_error_phase", e.phase},
                                                          {"rotation_last_error_at", NowUtc()}};
      for (const auto& [key, value] : rows) {
        HSMSIM_ASSIGN_OR_RETURN(
            auto q, db_->Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)"));
        q.Bind(1, key, false).Bind(2, value, false);
        HSMSIM_RETURN_IF_ERROR(q.Run());
      }
      return absl::OkStatus();
    });
  }

  absl::Status ClearRotationError() override {
    HSMSIM_RETURN_IF_ERROR(Sync(true));
    return db_->Exec("DELETE FROM meta WHERE key LIKE 'rotation_last_error%'");
  }

  absl::StatusOr<std::optional<RotationError>> ReadRotationError() override {
    HSMSIM_ASSIGN_OR_RETURN(
        auto q, db_->Prepare("SELECT key, value FROM meta WHERE key LIKE 'rotation_last_error%'"));
    RotationError e;
    bool any = false;
    for (;;) {
      HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      any = true;
      const std::string_view key = q.Text(0);
      std::string* field = key == "rotation_last_error"         ? &e.error
                           : key == "rotation_last_error_phase" ? &e.phase
                                                                : &e.recorded_at;
      *field = std::string(q.Text(1));
    }
    if (!any) return std::optional<RotationError>();
    return std::optional<RotationError>(std::move(e));
  }

  absl::StatusOr<std::unique_ptr<Keystore>> Reopen() override {
    return OpenSqliteKeystore(db_->path(), false);
  }

  const std::string& location() const override { return db_->path(); }

 private:
  // How a transaction reads and writes: a read snapshot; a write synced in
  // full at commit; a write whose commit is not synced (NORMAL: durable at
  // the next checkpoint, synced commit or Flush).
  enum class Txn { kRead, kWrite, kWriteUnsynced };

  // SetUp: WAL; a bounded 64 MiB page cache keeps memory flat however large
  // the store; temporary b-trees in memory.
  absl::Status SetUp() {
    full_sync_ = true;
    // Switching a new database to WAL needs it alone, and SQLite does not
    // call its busy handler for that: another command creating the same new
    // keystore at this moment makes it fail at once. Try again, up to 10 s.
    for (int attempt = 0;; ++attempt) {
      absl::Status wal = db_->Exec("PRAGMA journal_mode=WAL");
      if (wal.ok()) break;
      if (ReasonOf(wal) != reason::kKeystoreBusy || attempt == 500) return wal;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // A checkpoint every 10,000 WAL pages (40 MiB) rather than SQLite's
    // 1,000: bulk writes (keys create, re-encryption) pay the checkpoint's
    // two syncs a tenth as often (BM_KeystoreFill: about 20 % faster). What
    // a commit makes durable is the same (https://sqlite.org/wal.html).
    return db_->Exec(
        "PRAGMA synchronous=FULL; PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY; "
        "PRAGMA wal_autocheckpoint=10000;");
  }

  // Sync chooses how the next commits reach the disk (outside a
  // transaction): FULL syncs the WAL at every commit, so a committed
  // transaction survives a power loss; NORMAL syncs it at checkpoints only,
  // so a power loss (not a crash of the process) may lose the last commits
  // but never consistency. A FULL commit also makes every earlier commit
  // durable (they are in the same WAL).
  absl::Status Sync(bool full) {
    if (full == full_sync_) return absl::OkStatus();
    HSMSIM_RETURN_IF_ERROR(
        db_->Exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    full_sync_ = full;
    return absl::OkStatus();
  }

  // InTransaction runs `body` with the tables of the blob generation in
  // one transaction of kind `kind`: committed when it returns OK, rolled
  // back otherwise. Reads need it too: the generation and the rows must
  // come from the same snapshot, as another process may finalize a
  // rotation between two statements.
  template <typename Body>
  absl::Status InTransaction(Txn kind, Body&& body) {
    if (kind != Txn::kRead) HSMSIM_RETURN_IF_ERROR(Sync(kind == Txn::kWrite));
    HSMSIM_RETURN_IF_ERROR(db_->Exec(kind == Txn::kRead ? "BEGIN" : "BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(internal::BlobTables t, Tables());
      return body(t);
    }();
    return Finish(s);
  }

  // Tables names the tables of the keystore's blob generation.
  absl::StatusOr<internal::BlobTables> Tables() {
    HSMSIM_ASSIGN_OR_RETURN(auto q,
                            db_->Prepare("SELECT value FROM meta WHERE key='blob_generation'"));
    HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row || q.Int(0) < 0) {
      return Error(absl::StatusCode::kDataLoss, reason::kBadKeystore,
                   StrCat("keystore ", db_->path(), " has no valid blob generation"));
    }
    return internal::BlobTablesOf(q.Int(0));
  }

  // Select: a key with its blob, pending blob, problem and quarantine; the
  // caller adds " WHERE ...".
  static std::string Select(const internal::BlobTables& t) {
    return StrCat(
        "SELECT k.id, k.name, c.blob, c.wkid, n.blob, n.wkid, coalesce(p.reason, ''), "
        "coalesce(p.quarantined, 0) FROM keys k JOIN ",
        t.current, " c ON c.id=k.id LEFT JOIN ", t.next,
        " n ON n.id=k.id LEFT JOIN key_problems p ON p.id=k.id");
  }

  static StoredKey FromRow(const internal::Statement& q) {
    StoredKey k;
    k.id = q.Int(0);
    k.name = std::string(q.Text(1));
    k.blob = std::string(q.Text(2));
    k.wkid = std::string(q.Text(3));
    k.pending_blob = std::string(q.Text(4));
    k.pending_wkid = std::string(q.Text(5));
    k.problem = std::string(q.Text(6));
    k.quarantined = q.Int(7) != 0;
    return k;
  }

  // ReadWhere returns the keys that `where` selects, `bind` binding its
  // parameters, in one read snapshot.
  template <typename Bind>
  absl::StatusOr<std::vector<StoredKey>> ReadWhere(std::string_view where, Bind&& bind) {
    std::vector<StoredKey> out;
    if (absl::Status done = InTransaction(
            Txn::kRead,
            [&](const internal::BlobTables& t) -> absl::Status {
              HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare(StrCat(Select(t), " WHERE ", where)));
              bind(q);
              while (true) {
                HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
                if (!row) break;
                out.push_back(FromRow(q));
              }
              return absl::OkStatus();
            });
        !done.ok()) {
      return done;
    }
    return out;
  }

  // FindRow returns the key called `name`, or std::nullopt, in the open
  // transaction.
  absl::StatusOr<std::optional<StoredKey>> FindRow(const internal::BlobTables& t,
                                                   std::string_view name) {
    HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare(StrCat(Select(t), " WHERE k.name=?")));
    q.Bind(1, name, false);
    HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return std::optional<StoredKey>();
    return std::optional<StoredKey>(FromRow(q));
  }

  // Rows per multi-row INSERT of InsertKeys. One statement per group of
  // rows keeps its B-tree cursor open from row to row (each row appended
  // where the last one went, without a seek from the root) and pays the
  // statement's set-up (step, halt, reset) once.
  static constexpr size_t kInsertGroup = 64;

  // The statements of InsertKeys, prepared once per transaction.
  struct KeyInserts {
    internal::Statement names;    // kInsertGroup keys: (id, name)
    internal::Statement blobs;    // kInsertGroup blobs of the current generation
    internal::Statement name;     // one key
    internal::Statement blob;     // one blob of the current generation
    internal::Statement pending;  // one blob of the next generation
  };

  absl::StatusOr<KeyInserts> PrepareInserts(const internal::BlobTables& t) {
    std::string names = "INSERT INTO keys(id, name) VALUES(?,?)";
    std::string blobs = StrCat("INSERT INTO ", t.current, "(id, blob, wkid) VALUES(?,?,?)");
    for (size_t i = 1; i < kInsertGroup; ++i) {
      names += ",(?,?)";
      blobs += ",(?,?,?)";
    }
    HSMSIM_ASSIGN_OR_RETURN(auto names_n, db_->Prepare(names));
    HSMSIM_ASSIGN_OR_RETURN(auto blobs_n, db_->Prepare(blobs));
    HSMSIM_ASSIGN_OR_RETURN(auto name, db_->Prepare("INSERT INTO keys(id, name) VALUES(?,?)"));
    HSMSIM_ASSIGN_OR_RETURN(auto blob, db_->Prepare(StrCat("INSERT INTO ", t.current,
                                                           "(id, blob, wkid) VALUES(?,?,?)")));
    HSMSIM_ASSIGN_OR_RETURN(auto pending, db_->Prepare(StrCat("INSERT INTO ", t.next,
                                                              "(id, blob, wkid) VALUES(?,?,?)")));
    return KeyInserts{std::move(names_n), std::move(blobs_n), std::move(name), std::move(blob),
                      std::move(pending)};
  }

  // InsertKeys inserts `keys` in the open transaction: the key, its blob in
  // the current generation and any pending blob in the next. The ids are
  // the ones SQLite would choose (one above the largest, in order), given
  // here so that a group of keys and their blobs go in one statement each.
  // The keys' bytes stay in `keys` while each statement runs (Run resets
  // it): they are bound without a copy.
  absl::Status InsertKeys(const internal::BlobTables& t, const std::vector<PlacedKey>& keys) {
    HSMSIM_ASSIGN_OR_RETURN(int64_t last,
                            internal::CountRows(*db_, "SELECT coalesce(max(id), 0) FROM keys"));
    HSMSIM_ASSIGN_OR_RETURN(KeyInserts ins, PrepareInserts(t));
    for (size_t i = 0; i < keys.size(); i += kInsertGroup) {
      const size_t n = std::min(kInsertGroup, keys.size() - i);
      HSMSIM_RETURN_IF_ERROR(InsertGroup(ins, &keys[i], n, last + 1 + static_cast<int64_t>(i)));
    }
    return absl::OkStatus();
  }

  // InsertGroup inserts the `n` keys at `keys` with ids `first_id`... (a
  // whole group in one statement per table, else one row at a time).
  absl::Status InsertGroup(KeyInserts& ins, const PlacedKey* keys, size_t n, int64_t first_id) {
    bool inserted = false;
    if (n == kInsertGroup) {
      for (size_t j = 0; j < n; ++j) {
        const int p = static_cast<int>(2 * j);
        ins.names.Bind(p + 1, first_id + static_cast<int64_t>(j));
        ins.names.BindUnowned(p + 2, keys[j].name, false);
      }
      absl::Status named = ins.names.Run();
      if (!named.ok()) {
        // The statement was undone; one row at a time names the key.
        ins.names.Reset();
        if (ReasonOf(named) != reason::kKeyExists) return named;
      } else {
        for (size_t j = 0; j < n; ++j) {
          const int p = static_cast<int>(3 * j);
          ins.blobs.Bind(p + 1, first_id + static_cast<int64_t>(j));
          ins.blobs.BindUnowned(p + 2, keys[j].blob).BindUnowned(p + 3, keys[j].wkid);
        }
        HSMSIM_RETURN_IF_ERROR(ins.blobs.Run());
        inserted = true;
      }
    }
    for (size_t j = 0; j < n; ++j) {
      const PlacedKey& k = keys[j];
      const int64_t id = first_id + static_cast<int64_t>(j);
      if (!inserted) {
        ins.name.Bind(1, id).BindUnowned(2, k.name, false);
        if (absl::Status run = ins.name.Run(); !run.ok()) {
          if (ReasonOf(run) == reason::kKeyExists) {
            return Error(absl::StatusCode::kAlreadyExists, reason::kKeyExists,
                         StrCat("a key named '", k.name, "' already exists in ", db_->path()));
          }
          return run;
        }
        ins.blob.Bind(1, id).BindUnowned(2, k.blob).BindUnowned(3, k.wkid);
        HSMSIM_RETURN_IF_ERROR(ins.blob.Run());
      }
      if (!k.pending_blob.empty()) {
        ins.pending.Bind(1, id).BindUnowned(2, k.pending_blob).BindUnowned(3, k.pending_wkid);
        HSMSIM_RETURN_IF_ERROR(ins.pending.Run());
      }
    }
    return absl::OkStatus();
  }

  // StorePendingIn appends `rewrapped` to the next generation and counts
  // them in the journal, in the open transaction.
  absl::Status StorePendingIn(const internal::BlobTables& t,
                              const std::vector<RewrappedKey>& rewrapped) {
    HSMSIM_ASSIGN_OR_RETURN(auto insert, db_->Prepare(StrCat("INSERT OR REPLACE INTO ", t.next,
                                                             "(id, blob, wkid) VALUES(?,?,?)")));
    for (const RewrappedKey& r : rewrapped) {
      insert.Bind(1, r.id).BindUnowned(2, r.blob).BindUnowned(3, r.wkid);
      HSMSIM_RETURN_IF_ERROR(insert.Run());
    }
    HSMSIM_ASSIGN_OR_RETURN(
        auto journal,
        db_->Prepare("UPDATE rotation_journal SET keys_done=keys_done+?, updated_at=?"));
    journal.Bind(1, static_cast<int64_t>(rewrapped.size())).Bind(2, NowUtc(), false);
    return journal.Run();
  }

  // SwitchGeneration makes the next generation current in the open
  // transaction (PromotePending): pending blobs under another WKID than
  // `target_wkid` are dropped first; keys without a pending blob get their
  // blob copied over (none, when re-encryption went through every key);
  // the generation number moves on; the old generation is emptied.
  // `promoted` is the number of pending blobs that became blobs. Cost: no
  // row is rewritten when every key had a pending blob, but the WKID check,
  // the counts and emptying the old generation read every page of the two
  // tables (sequential reads: about 0.4 s for 1M keys on the development
  // machine, docs/performance.md).
  // INVARIANT: keys are never deleted, so count(next) == count(keys) means
  // every key has a pending blob.
  absl::Status SwitchGeneration(const internal::BlobTables& t, std::string_view target_wkid,
                                int64_t& promoted) {
    HSMSIM_ASSIGN_OR_RETURN(auto other,
                            db_->Prepare(StrCat("DELETE FROM ", t.next, " WHERE wkid<>?")));
    other.Bind(1, target_wkid);
    HSMSIM_RETURN_IF_ERROR(other.Run());
    HSMSIM_ASSIGN_OR_RETURN(promoted,
                            internal::CountRows(*db_, StrCat("SELECT count(*) FROM ", t.next)));
    if (promoted == 0) return absl::OkStatus();
    HSMSIM_ASSIGN_OR_RETURN(int64_t keys, internal::CountRows(*db_, "SELECT count(*) FROM keys"));
    if (promoted < keys) {
      HSMSIM_RETURN_IF_ERROR(db_->Exec(StrCat(
          "INSERT INTO ", t.next, "(id, blob, wkid) SELECT id, blob, wkid FROM ", t.current,
          " c WHERE NOT EXISTS (SELECT 1 FROM ", t.next, " x WHERE x.id=c.id) ORDER BY id")));
    }
    HSMSIM_RETURN_IF_ERROR(
        db_->Exec("UPDATE meta SET value=CAST(value AS INTEGER)+1 WHERE key='blob_generation'"));
    return db_->Exec(StrCat("DELETE FROM ", t.current));
  }

  // CountPairs counts the keys per (blob WKID, pending WKID), sorted, in
  // the open transaction. One pass in key order; the few distinct pairs
  // are kept in `out`.
  absl::Status CountPairs(const internal::BlobTables& t, std::vector<WkidPairCount>& out) {
    HSMSIM_ASSIGN_OR_RETURN(
        auto q, db_->Prepare(StrCat("SELECT c.wkid, n.wkid FROM ", t.current, " c LEFT JOIN ",
                                    t.next, " n ON n.id=c.id")));
    size_t last = 0;
    while (true) {
      HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      const std::string_view wkid = q.Text(0);
      const std::string_view pending = q.Text(1);
      if (last >= out.size() || out[last].wkid != wkid || out[last].pending_wkid != pending) {
        last =
            static_cast<size_t>(std::find_if(out.begin(), out.end(),
                                             [&](const WkidPairCount& c) {
                                               return c.wkid == wkid && c.pending_wkid == pending;
                                             }) -
                                out.begin());
        if (last == out.size())
          out.push_back(WkidPairCount{std::string(wkid), std::string(pending), 0});
      }
      ++out[last].count;
    }
    std::sort(out.begin(), out.end(), [](const WkidPairCount& a, const WkidPairCount& b) {
      return std::tie(a.wkid, a.pending_wkid) < std::tie(b.wkid, b.pending_wkid);
    });
    return absl::OkStatus();
  }

  // Reserve reserves `count` key numbers for `prefix` in the open
  // transaction (ReserveKeyNumbers); `first` is the first.
  absl::Status Reserve(std::string_view prefix, int64_t count, int64_t& first) {
    HSMSIM_ASSIGN_OR_RETURN(int64_t highest, HighestKeyNumber(prefix));
    const std::string meta_key = StrCat("reserved_key_number:", prefix);
    HSMSIM_ASSIGN_OR_RETURN(auto reserved, db_->Prepare("SELECT value FROM meta WHERE key=?"));
    reserved.Bind(1, meta_key, false);
    HSMSIM_ASSIGN_OR_RETURN(bool row, reserved.Step());
    if (row) highest = std::max(highest, reserved.Int(0));  // TEXT, read as an integer
    first = highest + 1;
    HSMSIM_ASSIGN_OR_RETURN(auto update,
                            db_->Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)"));
    update.Bind(1, meta_key, false).Bind(2, std::to_string(first + count - 1), false);
    return update.Run();
  }

  std::string LockPath() const { return StrCat(db_->path(), ".rotation-lock"); }

  // HighestKeyNumber returns the largest N of a stored name PREFIX<N>, or 0.
  absl::StatusOr<int64_t> HighestKeyNumber(std::string_view prefix) {
    // Names with the prefix form one range of the name index; 0xFF never
    // occurs in UTF-8, so PREFIX + 0xFF bounds it.
    HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare("SELECT name FROM keys WHERE name>=? AND name<?"));
    q.Bind(1, prefix, false).Bind(2, StrCat(prefix, "\xff"), false);
    int64_t highest = 0;
    while (true) {
      HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      highest = std::max(highest, KeyNumber(q.Text(0), prefix));
    }
    return highest;
  }

  // Finish commits when `s` is OK, else rolls back and returns `s`.
  absl::Status Finish(const absl::Status& s) {
    if (!s.ok()) {
      (void)db_->Exec("ROLLBACK");
      return s;
    }
    return db_->Exec("COMMIT");
  }

  std::unique_ptr<internal::Database> db_;
  bool full_sync_ = true;  // the connection's synchronous setting (Sync)
};

}  // namespace

bool SameRotationState(const std::optional<RotationJournal>& a,
                       const std::optional<RotationJournal>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->phase == b->phase && a->source_vp == b->source_vp && a->target_vp == b->target_vp &&
         a->started_at == b->started_at;
}

absl::StatusOr<std::unique_ptr<RewrapClaims>> Keystore::OpenRewrapClaims() {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeystoreNotShared,
               StrCat("keystore ", location(),
                      " is a SQLite file, which one hsmctl rotates at its full write speed; "
                      "rotation workers (mk rotate --join) share a PostgreSQL keystore "
                      "(hsmctl keys set-keystore postgresql://...)"));
}

RotationLockHolder RotationLockHolder::Self(std::string command) {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return RotationLockHolder{::getpid(), host, NowUtc(), std::move(command)};
}

std::string RotationLockHolder::Describe() const {
  return StrCat("pid ", pid, " on ", host.empty() ? std::string("?") : host, " since ", started_at,
                command.empty() ? std::string() : StrCat(" (", command, ")"));
}

std::string_view RotationPhaseName(RotationPhase phase) {
  switch (phase) {
    case RotationPhase::kReencrypting:
      return "REENCRYPTING";
    case RotationPhase::kReencrypted:
      return "REENCRYPTED";
    case RotationPhase::kPromoting:
      return "PROMOTING";
    case RotationPhase::kFinalizing:
      return "FINALIZING";
    case RotationPhase::kDone:
      return "DONE";
  }
  return "UNKNOWN";
}

absl::StatusOr<RotationPhase> ParseRotationPhase(std::string_view name) {
  for (RotationPhase p :
       {RotationPhase::kReencrypting, RotationPhase::kReencrypted, RotationPhase::kPromoting,
        RotationPhase::kFinalizing, RotationPhase::kDone}) {
    if (RotationPhaseName(p) == name) return p;
  }
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadPhase,
               StrCat("unknown rotation phase '", name, "'"));
}

absl::StatusOr<std::unique_ptr<Keystore>> OpenSqliteKeystore(const std::string& path, bool create) {
  HSMSIM_ASSIGN_OR_RETURN(auto db, internal::Database::Open(path, create));
  auto store = std::make_unique<SqliteKeystore>(std::move(db));
  HSMSIM_RETURN_IF_ERROR(store->Init(create));
  return std::unique_ptr<Keystore>(std::move(store));
}

absl::StatusOr<KeystoreMigration> MigrateSqliteKeystore(const std::string& path) {
  HSMSIM_ASSIGN_OR_RETURN(auto db, internal::Database::Open(path, false));
  SqliteKeystore store(std::move(db));
  return store.Migrate();
}

}  // namespace hsmsim::host

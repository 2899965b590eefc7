#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/internal/sqlite.h"
#include "host/keystore.h"

namespace hsmsim::host {
namespace {

constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  blob BLOB NOT NULL,
  wkid BLOB NOT NULL,
  pending_blob BLOB,
  pending_wkid BLOB);
CREATE INDEX IF NOT EXISTS keys_by_wkid ON keys(wkid, id);
CREATE TABLE IF NOT EXISTS key_problems(
  id INTEGER PRIMARY KEY REFERENCES keys(id),
  reason TEXT NOT NULL,
  quarantined INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rotation_journal(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  phase TEXT NOT NULL,
  source_vp BLOB NOT NULL,
  target_vp BLOB NOT NULL,
  keys_total INTEGER NOT NULL,
  keys_done INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  updated_at TEXT NOT NULL);
)sql";

constexpr char kProblemsTable[] = R"sql(
CREATE TABLE IF NOT EXISTS key_problems(
  id INTEGER PRIMARY KEY REFERENCES keys(id),
  reason TEXT NOT NULL,
  quarantined INTEGER NOT NULL DEFAULT 0);
)sql";

std::string NowUtc() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string DescribeJournal(const std::optional<RotationJournal>& j) {
  if (!j.has_value()) return "no rotation journaled";
  return StrCat("rotation started ", j->started_at, " in phase ", RotationPhaseName(j->phase));
}

// KeyNumber returns N when `name` is PREFIX<N> (1..18 decimal digits), else -1.
int64_t KeyNumber(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.size() - prefix.size() > 18 ||
      name.substr(0, prefix.size()) != prefix) {
    return -1;
  }
  int64_t n = 0;
  for (char c : name.substr(prefix.size())) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

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

class SqliteKeystore final : public Keystore {
 public:
  explicit SqliteKeystore(std::unique_ptr<internal::Database> db) : db_(std::move(db)) {}

  absl::Status Init(bool create) {
    // WAL with a full sync per transaction: a committed batch of
    // re-encrypted blobs and its journal entry survive a power loss. A
    // bounded 64 MiB page cache keeps memory flat however large the store.
    HSMSIM_RETURN_IF_ERROR(
        db_->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-65536; "
                  "PRAGMA temp_store=MEMORY;"));
    HSMSIM_ASSIGN_OR_RETURN(auto has_meta,
                            db_->Prepare("SELECT count(*) FROM sqlite_master WHERE name='meta'"));
    HSMSIM_ASSIGN_OR_RETURN(bool row, has_meta.Step());
    const bool exists = row && has_meta.Int(0) > 0;
    if (!exists) {
      HSMSIM_ASSIGN_OR_RETURN(auto any, db_->Prepare("SELECT count(*) FROM sqlite_master"));
      HSMSIM_ASSIGN_OR_RETURN(bool any_row, any.Step());
      if (any_row && any.Int(0) > 0) {
        return Error(
            absl::StatusCode::kDataLoss, reason::kBadKeystore,
            StrCat("keystore ", db_->path(), " is a SQLite database but not an hsmsim keystore"));
      }
      if (!create) {
        return Error(absl::StatusCode::kNotFound, reason::kNoKeystore,
                     StrCat("keystore ", db_->path(), " is empty (hsmctl keys create makes it)"));
      }
      HSMSIM_RETURN_IF_ERROR(
          db_->Exec(StrCat("BEGIN;", kSchema, "INSERT INTO meta VALUES('schema_version','",
                           kSchemaVersion, "');COMMIT;")));
      return absl::OkStatus();
    }
    HSMSIM_ASSIGN_OR_RETURN(auto version,
                            db_->Prepare("SELECT value FROM meta WHERE key='schema_version'"));
    HSMSIM_ASSIGN_OR_RETURN(bool vrow, version.Step());
    if (!vrow) {
      return Error(absl::StatusCode::kDataLoss, reason::kBadKeystore,
                   StrCat("keystore ", db_->path(), " has no schema version"));
    }
    const std::string v(version.Text(0));
    if (v != std::to_string(kSchemaVersion)) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kUnsupportedKeystoreVersion,
                   StrCat("keystore ", db_->path(), " has schema version ", v,
                          "; this hsmctl reads version ", kSchemaVersion));
    }
    // A keystore made before key_problems existed gets it, empty (an
    // addition that older readers ignore: they simply see no problems).
    return db_->Exec(kProblemsTable);
  }

  absl::Status AddKeys(const std::vector<NewKey>& keys) override {
    std::vector<PlacedKey> placed;
    placed.reserve(keys.size());
    for (const NewKey& k : keys) placed.push_back(PlacedKey{k.name, k.blob, k.wkid, "", ""});
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    return Finish(InsertKeys(placed));
  }

  absl::Status AddKeysPlanned(const std::vector<PlacedKey>& keys,
                              const std::optional<RotationJournal>& planned) override {
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> now, ReadJournal());
      if (!SameRotationState(planned, now)) {
        return Error(
            absl::StatusCode::kAborted, reason::kJournalChanged,
            StrCat("keystore ", db_->path(), ": the rotation journal changed (",
                   DescribeJournal(planned), " when the keys were planned, ", DescribeJournal(now),
                   " now); ", keys.size(), " key(s) were not stored"));
      }
      return InsertKeys(keys);
    }();
    return Finish(s);
  }

  absl::StatusOr<int64_t> ReserveKeyNumbers(std::string_view prefix, int64_t count) override {
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    int64_t first = 0;
    absl::Status s = [&]() -> absl::Status {
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
    }();
    HSMSIM_RETURN_IF_ERROR(Finish(s));
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
      return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationLocked,
                   StrCat("another process is rotating keystore ", db_->path(), ": ",
                          other.pid == 0 ? std::string("a process that has not named itself yet")
                                         : other.Describe(),
                          "; wait for it to finish, or stop it (the lock is released when it "
                          "exits) and run hsmctl recover"));
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

  // InsertKeys inserts `keys` in the open transaction.
  absl::Status InsertKeys(const std::vector<PlacedKey>& keys) {
    HSMSIM_ASSIGN_OR_RETURN(auto insert,
                            db_->Prepare("INSERT INTO keys(name, blob, wkid, pending_blob, "
                                         "pending_wkid) VALUES(?,?,?,?,?)"));
    for (const PlacedKey& k : keys) {
      insert.Bind(1, k.name, false).Bind(2, k.blob).Bind(3, k.wkid);
      if (k.pending_blob.empty()) {
        insert.BindNull(4).BindNull(5);
      } else {
        insert.Bind(4, k.pending_blob).Bind(5, k.pending_wkid);
      }
      absl::Status run = insert.Run();
      if (!run.ok()) {
        insert.Reset();
        if (ReasonOf(run) == reason::kKeyExists) {
          return Error(absl::StatusCode::kAlreadyExists, reason::kKeyExists,
                       StrCat("a key named '", k.name, "' already exists in ", db_->path()));
        }
        return run;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<StoredKey>> FindKey(std::string_view name) override {
    HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare(StrCat(kSelect, " WHERE name=?")));
    q.Bind(1, name, false);
    HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return std::optional<StoredKey>();
    return std::optional<StoredKey>(FromRow(q));
  }

  absl::StatusOr<std::vector<StoredKey>> ReadPage(int64_t after_id, size_t limit) override {
    HSMSIM_ASSIGN_OR_RETURN(auto q,
                            db_->Prepare(StrCat(kSelect, " WHERE id>? ORDER BY id LIMIT ?")));
    q.Bind(1, after_id).Bind(2, static_cast<int64_t>(limit));
    return Collect(q);
  }

  absl::StatusOr<std::vector<StoredKey>> ReadNeedingRewrap(int64_t after_id, size_t limit,
                                                           std::string_view source_wkid,
                                                           std::string_view target_wkid) override {
    HSMSIM_ASSIGN_OR_RETURN(
        auto q, db_->Prepare(StrCat(kSelect,
                                    " WHERE wkid=? AND id>? AND (pending_wkid IS NULL OR "
                                    "pending_wkid<>?) AND ",
                                    kNotQuarantined, " ORDER BY id LIMIT ?")));
    q.Bind(1, source_wkid).Bind(2, after_id).Bind(3, target_wkid);
    q.Bind(4, static_cast<int64_t>(limit));
    return Collect(q);
  }

  absl::StatusOr<std::vector<StoredKey>> ReadUnder(int64_t after_id, size_t limit,
                                                   std::string_view wkid) override {
    HSMSIM_ASSIGN_OR_RETURN(auto q,
                            db_->Prepare(StrCat(kSelect,
                                                " WHERE wkid=? AND id>? AND pending_wkid IS NULL "
                                                "AND ",
                                                kNotQuarantined, " ORDER BY id LIMIT ?")));
    q.Bind(1, wkid).Bind(2, after_id).Bind(3, static_cast<int64_t>(limit));
    return Collect(q);
  }

  absl::Status StorePending(const std::vector<RewrappedKey>& rewrapped) override {
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(
          auto update, db_->Prepare("UPDATE keys SET pending_blob=?, pending_wkid=? WHERE id=?"));
      for (const RewrappedKey& r : rewrapped) {
        update.Bind(1, r.blob).Bind(2, r.wkid).Bind(3, r.id);
        HSMSIM_RETURN_IF_ERROR(update.Run());
      }
      HSMSIM_ASSIGN_OR_RETURN(
          auto journal,
          db_->Prepare("UPDATE rotation_journal SET keys_done=keys_done+?, updated_at=?"));
      journal.Bind(1, static_cast<int64_t>(rewrapped.size())).Bind(2, NowUtc(), false);
      return journal.Run();
    }();
    return Finish(s);
  }

  absl::Status ReplaceBlobs(const std::vector<RewrappedKey>& rewrapped) override {
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto update,
                              db_->Prepare("UPDATE keys SET blob=?, wkid=?, pending_blob=NULL, "
                                           "pending_wkid=NULL WHERE id=?"));
      for (const RewrappedKey& r : rewrapped) {
        update.Bind(1, r.blob).Bind(2, r.wkid).Bind(3, r.id);
        HSMSIM_RETURN_IF_ERROR(update.Run());
      }
      return absl::OkStatus();
    }();
    return Finish(s);
  }

  absl::StatusOr<int64_t> PromotePending(std::string_view target_wkid, int64_t limit) override {
    // Walk the table in id ranges (a primary-key range scan), resuming where
    // the last call stopped; a range with nothing pending moves on.
    HSMSIM_ASSIGN_OR_RETURN(auto max_id, db_->Prepare("SELECT coalesce(max(id), 0) FROM keys"));
    HSMSIM_ASSIGN_OR_RETURN(bool row, max_id.Step());
    const int64_t last = row ? max_id.Int(0) : 0;
    HSMSIM_ASSIGN_OR_RETURN(
        auto q, db_->Prepare("UPDATE keys SET blob=pending_blob, wkid=pending_wkid, "
                             "pending_blob=NULL, pending_wkid=NULL WHERE id>? AND id<=? AND "
                             "pending_wkid=?"));
    while (promote_cursor_ < last) {
      const int64_t to = std::min(last, promote_cursor_ + limit);
      q.Bind(1, promote_cursor_).Bind(2, to).Bind(3, target_wkid);
      HSMSIM_RETURN_IF_ERROR(q.Run());
      promote_cursor_ = to;
      const int64_t changed = sqlite3_changes(db_->handle());
      if (changed > 0) return changed;
    }
    promote_cursor_ = 0;
    return int64_t{0};
  }

  absl::Status RecordBlobProblems(const std::vector<BlobProblem>& problems) override {
    if (problems.empty()) return absl::OkStatus();
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto upsert,
                              db_->Prepare("INSERT INTO key_problems(id, reason) VALUES(?,?) "
                                           "ON CONFLICT(id) DO UPDATE SET reason=excluded.reason"));
      for (const BlobProblem& p : problems) {
        upsert.Bind(1, p.id).Bind(2, p.reason, false);
        HSMSIM_RETURN_IF_ERROR(upsert.Run());
      }
      return absl::OkStatus();
    }();
    return Finish(s);
  }

  absl::Status ClearBlobProblems() override {
    return db_->Exec("DELETE FROM key_problems WHERE quarantined=0");
  }

  absl::StatusOr<std::vector<StoredKey>> ReadProblemKeys(int64_t after_id, size_t limit) override {
    HSMSIM_ASSIGN_OR_RETURN(
        auto q, db_->Prepare(StrCat(kSelect,
                                    " WHERE id IN (SELECT id FROM key_problems) AND id>? "
                                    "ORDER BY id LIMIT ?")));
    q.Bind(1, after_id).Bind(2, static_cast<int64_t>(limit));
    return Collect(q);
  }

  absl::Status SetQuarantined(const std::vector<std::string>& names, bool quarantined) override {
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto find, db_->Prepare(StrCat(kSelect, " WHERE name=?")));
      HSMSIM_ASSIGN_OR_RETURN(auto mark,
                              db_->Prepare("UPDATE key_problems SET quarantined=? WHERE id=?"));
      for (const std::string& name : names) {
        find.Bind(1, name, false);
        HSMSIM_ASSIGN_OR_RETURN(bool row, find.Step());
        if (!row) {
          find.Reset();
          return Error(absl::StatusCode::kNotFound, reason::kNoSuchKey,
                       StrCat("no key named '", name, "' in ", db_->path(), "; nothing changed"));
        }
        const StoredKey k = FromRow(find);
        find.Reset();
        if (quarantined && k.problem.empty()) {
          return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyNotUnreadable,
                       StrCat("key '", name,
                              "' has no recorded failure: no unit was found unable to open its "
                              "blob (hsmctl mk rotate's pre-check records them); nothing changed"));
        }
        if (k.problem.empty()) continue;  // releasing a key that was never quarantined
        mark.Bind(1, int64_t{quarantined ? 1 : 0}).Bind(2, k.id);
        HSMSIM_RETURN_IF_ERROR(mark.Run());
      }
      return absl::OkStatus();
    }();
    return Finish(s);
  }

  absl::StatusOr<std::vector<WkidPairCount>> CountQuarantined() override {
    HSMSIM_ASSIGN_OR_RETURN(auto q,
                            db_->Prepare("SELECT k.wkid, count(*) FROM keys k JOIN key_problems p "
                                         "ON p.id=k.id WHERE p.quarantined=1 GROUP BY k.wkid"));
    std::vector<WkidPairCount> out;
    while (true) {
      HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      out.push_back(WkidPairCount{std::string(q.Text(0)), std::string(), q.Int(1)});
    }
    return out;
  }

  absl::StatusOr<std::vector<WkidPairCount>> CountByWkid() override {
    HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare("SELECT wkid, pending_wkid, count(*) FROM keys "
                                                 "GROUP BY wkid, pending_wkid"));
    std::vector<WkidPairCount> out;
    while (true) {
      HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      out.push_back(WkidPairCount{std::string(q.Text(0)), std::string(q.Text(1)), q.Int(2)});
    }
    return out;
  }

  absl::StatusOr<int64_t> CountKeys() override {
    HSMSIM_ASSIGN_OR_RETURN(auto q, db_->Prepare("SELECT count(*) FROM keys"));
    HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
    return row ? q.Int(0) : 0;
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

  absl::Status WriteJournal(const RotationJournal& j) override {
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
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    int64_t dropped = 0;
    absl::Status s = [&]() -> absl::Status {
      HSMSIM_ASSIGN_OR_RETURN(auto drop, db_->Prepare("UPDATE keys SET pending_blob=NULL, "
                                                      "pending_wkid=NULL WHERE pending_wkid=?"));
      drop.Bind(1, target_wkid);
      HSMSIM_RETURN_IF_ERROR(drop.Run());
      dropped = sqlite3_changes(db_->handle());
      return db_->Exec("DELETE FROM rotation_journal WHERE id=1");
    }();
    HSMSIM_RETURN_IF_ERROR(Finish(s));
    return dropped;
  }

  // The last rotation error lives in meta (no schema change): three rows,
  // written and dropped together.
  absl::Status RecordRotationError(const RotationError& e) override {
    HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
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
    }();
    return Finish(s);
  }

  absl::Status ClearRotationError() override {
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

  const std::string& location() const override { return db_->path(); }

 private:
  static constexpr char kSelect[] =
      "SELECT id, name, blob, wkid, pending_blob, pending_wkid, "
      "coalesce((SELECT reason FROM key_problems p WHERE p.id=keys.id), ''), "
      "coalesce((SELECT quarantined FROM key_problems p WHERE p.id=keys.id), 0) FROM keys";
  static constexpr char kNotQuarantined[] =
      "id NOT IN (SELECT id FROM key_problems WHERE quarantined=1)";

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

  absl::StatusOr<std::vector<StoredKey>> Collect(internal::Statement& q) {
    std::vector<StoredKey> out;
    while (true) {
      HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      out.push_back(FromRow(q));
    }
    return out;
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
  int64_t promote_cursor_ = 0;  // PromotePending's position
};

}  // namespace

bool SameRotationState(const std::optional<RotationJournal>& a,
                       const std::optional<RotationJournal>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->phase == b->phase && a->source_vp == b->source_vp && a->target_vp == b->target_vp &&
         a->started_at == b->started_at;
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

}  // namespace hsmsim::host

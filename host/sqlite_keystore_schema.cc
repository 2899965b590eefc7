#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/internal/keystore_schema.h"

namespace hsmsim::host::internal {
namespace {

constexpr char kSchemaV2[] = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE);
CREATE TABLE blobs_0(id INTEGER PRIMARY KEY, blob BLOB NOT NULL, wkid BLOB NOT NULL);
CREATE TABLE blobs_1(id INTEGER PRIMARY KEY, blob BLOB NOT NULL, wkid BLOB NOT NULL);
CREATE TABLE key_problems(
  id INTEGER PRIMARY KEY REFERENCES keys(id),
  reason TEXT NOT NULL,
  quarantined INTEGER NOT NULL DEFAULT 0);
CREATE TABLE rotation_journal(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  phase TEXT NOT NULL,
  source_vp BLOB NOT NULL,
  target_vp BLOB NOT NULL,
  keys_total INTEGER NOT NULL,
  keys_done INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  updated_at TEXT NOT NULL);
INSERT INTO meta VALUES('schema_version', '2');
INSERT INTO meta VALUES('blob_generation', '0');
)sql";

// Version 1 -> 2. A version-1 keystore made before key_problems existed gets
// the table first (version 1 added it on open, empty).
constexpr char kMigrateV1ToV2[] = R"sql(
CREATE TABLE IF NOT EXISTS key_problems(
  id INTEGER PRIMARY KEY REFERENCES keys(id),
  reason TEXT NOT NULL,
  quarantined INTEGER NOT NULL DEFAULT 0);
CREATE TABLE blobs_0(id INTEGER PRIMARY KEY, blob BLOB NOT NULL, wkid BLOB NOT NULL);
CREATE TABLE blobs_1(id INTEGER PRIMARY KEY, blob BLOB NOT NULL, wkid BLOB NOT NULL);
INSERT INTO blobs_0(id, blob, wkid) SELECT id, blob, wkid FROM keys ORDER BY id;
INSERT INTO blobs_1(id, blob, wkid)
  SELECT id, pending_blob, pending_wkid FROM keys
  WHERE pending_blob IS NOT NULL AND pending_wkid IS NOT NULL ORDER BY id;
DROP INDEX IF EXISTS keys_by_wkid;
ALTER TABLE keys DROP COLUMN pending_wkid;
ALTER TABLE keys DROP COLUMN pending_blob;
ALTER TABLE keys DROP COLUMN wkid;
ALTER TABLE keys DROP COLUMN blob;
INSERT OR REPLACE INTO meta VALUES('blob_generation', '0');
UPDATE meta SET value='2' WHERE key='schema_version';
)sql";

}  // namespace

absl::StatusOr<int64_t> CountRows(Database& db, std::string_view sql) {
  HSMSIM_ASSIGN_OR_RETURN(auto q, db.Prepare(sql));
  HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
  return row ? q.Int(0) : 0;
}

BlobTables BlobTablesOf(int64_t generation) {
  return generation % 2 == 0 ? BlobTables{"blobs_0", "blobs_1"} : BlobTables{"blobs_1", "blobs_0"};
}

absl::Status CreateSchema(Database& db) {
  HSMSIM_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
    // Another process may have created it since this one looked (two
    // commands run at once on a new fleet): then it is there already.
    HSMSIM_ASSIGN_OR_RETURN(int64_t has_meta,
                            CountRows(db, "SELECT count(*) FROM sqlite_master WHERE name='meta'"));
    if (has_meta > 0) return absl::OkStatus();
    return db.Exec(kSchemaV2);
  }();
  if (!s.ok()) {
    (void)db.Exec("ROLLBACK");
    return s;
  }
  return db.Exec("COMMIT");
}

absl::StatusOr<int> ReadSchemaVersion(Database& db) {
  // One statement, one snapshot: another process may create the schema
  // between two.
  HSMSIM_ASSIGN_OR_RETURN(auto tables,
                          db.Prepare("SELECT (SELECT count(*) FROM sqlite_master WHERE "
                                     "name='meta'), (SELECT count(*) FROM sqlite_master)"));
  HSMSIM_ASSIGN_OR_RETURN(bool counted, tables.Step());
  const int64_t has_meta = counted ? tables.Int(0) : 0;
  const int64_t any = counted ? tables.Int(1) : 0;
  if (has_meta == 0) {
    if (any > 0) {
      return Error(
          absl::StatusCode::kDataLoss, reason::kBadKeystore,
          StrCat("keystore ", db.path(), " is a SQLite database but not an hsmsim keystore"));
    }
    return Error(absl::StatusCode::kNotFound, reason::kNoKeystore,
                 StrCat("keystore ", db.path(), " is empty (hsmctl keys create makes it)"));
  }
  HSMSIM_ASSIGN_OR_RETURN(auto q, db.Prepare("SELECT value FROM meta WHERE key='schema_version'"));
  HSMSIM_ASSIGN_OR_RETURN(bool row, q.Step());
  const std::string text = row ? std::string(q.Text(0)) : std::string();
  if (text.empty()) {
    return Error(absl::StatusCode::kDataLoss, reason::kBadKeystore,
                 StrCat("keystore ", db.path(), " has no schema version"));
  }
  int version = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || version > 100'000) return 0;  // CheckSchemaVersion: unknown
    version = version * 10 + (c - '0');
  }
  return version;
}

absl::Status CheckSchemaVersion(const Database& db, int version) {
  if (version == kKeystoreSchemaVersion) return absl::OkStatus();
  if (version == 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kUnsupportedKeystoreVersion,
                 StrCat("keystore ", db.path(),
                        " has schema version 1 (blobs updated in place); this hsmctl reads "
                        "version ",
                        kKeystoreSchemaVersion,
                        " (blob generations). Migrate it once with hsmctl keys migrate: every "
                        "key, blob and the rotation journal are kept; an older hsmctl cannot "
                        "read it afterwards"));
  }
  return Error(
      absl::StatusCode::kFailedPrecondition, reason::kUnsupportedKeystoreVersion,
      StrCat("keystore ", db.path(), " has schema version ",
             version == 0 ? std::string("(unreadable)") : std::to_string(version),
             ", which this hsmctl does not know (it reads version ", kKeystoreSchemaVersion,
             " and migrates version 1); use the hsmctl that "
             "wrote it"));
}

absl::StatusOr<KeystoreMigration> MigrateSchema(Database& db, int from) {
  KeystoreMigration m;
  m.from_version = from;
  m.to_version = kKeystoreSchemaVersion;
  if (from == kKeystoreSchemaVersion) {
    HSMSIM_ASSIGN_OR_RETURN(m.keys, CountRows(db, "SELECT count(*) FROM keys"));
    return m;
  }
  if (from != 1) {
    HSMSIM_RETURN_IF_ERROR(CheckSchemaVersion(db, from));
  }
  HSMSIM_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
    HSMSIM_ASSIGN_OR_RETURN(m.keys, CountRows(db, "SELECT count(*) FROM keys"));
    HSMSIM_ASSIGN_OR_RETURN(
        m.pending_blobs, CountRows(db,
                                   "SELECT count(*) FROM keys WHERE pending_blob IS NOT NULL AND "
                                   "pending_wkid IS NOT NULL"));
    return db.Exec(kMigrateV1ToV2);
  }();
  if (!s.ok()) {
    (void)db.Exec("ROLLBACK");
    return s;
  }
  HSMSIM_RETURN_IF_ERROR(db.Exec("COMMIT"));
  return m;
}

}  // namespace hsmsim::host::internal

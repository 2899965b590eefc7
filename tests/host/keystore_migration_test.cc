// Migrating a SQLite keystore of schema version 1 (blobs updated in place)
// to version 2 (blob generations): explicit, complete, once, and refused
// with a clear error where it cannot be done.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/status.h"
#include "gtest/gtest.h"
#include "host/keystore.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::host {
namespace {

// The schema of version 1, as hsmsim wrote it before blob generations: a
// frozen format, not to be kept in step with the code.
constexpr char kVersion1[] = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  blob BLOB NOT NULL,
  wkid BLOB NOT NULL,
  pending_blob BLOB,
  pending_wkid BLOB);
CREATE INDEX keys_by_wkid ON keys(wkid, id);
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
INSERT INTO meta VALUES('schema_version', '1');
INSERT INTO meta VALUES('reserved_key_number:k', '9');
INSERT INTO keys VALUES(1, 'k1', x'b1', x'41414141414141414141414141414141', x'c1',
                        x'42424242424242424242424242424242');
INSERT INTO keys VALUES(2, 'k2', x'b2', x'41414141414141414141414141414141', x'c2',
                        x'42424242424242424242424242424242');
INSERT INTO keys VALUES(3, 'k3', x'b3', x'41414141414141414141414141414141', NULL, NULL);
INSERT INTO keys VALUES(5, 'k5', x'b5', x'41414141414141414141414141414141', NULL, NULL);
INSERT INTO keys VALUES(6, 'k6', x'b6', x'41414141414141414141414141414141', NULL, NULL);
INSERT INTO key_problems VALUES(5, 'BLOB_AUTHENTICATION_FAILED', 1);
INSERT INTO key_problems VALUES(6, 'BLOB_AUTHENTICATION_FAILED', 0);
INSERT INTO rotation_journal VALUES(1, 'REENCRYPTING',
  x'4141414141414141414141414141414178787878787878787878787878787878',
  x'4242424242424242424242424242424279797979797979797979797979797979',
  5, 2, '2026-11-01T10:00:00Z', '2026-11-01T10:00:05Z');
)sql";

class KeystoreMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = tmp_.Join("keystore.db"); }

  void Exec(const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  test_support::TempDir tmp_;
  std::string path_;
  const std::string a_ = std::string(16, 'A');
  const std::string b_ = std::string(16, 'B');
};

TEST_F(KeystoreMigrationTest, Version1IsRefusedUntilMigratedThenKeepsEveryKeyAndTheJournal) {
  Exec(kVersion1);
  auto refused = OpenSqliteKeystore(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), "UNSUPPORTED_KEYSTORE_VERSION");
  EXPECT_NE(refused.status().message().find("hsmctl keys migrate"), std::string_view::npos)
      << refused.status();
  // Opening for creation does not touch it either.
  EXPECT_EQ(ReasonOf(OpenSqliteKeystore(path_, true).status()), "UNSUPPORTED_KEYSTORE_VERSION");

  auto migrated = MigrateSqliteKeystore(path_);
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  EXPECT_EQ(migrated->from_version, 1);
  EXPECT_EQ(migrated->to_version, 2);
  EXPECT_EQ(migrated->keys, 5);
  EXPECT_EQ(migrated->pending_blobs, 2);

  auto store = OpenSqliteKeystore(path_, false);
  ASSERT_TRUE(store.ok()) << store.status();
  auto all = (*store)->ReadPage(0, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 5u);
  const int64_t ids[] = {1, 2, 3, 5, 6};
  for (size_t i = 0; i < all->size(); ++i) {
    const StoredKey& k = (*all)[i];
    EXPECT_EQ(k.id, ids[i]);
    EXPECT_EQ(k.name, "k" + std::to_string(ids[i]));
    EXPECT_EQ(k.blob, std::string(1, static_cast<char>(0xb0 + ids[i])));
    EXPECT_EQ(k.wkid, a_);
    EXPECT_EQ(k.pending_blob,
              ids[i] <= 2 ? std::string(1, static_cast<char>(0xc0 + ids[i])) : std::string());
    EXPECT_EQ(k.pending_wkid, ids[i] <= 2 ? b_ : std::string());
    EXPECT_EQ(k.problem, ids[i] >= 5 ? "BLOB_AUTHENTICATION_FAILED" : "");
    EXPECT_EQ(k.quarantined, ids[i] == 5);
  }
  auto journal = (*store)->ReadJournal();
  ASSERT_TRUE(journal.ok() && journal->has_value());
  EXPECT_EQ((*journal)->phase, RotationPhase::kReencrypting);
  EXPECT_EQ((*journal)->keys_done, 2);
  EXPECT_EQ((*journal)->started_at, "2026-11-01T10:00:00Z");
  // Names reserved before stay reserved.
  auto next = (*store)->ReserveKeyNumbers("k", 1);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 10);

  // The open rotation goes on where it stopped: k3 and k6 still need
  // re-encryption (k5 is quarantined), then finalization.
  auto todo = (*store)->ReadNeedingRewrap(0, 100, a_, b_);
  ASSERT_TRUE(todo.ok());
  ASSERT_EQ(todo->size(), 2u);
  EXPECT_EQ((*todo)[0].name, "k3");
  EXPECT_EQ((*todo)[1].name, "k6");
  ASSERT_TRUE((*store)->StorePending({{3, "n3", b_}, {6, "n6", b_}}).ok());
  EXPECT_EQ(*(*store)->PromotePending(b_), 4);
  auto k5 = (*store)->FindKey("k5");
  ASSERT_TRUE(k5.ok() && k5->has_value());
  EXPECT_EQ((*k5)->wkid, a_) << "the quarantined key keeps its blob";
  auto k1 = (*store)->FindKey("k1");
  ASSERT_TRUE(k1.ok() && k1->has_value());
  EXPECT_EQ((*k1)->blob, "\xc1");
  EXPECT_EQ((*k1)->wkid, b_);
}

// The oldest version-1 keystores had neither key_problems nor a journal.
TEST_F(KeystoreMigrationTest, Version1WithoutProblemsTableOrJournalMigrates) {
  Exec(R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE keys(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, blob BLOB NOT NULL,
                  wkid BLOB NOT NULL, pending_blob BLOB, pending_wkid BLOB);
CREATE INDEX keys_by_wkid ON keys(wkid, id);
CREATE TABLE rotation_journal(id INTEGER PRIMARY KEY CHECK (id = 1), phase TEXT NOT NULL,
  source_vp BLOB NOT NULL, target_vp BLOB NOT NULL, keys_total INTEGER NOT NULL,
  keys_done INTEGER NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL);
INSERT INTO meta VALUES('schema_version', '1');
INSERT INTO keys VALUES(1, 'a', x'01', x'41414141414141414141414141414141', NULL, NULL);
-- A damaged row: a pending blob without its WKID is not carried over.
INSERT INTO keys VALUES(2, 'b', x'02', x'41414141414141414141414141414141', x'ff', NULL);
)sql");
  auto migrated = MigrateSqliteKeystore(path_);
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  EXPECT_EQ(migrated->keys, 2);
  EXPECT_EQ(migrated->pending_blobs, 0);
  auto store = OpenSqliteKeystore(path_, false);
  ASSERT_TRUE(store.ok()) << store.status();
  auto b = (*store)->FindKey("b");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->blob, "\x02");
  EXPECT_TRUE((*b)->pending_blob.empty());
  EXPECT_TRUE((*store)->ReadProblemKeys(0, 10)->empty());
  EXPECT_FALSE((*(*store)->ReadJournal()).has_value());
}

TEST_F(KeystoreMigrationTest, MigratingTwiceChangesNothingTheSecondTime) {
  Exec(kVersion1);
  ASSERT_TRUE(MigrateSqliteKeystore(path_).ok());
  auto again = MigrateSqliteKeystore(path_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->from_version, 2);
  EXPECT_EQ(again->to_version, 2);
  EXPECT_EQ(again->keys, 5);
  auto store = OpenSqliteKeystore(path_, false);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->CountKeys(), 5);
}

TEST_F(KeystoreMigrationTest, RefusedWhileARotationHoldsTheLockAndNothingChanges) {
  Exec(kVersion1);
  // An older hsmctl rotating this keystore holds an flock() on
  // PATH.rotation-lock and names itself in it.
  const std::string lock_path = path_ + ".rotation-lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string holder =
      "pid=4242\nhost=old\nstarted_at=2026-11-01T10:00:00Z\ncommand=mk rotate\n";
  ASSERT_EQ(::pwrite(fd, holder.data(), holder.size(), 0), static_cast<ssize_t>(holder.size()));
  auto refused = MigrateSqliteKeystore(path_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), "ROTATION_LOCKED") << refused.status();
  EXPECT_NE(refused.status().message().find("pid 4242"), std::string_view::npos)
      << refused.status();
  EXPECT_EQ(ReasonOf(OpenSqliteKeystore(path_, false).status()), "UNSUPPORTED_KEYSTORE_VERSION")
      << "still version 1";
  ::close(fd);  // the rotation ended
  auto migrated = MigrateSqliteKeystore(path_);
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  EXPECT_EQ(migrated->from_version, 1);
}

TEST_F(KeystoreMigrationTest, UnknownVersionsAndForeignFilesAreRefusedAndLeftAlone) {
  Exec(kVersion1);
  Exec("UPDATE meta SET value='7' WHERE key='schema_version'");
  auto migrate = MigrateSqliteKeystore(path_);
  EXPECT_EQ(ReasonOf(migrate.status()), "UNSUPPORTED_KEYSTORE_VERSION") << migrate.status();
  EXPECT_NE(migrate.status().message().find("version 7"), std::string_view::npos)
      << migrate.status();
  auto open = OpenSqliteKeystore(path_, false);
  EXPECT_EQ(ReasonOf(open.status()), "UNSUPPORTED_KEYSTORE_VERSION") << open.status();
  Exec("UPDATE meta SET value='two' WHERE key='schema_version'");
  EXPECT_EQ(ReasonOf(MigrateSqliteKeystore(path_).status()), "UNSUPPORTED_KEYSTORE_VERSION");

  EXPECT_EQ(ReasonOf(MigrateSqliteKeystore(tmp_.Join("absent.db")).status()), "NO_KEYSTORE");
  EXPECT_FALSE(std::filesystem::exists(tmp_.Join("absent.db"))) << "migrate creates nothing";
  const std::string foreign = tmp_.Join("foreign.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE invoices(id INTEGER)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(ReasonOf(MigrateSqliteKeystore(foreign).status()), "BAD_KEYSTORE");
}

}  // namespace
}  // namespace hsmsim::host

// The SQLite keystore: rows, pending blobs, promotion, journal, and damaged
// or foreign files.
#include "host/keystore.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/str_cat.h"
#include "host/internal/pq.h"
#include "tests/support/postgres_cluster.h"

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;

// KeystoreTestBase: a keystore per test at location_ (a SQLite file by
// default; a new PostgreSQL database for the "postgresql" backend).
class KeystoreTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("hsmsim-keystore-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "keystore.db").string();
    location_ = path_;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Keystore> Open(bool create = true) {
    auto s = OpenKeystore(location_, create);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::vector<NewKey> Keys(int n, const std::string& wkid, int from = 0) {
    std::vector<NewKey> out;
    for (int i = from; i < from + n; ++i) {
      out.push_back(NewKey{"k" + std::to_string(i), "blob" + std::to_string(i), wkid});
    }
    return out;
  }

  fs::path dir_;
  std::string path_;
  std::string location_;  // path_, or a PostgreSQL URL
  const std::string a_ = std::string(16, 'A');
  const std::string b_ = std::string(16, 'B');
};

// The SQLite keystore's own behaviour: files, foreign files, schema edits.
class SqliteKeystoreTest : public KeystoreTestBase {};

// The Keystore contract, on each backend: "sqlite" and "postgresql" (a
// throwaway cluster per test process, a new database per test; skipped,
// saying why, only where the PostgreSQL server is not installed).
class KeystoreTest : public KeystoreTestBase, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    KeystoreTestBase::SetUp();
    if (GetParam() != "postgresql") return;
    if (!test_support::PostgresCluster::ServerBinDir().has_value()) {
      GTEST_SKIP() << "the PostgreSQL server is not installed (Debian package postgresql, "
                      "which scripts/setup.sh installs)";
    }
    test_support::PostgresCluster* cluster = test_support::SharedPostgresCluster();
    ASSERT_NE(cluster, nullptr);
    static int databases = 0;
    const std::string db = "keystore_" + std::to_string(++databases);
    ASSERT_TRUE(cluster->CreateDatabase(db).ok());
    location_ = cluster->Url(db);
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, KeystoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST_F(SqliteKeystoreTest, MissingKeystoreIsNotCreatedUnlessAsked) {
  auto s = OpenSqliteKeystore(path_, false);
  EXPECT_EQ(ReasonOf(s.status()), "NO_KEYSTORE");
  EXPECT_FALSE(fs::exists(path_));
}

// The keystore, and the -wal and -shm files SQLite makes beside it, are
// readable by their owner only, even under umask 000.
TEST_F(SqliteKeystoreTest, FilesArePrivateUnderUmask000) {
  const mode_t old_umask = ::umask(0);
  auto store = Open();
  ::umask(old_umask);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddKeys(Keys(10, a_)).ok());
  int seen = 0;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    struct stat st {};
    if (::stat((path_ + suffix).c_str(), &st) != 0) continue;
    ++seen;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path_ << suffix;
  }
  EXPECT_GE(seen, 3);  // the database, and while it is open -wal and -shm
}

TEST_P(KeystoreTest, AddFindAndPage) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(2500, a_)).ok());
  EXPECT_EQ(*store->CountKeys(), 2500);
  auto k = store->FindKey("k42");
  ASSERT_TRUE(k.ok() && k->has_value());
  EXPECT_EQ((*k)->blob, "blob42");
  EXPECT_EQ((*k)->wkid, a_);
  EXPECT_FALSE(store->FindKey("nope")->has_value());
  int64_t after = 0, seen = 0;
  while (true) {
    auto page = store->ReadPage(after, 1000);
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    EXPECT_LE(page->size(), 1000u);
    seen += static_cast<int64_t>(page->size());
    after = page->back().id;
  }
  EXPECT_EQ(seen, 2500);
}

TEST_P(KeystoreTest, DuplicateNameRefusedAndNothingInserted) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(3, a_)).ok());
  auto dup = Keys(5, a_, 1);  // k1..k5: k1 and k2 exist
  absl::Status s = store->AddKeys(dup);
  EXPECT_EQ(ReasonOf(s), "KEY_EXISTS") << s;
  EXPECT_EQ(*store->CountKeys(), 3);
}

// Keys go in by groups of many rows per statement: a whole chunk keeps each
// key's name, blob and WKID together, in order, and a name that exists in
// the middle of a group refuses the chunk naming that key.
TEST_P(KeystoreTest, LargeChunksKeepEveryKeyWithItsBlobAndRefuseATakenName) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(5, b_, 1000)).ok());
  std::vector<PlacedKey> chunk;
  for (int i = 0; i < 300; ++i) {
    chunk.push_back(PlacedKey{"k" + std::to_string(i), "blob" + std::to_string(i), i % 2 ? a_ : b_,
                              i % 3 ? "" : "pending" + std::to_string(i), i % 3 ? "" : b_});
  }
  ASSERT_TRUE(store->AddKeysPlanned(chunk, std::nullopt).ok());
  auto all = store->ReadPage(0, 1000);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 305u);
  for (int i = 0; i < 300; ++i) {
    const StoredKey& k = (*all)[static_cast<size_t>(5 + i)];
    EXPECT_EQ(k.name, "k" + std::to_string(i));
    EXPECT_EQ(k.blob, "blob" + std::to_string(i)) << k.name;
    EXPECT_EQ(k.wkid, i % 2 ? a_ : b_) << k.name;
    EXPECT_EQ(k.pending_blob, i % 3 ? "" : "pending" + std::to_string(i)) << k.name;
  }
  std::vector<PlacedKey> taken;
  for (int i = 0; i < 200; ++i) {
    taken.push_back(PlacedKey{"n" + std::to_string(i), "blob", a_, "", ""});
  }
  taken[130].name = "k77";  // in the third group of the chunk
  absl::Status s = store->AddKeysPlanned(taken, std::nullopt);
  EXPECT_EQ(ReasonOf(s), "KEY_EXISTS") << s;
  EXPECT_NE(std::string(s.message()).find("'k77'"), std::string::npos) << s;
  EXPECT_EQ(*store->CountKeys(), 305) << "nothing of the refused chunk is stored";
}

TEST_P(KeystoreTest, PendingBlobsThenPromotion) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(10, a_)).ok());
  RotationJournal j;
  j.source_vp = a_ + std::string(16, 'x');
  j.target_vp = b_ + std::string(16, 'y');
  j.keys_total = 10;
  ASSERT_TRUE(store->WriteJournal(j).ok());
  auto todo = store->ReadNeedingRewrap(0, 100, a_, b_);
  ASSERT_EQ(todo->size(), 10u);
  std::vector<RewrappedKey> done;
  for (int i = 0; i < 4; ++i) done.push_back(RewrappedKey{(*todo)[i].id, "new", b_});
  ASSERT_TRUE(store->StorePending(done).ok());
  EXPECT_EQ(store->ReadNeedingRewrap(0, 100, a_, b_)->size(), 6u);
  EXPECT_EQ((*store->ReadJournal())->keys_done, 4);
  auto counts = *store->CountByWkid();
  int64_t pending = 0;
  for (const auto& c : counts) {
    if (c.pending_wkid == b_) pending += c.count;
  }
  EXPECT_EQ(pending, 4);
  EXPECT_EQ(*store->PromotePending(b_), 4);
  EXPECT_EQ(*store->PromotePending(b_), 0) << "nothing is pending any more";
  EXPECT_EQ(store->ReadUnder(0, 100, a_)->size(), 6u);
  EXPECT_EQ(store->ReadUnder(0, 100, b_)->size(), 4u);
  // The keys not re-encrypted kept their own blobs; none is pending.
  auto all = store->ReadPage(0, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 10u);
  for (size_t i = 0; i < all->size(); ++i) {
    const StoredKey& k = (*all)[i];
    EXPECT_EQ(k.blob, i < 4 ? std::string("new") : "blob" + std::to_string(i)) << k.name;
    EXPECT_EQ(k.wkid, i < 4 ? b_ : a_) << k.name;
    EXPECT_TRUE(k.pending_blob.empty() && k.pending_wkid.empty()) << k.name;
  }
}

// The rotation's light read returns the very keys of the full one (the same
// ids and blobs, page by page), and only ids and blobs: keys under another
// key, keys already pending under the target and quarantined keys are
// skipped; a key pending under another WKID or with a problem recorded but
// not quarantined is still read.
TEST_P(KeystoreTest, ReadToReencryptReadsTheKeysOfReadNeedingRewrap) {
  auto store = Open();
  std::vector<NewKey> keys = Keys(40, a_);
  for (int i = 5; i < 40; i += 9) keys[static_cast<size_t>(i)].wkid = b_;  // under another key
  ASSERT_TRUE(store->AddKeys(keys).ok());
  auto all = store->ReadPage(0, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  auto id = [&](int i) { return (*all)[static_cast<size_t>(i)].id; };
  const std::string c = std::string(16, 'C');
  ASSERT_TRUE(store->StorePending({{id(0), "p", b_}, {id(1), "p", c}, {id(2), "p", b_}}).ok());
  ASSERT_TRUE(store
                  ->RecordBlobProblems({{id(3), "BLOB_AUTHENTICATION_FAILED"},
                                        {id(4), "BLOB_AUTHENTICATION_FAILED"}})
                  .ok());
  ASSERT_TRUE(store->SetQuarantined({"k3"}, true).ok());
  for (size_t page_size : {1u, 6u, 100u}) {
    std::vector<std::pair<int64_t, std::string>> full, light;
    for (int64_t after = 0;;) {
      auto page = store->ReadNeedingRewrap(after, page_size, a_, b_);
      ASSERT_TRUE(page.ok()) << page.status();
      if (page->empty()) break;
      for (const StoredKey& k : *page) full.emplace_back(k.id, k.blob);
      after = page->back().id;
    }
    for (int64_t after = 0;;) {
      auto page = store->ReadToReencrypt(after, page_size, a_, b_);
      ASSERT_TRUE(page.ok()) << page.status();
      ASSERT_LE(page->size(), page_size);
      if (page->empty()) break;
      for (const StoredKey& k : *page) {
        light.emplace_back(k.id, k.blob);
        EXPECT_TRUE(k.name.empty() && k.wkid.empty() && k.pending_blob.empty() && k.problem.empty())
            << k.id;
      }
      after = page->back().id;
    }
    EXPECT_EQ(light, full) << "pages of " << page_size;
    std::vector<int64_t> ids;
    for (const auto& [key, blob] : light) ids.push_back(key);
    EXPECT_EQ(ids.size(), 40u - 4u - 2u - 1u) << "4 under B, 2 pending under B, 1 quarantined";
    EXPECT_EQ(std::count(ids.begin(), ids.end(), id(1)), 1) << "pending under another WKID";
    EXPECT_EQ(std::count(ids.begin(), ids.end(), id(4)), 1) << "a problem, not quarantined";
  }
}

// Rotates every key of `store` from `from` to `to`: each blob becomes
// BLOB + "/" + tag.
void RotateAll(Keystore& store, const std::string& from, const std::string& to,
               const std::string& tag) {
  RotationJournal j;
  j.source_vp = from + std::string(16, 'x');
  j.target_vp = to + std::string(16, 'y');
  ASSERT_TRUE(store.WriteJournal(j).ok());
  int64_t after = 0;
  while (true) {
    auto page = store.ReadNeedingRewrap(after, 7, from, to);
    ASSERT_TRUE(page.ok()) << page.status();
    if (page->empty()) break;
    std::vector<RewrappedKey> done;
    for (const StoredKey& k : *page) done.push_back(RewrappedKey{k.id, k.blob + "/" + tag, to});
    after = page->back().id;
    ASSERT_TRUE(store.StorePending(done).ok());
  }
  auto promoted = store.PromotePending(to);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
}

TEST_P(KeystoreTest, EveryKeyReencryptedSwitchesTheGenerationAndTheNextRotationUsesTheOther) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(20, a_)).ok());
  const std::string c = std::string(16, 'C');
  // Three rotations: the blob tables alternate, each finalize switches.
  RotateAll(*store, a_, b_, "1");
  RotateAll(*store, b_, c, "2");
  RotateAll(*store, c, a_, "3");
  auto all = store->ReadPage(0, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 20u);
  for (size_t i = 0; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].blob, "blob" + std::to_string(i) + "/1/2/3");
    EXPECT_EQ((*all)[i].wkid, a_);
    EXPECT_TRUE((*all)[i].pending_blob.empty());
  }
  auto counts = store->CountByWkid();
  ASSERT_TRUE(counts.ok());
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].wkid, a_);
  EXPECT_EQ((*counts)[0].count, 20);
  // A keystore opened before the switches reads the blobs of now.
  auto other = OpenKeystore(location_, false);
  ASSERT_TRUE(other.ok());
  RotateAll(*store, a_, b_, "4");
  auto seen = (*other)->FindKey("k3");
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->blob, "blob3/1/2/3/4");
}

TEST_P(KeystoreTest, PromotionDropsPendingBlobsUnderAnotherKeyAndKeepsTheirKeysBlobs) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(4, a_)).ok());
  auto page = store->ReadPage(0, 10);
  ASSERT_TRUE(page.ok());
  const std::string c = std::string(16, 'C');
  ASSERT_TRUE(store
                  ->StorePending({{(*page)[0].id, "to-b", b_},
                                  {(*page)[1].id, "to-c", c},
                                  {(*page)[2].id, "to-b", b_}})
                  .ok());
  EXPECT_EQ(*store->PromotePending(b_), 2);
  auto all = store->ReadPage(0, 10);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)[0].blob, "to-b");
  EXPECT_EQ((*all)[1].blob, "blob1") << "its pending blob under C was dropped, its blob kept";
  EXPECT_EQ((*all)[1].wkid, a_);
  EXPECT_TRUE((*all)[1].pending_blob.empty());
  EXPECT_EQ((*all)[3].blob, "blob3");
}

TEST_P(KeystoreTest, KeysMadeDuringARotationAreFinalizedWithTheOthers) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(3, a_)).ok());
  RotationJournal j;
  j.source_vp = a_ + std::string(16, 'x');
  j.target_vp = b_ + std::string(16, 'y');
  ASSERT_TRUE(store->WriteJournal(j).ok());
  auto planned = store->ReadJournal();
  ASSERT_TRUE(planned.ok());
  ASSERT_TRUE(store->AddKeysPlanned({PlacedKey{"late", "old", a_, "new", b_}}, *planned).ok());
  auto todo = store->ReadNeedingRewrap(0, 100, a_, b_);
  ASSERT_TRUE(todo.ok());
  ASSERT_EQ(todo->size(), 3u) << "the new key already has its blob under the target";
  std::vector<RewrappedKey> done;
  for (const StoredKey& k : *todo) done.push_back(RewrappedKey{k.id, "re", b_});
  ASSERT_TRUE(store->StorePending(done).ok());
  EXPECT_EQ(*store->PromotePending(b_), 4);
  auto late = store->FindKey("late");
  ASSERT_TRUE(late.ok() && late->has_value());
  EXPECT_EQ((*late)->blob, "new");
  EXPECT_EQ((*late)->wkid, b_);
}

TEST_P(KeystoreTest, ReplacedBlobsAndAbandonedRotationsLeaveNoPendingBlob) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(3, a_)).ok());
  auto page = store->ReadPage(0, 10);
  ASSERT_TRUE(page.ok());
  ASSERT_TRUE(store->StorePending({{(*page)[0].id, "p0", b_}, {(*page)[1].id, "p1", b_}}).ok());
  ASSERT_TRUE(store->ReplaceBlobs({{(*page)[0].id, "replaced", b_}}).ok());
  auto k0 = store->FindKey("k0");
  ASSERT_TRUE(k0.ok() && k0->has_value());
  EXPECT_EQ((*k0)->blob, "replaced");
  EXPECT_TRUE((*k0)->pending_blob.empty());
  auto dropped = store->AbandonRotation(b_);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 1);
  auto k1 = store->FindKey("k1");
  ASSERT_TRUE(k1.ok() && k1->has_value());
  EXPECT_EQ((*k1)->blob, "blob1");
  EXPECT_TRUE((*k1)->pending_blob.empty());
  EXPECT_EQ(*store->PromotePending(b_), 0);
}

TEST_P(KeystoreTest, JournalSurvivesReopen) {
  {
    auto store = Open();
    RotationJournal j;
    j.phase = RotationPhase::kPromoting;
    j.source_vp = std::string(32, '1');
    j.target_vp = std::string(32, '2');
    j.keys_total = 7;
    j.keys_done = 7;
    ASSERT_TRUE(store->WriteJournal(j).ok());
  }
  auto store = Open(false);
  auto j = store->ReadJournal();
  ASSERT_TRUE(j.ok() && j->has_value());
  EXPECT_EQ((*j)->phase, RotationPhase::kPromoting);
  EXPECT_EQ((*j)->target_vp, std::string(32, '2'));
  EXPECT_EQ((*j)->keys_total, 7);
  EXPECT_FALSE((*j)->started_at.empty());
}

TEST_F(SqliteKeystoreTest, GarbageFileRefusedAndLeftAlone) {
  { std::ofstream(path_) << "this is not a database, but it is somebody's file"; }
  auto s = OpenSqliteKeystore(path_, true);
  EXPECT_EQ(ReasonOf(s.status()), "BAD_KEYSTORE") << s.status();
  std::ifstream in(path_);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "this is not a database, but it is somebody's file");
}

TEST_F(SqliteKeystoreTest, ForeignSqliteDatabaseRefused) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE invoices(id INTEGER)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto s = OpenSqliteKeystore(path_, true);
  EXPECT_EQ(ReasonOf(s.status()), "BAD_KEYSTORE") << s.status();
}

// Several commands creating the keystore of a new fleet at once: every one
// opens it (the schema is made once, under the write lock).
TEST_F(SqliteKeystoreTest, ConcurrentCreatorsAllOpenTheOneSchema) {
  for (int round = 0; round < 10; ++round) {
    const std::string path = (dir_ / ("race" + std::to_string(round) + ".db")).string();
    std::vector<std::thread> threads;
    std::vector<std::string> errors(6);
    for (size_t t = 0; t < errors.size(); ++t) {
      threads.emplace_back([&, t] {
        auto s = OpenSqliteKeystore(path, true);
        if (!s.ok()) errors[t] = s.status().ToString();
      });
    }
    for (std::thread& t : threads) t.join();
    for (const std::string& e : errors) EXPECT_EQ(e, "") << "round " << round;
  }
}

TEST_F(SqliteKeystoreTest, NewerSchemaRefused) {
  { Open(); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value='3' WHERE key='schema_version'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto s = OpenSqliteKeystore(path_, false);
  EXPECT_EQ(ReasonOf(s.status()), "UNSUPPORTED_KEYSTORE_VERSION") << s.status();
}

// --- New key names (ReserveKeyNumbers).

TEST_P(KeystoreTest, ReservedNumbersStartAboveTheHighestStoredNameWhateverTheGaps) {
  auto store = Open();
  std::vector<NewKey> keys;
  for (const char* name : {"key-1", "key-2", "key-9", "key-10x", "key-", "other-40", "key-0007"}) {
    keys.push_back(NewKey{name, "blob", a_});
  }
  ASSERT_TRUE(store->AddKeys(keys).ok());
  auto first = store->ReserveKeyNumbers("key-", 3);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 10);
  // Reserved but not stored yet (another creator's names): not given again.
  auto next = store->ReserveKeyNumbers("key-", 2);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 13);
  auto other = store->ReserveKeyNumbers("other-", 1);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, 41);
  auto fresh = store->ReserveKeyNumbers("new-", 5);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(*fresh, 1);
}

// A prefix that is a prefix of another ("key" and "key-1" both give
// "key-15"): numbers are read from every stored name, so no collision.
TEST_P(KeystoreTest, ReservedNumbersAvoidNamesMadeWithALongerPrefix) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys({NewKey{"key15", "blob", a_}}).ok());
  auto first = store->ReserveKeyNumbers("key", 1);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 16);
}

TEST_P(KeystoreTest, ReservationsSurviveReopening) {
  { ASSERT_TRUE(Open()->ReserveKeyNumbers("key-", 100).ok()); }
  auto first = Open()->ReserveKeyNumbers("key-", 1);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 101);
}

// --- Inserts fenced by the journal (AddKeysPlanned).

TEST_P(KeystoreTest, PlannedInsertStoresPendingBlobsWhileTheJournalIsUnchanged) {
  auto store = Open();
  RotationJournal j;
  j.source_vp = std::string(32, 'A');
  j.target_vp = std::string(32, 'B');
  ASSERT_TRUE(store->WriteJournal(j).ok());
  auto planned = store->ReadJournal();
  ASSERT_TRUE(planned.ok());
  // Progress within the phase does not invalidate the plan.
  ASSERT_TRUE(store->StorePending({}).ok());
  PlacedKey k{"k1", "blob", a_, "pending", b_};
  ASSERT_TRUE(store->AddKeysPlanned({k}, *planned).ok());
  auto stored = store->FindKey("k1");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->pending_blob, "pending");
  EXPECT_EQ((*stored)->pending_wkid, b_);
}

TEST_P(KeystoreTest, PlannedInsertIsRefusedWhenARotationBeganOrEndedSince) {
  auto store = Open();
  auto none = store->ReadJournal();
  ASSERT_TRUE(none.ok());
  RotationJournal j;
  j.source_vp = std::string(32, 'A');
  j.target_vp = std::string(32, 'B');
  ASSERT_TRUE(store->WriteJournal(j).ok());
  const std::vector<PlacedKey> keys = {PlacedKey{"k1", "blob", a_, "", ""}};
  absl::Status began = store->AddKeysPlanned(keys, *none);
  EXPECT_EQ(ReasonOf(began), "JOURNAL_CHANGED") << began;
  EXPECT_EQ(began.code(), absl::StatusCode::kAborted);
  auto reencrypting = store->ReadJournal();
  ASSERT_TRUE(reencrypting.ok());
  j.phase = RotationPhase::kDone;
  ASSERT_TRUE(store->WriteJournal(j).ok());
  EXPECT_EQ(ReasonOf(store->AddKeysPlanned(keys, *reencrypting)), "JOURNAL_CHANGED");
  EXPECT_EQ(ReasonOf(store->AddKeysPlanned(keys, *none)), "JOURNAL_CHANGED");
  auto count = store->CountKeys();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
}

// --- The rotation lock.

TEST_P(KeystoreTest, SecondRotationLockIsRefusedNamingTheHolder) {
  auto first = Open();
  auto second = Open();
  RotationLockHolder me = RotationLockHolder::Self("mk rotate");
  auto lock = first->LockRotation(me);
  ASSERT_TRUE(lock.ok()) << lock.status();
  auto again = second->LockRotation(RotationLockHolder::Self("recover --apply"));
  EXPECT_EQ(ReasonOf(again.status()), "ROTATION_LOCKED") << again.status();
  EXPECT_NE(again.status().message().find(StrCat("pid ", ::getpid(), " on ", me.host)),
            std::string_view::npos)
      << again.status();
  EXPECT_NE(again.status().message().find("(mk rotate)"), std::string_view::npos);
  auto holder = second->FindRotationLockHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->pid, ::getpid());
  EXPECT_EQ((*holder)->command, "mk rotate");
  EXPECT_EQ((*holder)->started_at, me.started_at);
  lock->reset();
  auto free_now = second->FindRotationLockHolder();
  ASSERT_TRUE(free_now.ok());
  EXPECT_FALSE(free_now->has_value());
  EXPECT_TRUE(second->LockRotation(RotationLockHolder::Self("recover --apply")).ok());
}

// The holder is killed with SIGKILL: the lock goes with it.
TEST_P(KeystoreTest, RotationLockIsReleasedWhenTheHolderIsKilled) {
  Open();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto store = OpenKeystore(location_, false);
    auto lock = store.ok() ? (*store)->LockRotation(RotationLockHolder::Self("mk rotate"))
                           : absl::StatusOr<std::unique_ptr<RotationLock>>(store.status());
    const char c = lock.ok() ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    while (true) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  auto store = Open();
  auto held = store->LockRotation(RotationLockHolder::Self("mk rotate"));
  EXPECT_EQ(ReasonOf(held.status()), "ROTATION_LOCKED");
  EXPECT_NE(held.status().message().find(StrCat("pid ", child)), std::string_view::npos)
      << held.status();
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(c, 'y');
  EXPECT_TRUE(store->LockRotation(RotationLockHolder::Self("mk rotate")).ok());
}

// --- The PostgreSQL keystore's own behaviour: logins, a server that goes
// away, databases that hold no keystore or another version.

class PostgresKeystoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test_support::PostgresCluster::ServerBinDir().has_value()) {
      GTEST_SKIP() << "the PostgreSQL server is not installed (Debian package postgresql, "
                      "which scripts/setup.sh installs)";
    }
    cluster_ = test_support::SharedPostgresCluster();
    ASSERT_NE(cluster_, nullptr);
    static int databases = 0;
    db_ = "pg_only_" + std::to_string(++databases);
    ASSERT_TRUE(cluster_->CreateDatabase(db_).ok());
  }
  std::string Url() const { return cluster_->Url(db_); }

  test_support::PostgresCluster* cluster_ = nullptr;
  std::string db_;
  const std::string a_ = std::string(16, 'A');
};

TEST_F(PostgresKeystoreTest, EmptyDatabaseIsNoKeystoreUnlessCreated) {
  auto none = OpenKeystore(Url(), false);
  EXPECT_EQ(ReasonOf(none.status()), "NO_KEYSTORE") << none.status();
  EXPECT_NE(none.status().message().find("hsmctl fleet up --keystore"), std::string_view::npos);
  auto made = OpenKeystore(Url(), true);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_TRUE(OpenKeystore(Url(), false).ok());
}

// A wrong password is refused naming the server's reason; the URL shown
// never carries the password, and nothing is created.
TEST_F(PostgresKeystoreTest, WrongPasswordIsRefusedAndNeverShown) {
  const std::string url = StrCat("postgresql://", test_support::PostgresCluster::kUser,
                                 ":not-the-password@127.0.0.1:", cluster_->port(), "/", db_);
  auto s = OpenKeystore(url, true);
  EXPECT_EQ(ReasonOf(s.status()), "KEYSTORE_IO") << s.status();
  EXPECT_NE(s.status().message().find("password authentication failed"), std::string_view::npos)
      << s.status();
  EXPECT_EQ(s.status().message().find("not-the-password"), std::string_view::npos);
  EXPECT_NE(s.status().message().find(":***@"), std::string_view::npos) << s.status();
  auto none = OpenKeystore(Url(), false);
  EXPECT_EQ(ReasonOf(none.status()), "NO_KEYSTORE") << "the refused login created nothing";
}

TEST_F(PostgresKeystoreTest, UnreachableServerIsKeystoreIo) {
  auto s = OpenKeystore(StrCat("postgresql://hsmsim@127.0.0.1:1/", db_), true);
  EXPECT_EQ(ReasonOf(s.status()), "KEYSTORE_IO") << s.status();
  EXPECT_NE(s.status().message().find("cannot connect to the PostgreSQL keystore"),
            std::string_view::npos);
}

// The server goes away under an open keystore: the next call fails as
// KEYSTORE_IO, nothing committed is lost, and a keystore opened once the
// server is back carries on.
TEST_F(PostgresKeystoreTest, ServerThatGoesAwayLosesNothingCommitted) {
  auto store = OpenKeystore(Url(), true);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<NewKey> keys;
  for (int i = 0; i < 50; ++i) keys.push_back(NewKey{StrCat("k", i), StrCat("blob", i), a_});
  ASSERT_TRUE((*store)->AddKeys(keys).ok());
  ASSERT_TRUE(cluster_->Stop().ok());
  absl::Status gone = (*store)->AddKeys({NewKey{"late", "blob", a_}});
  EXPECT_EQ(ReasonOf(gone), "KEYSTORE_IO") << gone;
  ASSERT_TRUE(cluster_->StartAgain().ok());
  auto again = OpenKeystore(Url(), false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*(*again)->CountKeys(), 50);
  EXPECT_FALSE((*again)->FindKey("late")->has_value());
  EXPECT_TRUE((*again)->AddKeys({NewKey{"late", "blob", a_}}).ok());
}

TEST_F(PostgresKeystoreTest, OtherSchemaVersionIsRefused) {
  { ASSERT_TRUE(OpenKeystore(Url(), true).ok()); }
  {
    auto conn = host::internal::PgConnection::Connect(Url());
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE((*conn)->Exec("UPDATE hsmsim_meta SET value='3' WHERE key='schema_version'").ok());
  }
  auto s = OpenKeystore(Url(), false);
  EXPECT_EQ(ReasonOf(s.status()), "UNSUPPORTED_KEYSTORE_VERSION") << s.status();
  auto migrated = MigratePostgresKeystore(Url());
  EXPECT_EQ(ReasonOf(migrated.status()), "UNSUPPORTED_KEYSTORE_VERSION") << migrated.status();
}

// A keystore of version 1 (before rotation workers) is refused naming keys
// migrate; the migration adds the workers' ranges and keeps the keys and
// an open rotation's journal and pending blobs.
TEST_F(PostgresKeystoreTest, VersionOneMigratesToVersionTwoKeepingAnOpenRotation) {
  const std::string b = std::string(16, 'B');
  {
    auto store = OpenKeystore(Url(), true);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<NewKey> keys;
    for (int i = 0; i < 20; ++i) keys.push_back(NewKey{StrCat("k", i), StrCat("blob", i), a_});
    ASSERT_TRUE((*store)->AddKeys(keys).ok());
    RotationJournal j;
    j.source_vp = a_ + std::string(16, 'x');
    j.target_vp = b + std::string(16, 'y');
    j.keys_total = 20;
    ASSERT_TRUE((*store)->WriteJournal(j).ok());
    auto page = (*store)->ReadPage(0, 5);
    ASSERT_TRUE(page.ok());
    std::vector<RewrappedKey> done;
    for (const StoredKey& k : *page) done.push_back(RewrappedKey{k.id, "p", b});
    ASSERT_TRUE((*store)->StorePending(done).ok());
  }
  {
    auto conn = host::internal::PgConnection::Connect(Url());
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE((*conn)
                    ->Exec("DROP TABLE hsmsim_rewrap_ranges; UPDATE hsmsim_meta SET value='1' "
                           "WHERE key='schema_version'")
                    .ok());
  }
  auto old = OpenKeystore(Url(), false);
  EXPECT_EQ(ReasonOf(old.status()), "UNSUPPORTED_KEYSTORE_VERSION") << old.status();
  EXPECT_NE(old.status().message().find("hsmctl keys migrate"), std::string_view::npos);
  auto migrated = MigratePostgresKeystore(Url());
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  EXPECT_EQ(migrated->from_version, 1);
  EXPECT_EQ(migrated->to_version, 2);
  EXPECT_EQ(migrated->keys, 20);
  EXPECT_EQ(migrated->pending_blobs, 5);
  auto again = MigratePostgresKeystore(Url());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->from_version, again->to_version) << "a current keystore is left alone";
  auto store = OpenKeystore(Url(), false);
  ASSERT_TRUE(store.ok()) << store.status();
  auto journal = (*store)->ReadJournal();
  ASSERT_TRUE(journal.ok() && journal->has_value());
  EXPECT_EQ((*journal)->keys_done, 5);
  auto claims = (*store)->OpenRewrapClaims();
  ASSERT_TRUE(claims.ok()) << claims.status();
  auto planned = (*claims)->Plan(**journal, 4);
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_EQ(*planned, 4) << "keys 6..20 still to do, in ranges of 4 ids";
}

// Rotation workers' claims: each range goes to one worker at a time (SKIP
// LOCKED), a released range goes to another, a finished one to nobody, and
// a second plan of the same rotation keeps the ranges.
class PostgresClaimsTest : public PostgresKeystoreTest {
 protected:
  void SetUp() override {
    PostgresKeystoreTest::SetUp();
    if (IsSkipped()) return;
    auto store = OpenKeystore(Url(), true);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    std::vector<NewKey> keys;
    for (int i = 0; i < 100; ++i) keys.push_back(NewKey{StrCat("k", i), StrCat("blob", i), a_});
    ASSERT_TRUE(store_->AddKeys(keys).ok());
    journal_.source_vp = a_ + std::string(16, 'x');
    journal_.target_vp = b_ + std::string(16, 'y');
    journal_.keys_total = 100;
    ASSERT_TRUE(store_->WriteJournal(journal_).ok());
    journal_ = **store_->ReadJournal();
  }
  std::unique_ptr<RewrapClaims> Claims() {
    auto c = store_->OpenRewrapClaims();
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  const std::string b_ = std::string(16, 'B');
  std::unique_ptr<Keystore> store_;
  RotationJournal journal_;
};

TEST_F(PostgresClaimsTest, EachRangeGoesToOneWorkerAndAReleasedRangeToAnother) {
  auto a = Claims();
  auto b = Claims();
  ASSERT_TRUE(a && b);
  auto planned = a->Plan(journal_, 10);
  ASSERT_TRUE(planned.ok()) << planned.status();
  ASSERT_EQ(*planned, 10);
  auto again = b->Plan(journal_, 25);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 10) << "a second plan of the same rotation keeps its ranges";
  int64_t elsewhere = -1;
  auto ra = a->Claim(journal_, "worker a", &elsewhere);
  auto rb = b->Claim(journal_, "worker b", &elsewhere);
  ASSERT_TRUE(ra.ok() && ra->has_value()) << ra.status();
  ASSERT_TRUE(rb.ok() && rb->has_value()) << rb.status();
  EXPECT_NE((*ra)->number, (*rb)->number) << "two workers hold the same range";
  EXPECT_EQ((*ra)->last_id - (*ra)->first_id, 9);
  // Worker b lets its range go unfinished (as when it dies): a takes it
  // among the rest, and every range is handed out exactly once.
  const int64_t released = (*rb)->number;
  b->Release();
  std::set<int64_t> seen = {(*ra)->number};
  bool took_released = false;
  while (true) {
    auto r = a->Claim(journal_, "worker a", &elsewhere);
    ASSERT_TRUE(r.ok()) << r.status();
    if (!r->has_value()) break;
    EXPECT_TRUE(seen.insert((*r)->number).second) << "range " << (*r)->number << " twice";
    took_released |= (*r)->number == released;
  }
  EXPECT_TRUE(took_released);
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(elsewhere, 0) << "every range is finished";
  auto counts = store_->CountRewrapRanges(journal_);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->total, 10);
  EXPECT_EQ(counts->finished, 10);
  auto none = b->Claim(journal_, "worker b", &elsewhere);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "a finished range is never claimed again";
}

TEST_F(PostgresClaimsTest, AWorkerWaitsWhileAnotherHoldsTheLastRange) {
  auto a = Claims();
  auto b = Claims();
  ASSERT_TRUE(a && b);
  auto planned = a->Plan(journal_, 100);
  ASSERT_TRUE(planned.ok()) << planned.status();
  ASSERT_EQ(*planned, 1);
  int64_t elsewhere = -1;
  auto held = a->Claim(journal_, "worker a", &elsewhere);
  ASSERT_TRUE(held.ok() && held->has_value());
  auto none = b->Claim(journal_, "worker b", &elsewhere);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(elsewhere, 1) << "one unfinished range, held by worker a";
  // Worker a's session ends without a word from it (as when its process or
  // host dies): the server ends its transaction, and the range is free.
  {
    auto admin = host::internal::PgConnection::Connect(Url());
    ASSERT_TRUE(admin.ok()) << admin.status();
    auto killed = (*admin)->Query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
        "datname = current_database() AND state = 'idle in transaction' AND pid <> "
        "pg_backend_pid()");
    ASSERT_TRUE(killed.ok()) << killed.status();
    ASSERT_EQ(killed->Int(0, 0), 1) << "worker a's claim is the one open transaction";
  }
  std::optional<KeyRange> taken_range;
  for (int i = 0; i < 100 && !taken_range.has_value(); ++i) {  // the backend ends asynchronously
    auto taken = b->Claim(journal_, "worker b", &elsewhere);
    ASSERT_TRUE(taken.ok()) << taken.status();
    taken_range = *taken;
    if (!taken_range.has_value()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(taken_range.has_value()) << "the dead worker's range was not freed";
  EXPECT_EQ(taken_range->first_id, (*held)->first_id);
  a.reset();
}

TEST_F(PostgresClaimsTest, ReleaseGivesTheRangeBack) {
  auto a = Claims();
  auto b = Claims();
  ASSERT_TRUE(a && b);
  auto planned = a->Plan(journal_, 100);
  ASSERT_TRUE(planned.ok()) << planned.status();
  int64_t elsewhere = -1;
  auto held = a->Claim(journal_, "worker a", &elsewhere);
  ASSERT_TRUE(held.ok() && held->has_value());
  a.reset();  // Release: the range goes back unfinished
  auto taken = b->Claim(journal_, "worker b", &elsewhere);
  ASSERT_TRUE(taken.ok() && taken->has_value()) << taken.status();
  EXPECT_EQ((*taken)->first_id, (*held)->first_id);
}

// A worker's store is checked against the journal in its own transaction:
// after the lead moved on it stores nothing, and a key another worker
// stored already is not counted twice.
TEST_F(PostgresClaimsTest, StoresAfterThePhaseChangedAreRefusedAndNoKeyCountsTwice) {
  auto page = store_->ReadPage(0, 10);
  ASSERT_TRUE(page.ok());
  std::vector<RewrappedKey> first, overlap;
  for (size_t i = 0; i < 6; ++i) first.push_back(RewrappedKey{(*page)[i].id, "p1", b_});
  for (size_t i = 4; i < 10; ++i) overlap.push_back(RewrappedKey{(*page)[i].id, "p2", b_});
  ASSERT_TRUE(store_->StorePendingFor(journal_, first).ok());
  ASSERT_TRUE(store_->StorePendingFor(journal_, overlap).ok());
  EXPECT_EQ((*store_->ReadJournal())->keys_done, 10) << "keys 4 and 5 counted once";
  EXPECT_EQ((*store_->FindKey("k4"))->pending_blob, "p1") << "the first store is kept";
  RotationJournal moved = journal_;
  moved.phase = RotationPhase::kReencrypted;
  moved.keys_done = 10;
  ASSERT_TRUE(store_->WriteJournal(moved).ok());
  absl::Status late =
      store_->StorePendingFor(journal_, {RewrappedKey{(*page)[0].id + 50, "p", b_}});
  EXPECT_EQ(ReasonOf(late), "JOURNAL_CHANGED") << late;
  EXPECT_TRUE((*store_->FindKey("k50"))->pending_blob.empty()) << "nothing stored";
  auto claims = Claims();
  ASSERT_TRUE(claims);
  auto planned = claims->Plan(journal_, 10);
  EXPECT_EQ(ReasonOf(planned.status()), "JOURNAL_CHANGED") << planned.status();
}

// SQLite has one writer: no claims, and the refusal says what to use.
TEST(SqliteClaimsTest, ASqliteKeystoreHasNoClaims) {
  const fs::path dir = fs::temp_directory_path() / ("hsmsim-claims-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    auto store = OpenKeystore((dir / "keystore.db").string(), true);
    ASSERT_TRUE(store.ok());
    auto claims = (*store)->OpenRewrapClaims();
    EXPECT_EQ(ReasonOf(claims.status()), "KEYSTORE_NOT_SHARED") << claims.status();
    EXPECT_NE(claims.status().message().find("PostgreSQL"), std::string_view::npos);
  }
  fs::remove_all(dir);
}

TEST(PostgresUrlTest, PasswordsAreFoundAndRedacted) {
  using host::internal::RedactPostgresUrl;
  using host::internal::UrlHasPassword;
  EXPECT_TRUE(UrlHasPassword("postgresql://u:secret@h:5432/db"));
  EXPECT_TRUE(UrlHasPassword("postgresql://u@h/db?sslmode=require&password=secret"));
  EXPECT_FALSE(UrlHasPassword("postgresql://u@h:5432/db"));
  EXPECT_FALSE(UrlHasPassword("postgresql://h/db?passfile=/x"));
  EXPECT_EQ(RedactPostgresUrl("postgresql://u:secret@h:5432/db"), "postgresql://u:***@h:5432/db");
  EXPECT_EQ(RedactPostgresUrl("postgres://u@h/db?password=secret&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require");
  EXPECT_EQ(RedactPostgresUrl("postgresql://u@h/db"), "postgresql://u@h/db");
  // Spellings libpq accepts that a naive reading misses.
  EXPECT_TRUE(UrlHasPassword("postgresql://kms:pa?ss@db/keys"));
  EXPECT_TRUE(UrlHasPassword("postgresql://kms:pa/ss@db/keys"));
  EXPECT_TRUE(UrlHasPassword("postgresql://kms@db/keys?sslpassword=secret"));
  EXPECT_TRUE(UrlHasPassword("postgresql://kms@db/keys?pass%77ord=secret"));
  for (const char* url : {"postgresql://kms:pa?ss@db/keys", "postgresql://kms:pa/ss@db/keys"}) {
    EXPECT_EQ(RedactPostgresUrl(url).find("pa"), std::string::npos) << RedactPostgresUrl(url);
  }
  EXPECT_EQ(RedactPostgresUrl("postgresql://u@h/db?password=a&password=b&sslpassword=c"),
            "postgresql://u@h/db?password=***&password=***&sslpassword=***");
}

TEST(RotationPhaseTest, NamesRoundTrip) {
  for (RotationPhase p :
       {RotationPhase::kReencrypting, RotationPhase::kReencrypted, RotationPhase::kPromoting,
        RotationPhase::kFinalizing, RotationPhase::kDone}) {
    auto back = ParseRotationPhase(RotationPhaseName(p));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, p);
  }
  EXPECT_FALSE(ParseRotationPhase("SOMETHING").ok());
}

}  // namespace
}  // namespace hsmsim::host

// The SQLite keystore: rows, pending blobs, promotion, journal, and damaged
// or foreign files.
#include "host/keystore.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/status.h"

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;

class KeystoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("hsmsim-keystore-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "keystore.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Keystore> Open(bool create = true) {
    auto s = OpenSqliteKeystore(path_, create);
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
  const std::string a_ = std::string(16, 'A');
  const std::string b_ = std::string(16, 'B');
};

TEST_F(KeystoreTest, MissingKeystoreIsNotCreatedUnlessAsked) {
  auto s = OpenSqliteKeystore(path_, false);
  EXPECT_EQ(ReasonOf(s.status()), "NO_KEYSTORE");
  EXPECT_FALSE(fs::exists(path_));
}

// The keystore, and the -wal and -shm files SQLite makes beside it, are
// readable by their owner only, even under umask 000.
TEST_F(KeystoreTest, FilesArePrivateUnderUmask000) {
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

TEST_F(KeystoreTest, AddFindAndPage) {
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

TEST_F(KeystoreTest, DuplicateNameRefusedAndNothingInserted) {
  auto store = Open();
  ASSERT_TRUE(store->AddKeys(Keys(3, a_)).ok());
  auto dup = Keys(5, a_, 1);  // k1..k5: k1 and k2 exist
  absl::Status s = store->AddKeys(dup);
  EXPECT_EQ(ReasonOf(s), "KEY_EXISTS") << s;
  EXPECT_EQ(*store->CountKeys(), 3);
}

TEST_F(KeystoreTest, PendingBlobsThenPromotion) {
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
  EXPECT_EQ(*store->PromotePending(b_, 3), 3);
  EXPECT_EQ(*store->PromotePending(b_, 3), 1);
  EXPECT_EQ(*store->PromotePending(b_, 3), 0);
  EXPECT_EQ(store->ReadUnder(0, 100, a_)->size(), 6u);
  EXPECT_EQ(store->ReadUnder(0, 100, b_)->size(), 4u);
}

TEST_F(KeystoreTest, JournalSurvivesReopen) {
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

TEST_F(KeystoreTest, GarbageFileRefusedAndLeftAlone) {
  { std::ofstream(path_) << "this is not a database, but it is somebody's file"; }
  auto s = OpenSqliteKeystore(path_, true);
  EXPECT_EQ(ReasonOf(s.status()), "BAD_KEYSTORE") << s.status();
  std::ifstream in(path_);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "this is not a database, but it is somebody's file");
}

TEST_F(KeystoreTest, ForeignSqliteDatabaseRefused) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE invoices(id INTEGER)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto s = OpenSqliteKeystore(path_, true);
  EXPECT_EQ(ReasonOf(s.status()), "BAD_KEYSTORE") << s.status();
}

TEST_F(KeystoreTest, NewerSchemaRefused) {
  { Open(); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value='2' WHERE key='schema_version'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto s = OpenSqliteKeystore(path_, false);
  EXPECT_EQ(ReasonOf(s.status()), "UNSUPPORTED_KEYSTORE_VERSION") << s.status();
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

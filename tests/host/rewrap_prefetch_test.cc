// RewrapPrefetcher: the keys to re-encrypt, read ahead on a thread of their
// own, reach the engine each once, in key order, whatever the sizes asked
// for; the reader's error reaches it too.
#include "host/rewrap_prefetch.h"

#include <sqlite3.h>
#include <unistd.h>

#include <set>
#include <string>

#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::host {
namespace {

class RewrapPrefetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = tmp_.Join("keystore.db");
    auto store = OpenSqliteKeystore(path_, true);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  std::unique_ptr<Keystore> Reader() {
    auto reader = store_->Reopen();
    EXPECT_TRUE(reader.ok()) << reader.status();
    return reader.ok() ? std::move(*reader) : nullptr;
  }

  test_support::TempDir tmp_;
  std::string path_;
  std::unique_ptr<Keystore> store_;
  const std::string a_ = std::string(16, 'A');
  const std::string b_ = std::string(16, 'B');
};

TEST_F(RewrapPrefetchTest, EveryKeyNeedingReencryptionOnceInKeyOrder) {
  std::vector<NewKey> keys;
  for (int i = 0; i < 50; ++i) {
    // Every seventh key is under another master key: not to re-encrypt.
    keys.push_back(NewKey{"k" + std::to_string(i), "blob", i % 7 == 3 ? b_ : a_});
  }
  ASSERT_TRUE(store_->AddKeys(keys).ok());
  auto page = store_->ReadPage(0, 100);
  ASSERT_TRUE(page.ok());
  // Keys 0 and 1 already have their pending blob under the target.
  ASSERT_TRUE(store_->StorePending({{(*page)[0].id, "p", b_}, {(*page)[1].id, "p", b_}}).ok());

  RewrapPrefetcher prefetch(Reader(), a_, b_, /*page_keys=*/4, /*depth=*/2);
  std::vector<int64_t> seen;
  // Sizes that do not divide the pages.
  for (size_t limit : {3u, 5u, 1u, 7u, 100u, 100u}) {
    auto got = prefetch.Take(limit);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_LE(got->size(), limit);
    for (const StoredKey& k : *got) {
      EXPECT_EQ(k.blob, "blob") << k.id;  // what re-encryption reads: ids and blobs
      seen.push_back(k.id);
    }
  }
  std::vector<int64_t> expected;
  for (int i = 2; i < 50; ++i) {
    if (i % 7 != 3) expected.push_back((*page)[static_cast<size_t>(i)].id);
  }
  EXPECT_EQ(seen, expected);
  auto end = prefetch.Take(10);
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(end->empty()) << "every key was handed out";
}

TEST_F(RewrapPrefetchTest, StoppingEarlyEndsItsThread) {
  std::vector<NewKey> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(NewKey{"k" + std::to_string(i), "blob", a_});
  ASSERT_TRUE(store_->AddKeys(keys).ok());
  {
    RewrapPrefetcher prefetch(Reader(), a_, b_, 2, 1);
    auto got = prefetch.Take(3);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->size(), 3u);
  }  // destroyed with pages left to read: must not hang
  RewrapPrefetcher none(Reader(), a_, b_, 2, 1);
}

TEST_F(RewrapPrefetchTest, TheReadersErrorReachesTake) {
  ASSERT_TRUE(store_->AddKeys({NewKey{"k1", "blob", a_}}).ok());
  std::unique_ptr<Keystore> reader = Reader();
  // Damage the keystore under the reader: its blob generation is gone.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "DELETE FROM meta WHERE key='blob_generation'", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  RewrapPrefetcher prefetch(std::move(reader), a_, b_, 4, 2);
  for (int i = 0; i < 2; ++i) {
    auto got = prefetch.Take(4);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(ReasonOf(got.status()), "BAD_KEYSTORE") << got.status();
  }
}

}  // namespace
}  // namespace hsmsim::host

// PendingWriter: re-encrypted batches stored on a thread of their own, in
// order, each followed by its checkpoint; an error or a checkpoint's refusal
// stops it with nothing more stored.
#include "host/pending_writer.h"

#include <sqlite3.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/reasons.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::host {
namespace {

class PendingWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteKeystore(tmp_.Join("keystore.db"), true);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    std::vector<NewKey> keys;
    for (int i = 0; i < 40; ++i) keys.push_back(NewKey{"k" + std::to_string(i), "blob", a_});
    ASSERT_TRUE(store_->AddKeys(keys).ok());
    RotationJournal j;
    j.source_vp = a_ + std::string(16, 'x');
    j.target_vp = b_ + std::string(16, 'y');
    j.keys_total = 40;
    ASSERT_TRUE(store_->WriteJournal(j).ok());
  }

  // Batch returns re-encrypted blobs for the keys with ids [from, to).
  std::vector<RewrappedKey> Batch(int64_t from, int64_t to) {
    std::vector<RewrappedKey> out;
    for (int64_t id = from; id < to; ++id) out.push_back(RewrappedKey{id, "new", b_});
    return out;
  }
  int64_t Pending() {
    auto counts = store_->CountByWkid();
    EXPECT_TRUE(counts.ok());
    int64_t n = 0;
    for (const WkidPairCount& c : *counts) n += c.pending_wkid == b_ ? c.count : 0;
    return n;
  }

  test_support::TempDir tmp_;  // outlives store_
  std::unique_ptr<Keystore> store_;
  const std::string a_ = std::string(16, 'A');
  const std::string b_ = std::string(16, 'B');
};

TEST_F(PendingWriterTest, StoresEveryBatchInOrderWithItsCheckpoint) {
  std::vector<int64_t> checkpoints;
  PendingWriter writer(*store_, 0, 2, [&](int64_t done) {
    checkpoints.push_back(done);
    return absl::OkStatus();
  });
  for (int64_t from = 1; from <= 40; from += 8)
    ASSERT_TRUE(writer.Push(Batch(from, from + 8)).ok());
  ASSERT_TRUE(writer.Push({}).ok()) << "an empty batch is ignored";
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(checkpoints, (std::vector<int64_t>{8, 16, 24, 32, 40}));
  EXPECT_EQ(writer.keys_done(), 40);
  EXPECT_EQ(writer.keys_stored(), 40);
  EXPECT_EQ(Pending(), 40);
  auto journal = store_->ReadJournal();
  ASSERT_TRUE(journal.ok() && journal->has_value());
  EXPECT_EQ((*journal)->keys_done, 40);
  EXPECT_TRUE(writer.Finish().ok()) << "a second Finish returns the same";
}

TEST_F(PendingWriterTest, ACheckpointsRefusalStopsItAndNothingMoreIsStored) {
  PendingWriter writer(*store_, 0, 8, [&](int64_t done) {
    return done >= 16 ? Error(absl::StatusCode::kCancelled, reason::kInterrupted, "stop here")
                      : absl::OkStatus();
  });
  absl::Status pushed;
  for (int64_t from = 1; from <= 40 && pushed.ok(); from += 8) {
    pushed = writer.Push(Batch(from, from + 8));
  }
  absl::Status finished = writer.Finish();
  EXPECT_EQ(ReasonOf(finished), "INTERRUPTED") << finished;
  EXPECT_EQ(writer.keys_done(), 16);
  EXPECT_EQ(Pending(), 16) << "the batches queued behind the refusal were discarded";
  EXPECT_EQ(ReasonOf(writer.Push(Batch(1, 2))), "INTERRUPTED");
}

TEST_F(PendingWriterTest, TheKeystoresErrorStopsItAndReachesPushAndFinish) {
  // Damage the keystore under the writer: its blob generation is gone.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(tmp_.Join("keystore.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "DELETE FROM meta WHERE key='blob_generation'", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  bool checkpointed = false;
  PendingWriter writer(*store_, 0, 1, [&](int64_t) {
    checkpointed = true;
    return absl::OkStatus();
  });
  absl::Status pushed;
  for (int i = 0; i < 100 && pushed.ok(); ++i) pushed = writer.Push(Batch(1, 9));
  EXPECT_EQ(ReasonOf(pushed), "BAD_KEYSTORE") << pushed;
  EXPECT_EQ(ReasonOf(writer.Finish()), "BAD_KEYSTORE");
  EXPECT_FALSE(checkpointed) << "no checkpoint after a failed store";
  EXPECT_EQ(writer.keys_stored(), 0);
}

}  // namespace
}  // namespace hsmsim::host

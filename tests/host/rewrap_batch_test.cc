// What the host takes from a unit's packed answer (host/rewrap_batch.h): a
// unit that answers a batch wrongly (too few or many entries, a failure for
// a blob outside the batch or named twice, no packed answer) is refused
// with BAD_RESPONSE and nothing of the batch is taken; a good answer gives
// the re-encrypted blobs and names each refused key once.
#include "host/rewrap_batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/reasons.h"
#include "common/status.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/packed_blobs.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

const std::string kTarget(16, '\x7a');
const std::string kOther(16, '\x11');

std::string BlobUnder(const std::string& wkid, const std::string& key_id) {
  wire::BlobWkid w{};
  std::copy(wkid.begin(), wkid.end(), w.begin());
  std::string blob = wire::BuildBlobHeader(wire::kBlobAlgorithmAes256, 0, w, key_id);
  blob.append(wire::kBlobIvSize + wire::kRootKeySize + wire::kBlobTagSize, '\0');
  return blob;
}

class RewrapBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<StoredKey> page;
    for (int i = 0; i < 3; ++i) {
      StoredKey k;
      k.id = 100 + i;
      k.name = "key-" + std::to_string(i);
      k.blob = BlobUnder(kOther, k.name);
      page.push_back(std::move(k));
    }
    request_ = MakeRewrapRequest(RewrapKind::kCurrentToNew, page, keys_);
  }

  // Answer packs `blobs` as the unit's answer and lists `failed` indices.
  v1::Response Answer(const std::vector<std::string>& blobs, const std::vector<uint32_t>& failed) {
    v1::Response r;
    auto* a = r.mutable_reencrypt_batch();
    wire::PackedBlobsWriter w(*a->mutable_packed(), blobs.size(), 0);
    for (const std::string& b : blobs) w.Add(b);
    for (uint32_t i : failed) {
      v1::BlobFailure* f = a->add_failures();
      f->set_index(i);
      f->mutable_status()->set_code(9);
      f->mutable_status()->set_reason("UNKNOWN_WKID");
    }
    return r;
  }

  absl::StatusOr<std::vector<RewrappedKey>> Take(const v1::Response& r, FailedKeys& failed) {
    return TakeRewrapped(RewrapKind::kCurrentToNew, r, keys_, kTarget, "unit1", failed);
  }

  v1::Request request_;
  RewrapKeys keys_;
};

TEST_F(RewrapBatchTest, RequestIsPackedInPageOrder) {
  ASSERT_TRUE(request_.reencrypt_batch().has_packed());
  EXPECT_EQ(request_.reencrypt_batch().blobs_size(), 0);
  auto blobs = wire::UnpackBlobs(request_.reencrypt_batch().packed());
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  ASSERT_EQ(blobs->size(), 3u);
  EXPECT_EQ((*blobs)[2], BlobUnder(kOther, "key-2"));
  EXPECT_EQ(keys_.ids, (std::vector<int64_t>{100, 101, 102}));
}

TEST_F(RewrapBatchTest, GoodAnswerGivesTheBlobsAndNamesEachFailureOnce) {
  FailedKeys failed;
  auto taken =
      Take(Answer({BlobUnder(kTarget, "key-0"), "", BlobUnder(kTarget, "key-2")}, {1}), failed);
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_EQ(taken->size(), 2u);
  EXPECT_EQ((*taken)[0].id, 100);
  EXPECT_EQ((*taken)[1].id, 102);
  EXPECT_EQ((*taken)[1].wkid, kTarget);
  EXPECT_EQ(failed.count, 1);
  ASSERT_EQ(failed.problems.size(), 1u);
  EXPECT_EQ(failed.problems[0].id, 101);
  EXPECT_EQ(failed.List(), "key-1 (UNKNOWN_WKID)");
}

TEST_F(RewrapBatchTest, WrongAnswersAreBadResponsesAndTakeNothing) {
  const std::string ok = BlobUnder(kTarget, "k");
  struct Case {
    const char* what;
    v1::Response answer;
    const char* says;
  };
  v1::Response no_packed;
  no_packed.mutable_reencrypt_batch()->add_results();
  v1::Response bad_sizes = Answer({ok, ok, ok}, {});
  bad_sizes.mutable_reencrypt_batch()->mutable_packed()->set_sizes(0, 1);
  const std::vector<Case> cases = {
      {"too few", Answer({ok, ok}, {}), "2 answers for 3 blobs"},
      {"too many", Answer({ok, ok, ok, ok}, {}), "4 answers for 3 blobs"},
      {"failure out of range", Answer({ok, ok, ""}, {3}), "blob 3 of 3 (out of range)"},
      {"failure twice", Answer({ok, "", ok}, {1, 1}), "blob 1 of 3 (twice)"},
      {"no packed answer", no_packed, "no packed answer"},
      {"bad packing", bad_sizes, "add up to"},
  };
  for (const Case& c : cases) {
    FailedKeys failed;
    auto taken = Take(c.answer, failed);
    EXPECT_EQ(ReasonOf(taken.status()), reason::kBadResponse) << c.what << ": " << taken.status();
    EXPECT_THAT(std::string(taken.status().message()), HasSubstr(c.says)) << c.what;
    EXPECT_EQ(failed.count, 0) << c.what;
  }
}

TEST_F(RewrapBatchTest, ABlobUnderAnotherKeyStopsTheBatch) {
  FailedKeys failed;
  auto taken = Take(Answer({BlobUnder(kTarget, "a"), BlobUnder(kOther, "b"), ""}, {2}), failed);
  EXPECT_EQ(ReasonOf(taken.status()), reason::kWrongTargetKey) << taken.status();
  EXPECT_EQ(failed.count, 0);
}

TEST_F(RewrapBatchTest, CheckAnswersMustCountEveryBlob) {
  std::vector<StoredKey> page(2);
  page[0].id = 1;
  page[0].name = "a";
  page[1].id = 2;
  page[1].name = "b";
  RewrapKeys keys;
  v1::Request request = MakeRewrapRequest(RewrapKind::kCheck, page, keys);
  EXPECT_TRUE(request.check_blobs().has_packed());
  v1::Response answer;
  answer.mutable_check_blobs()->set_checked(1);
  FailedKeys failed;
  absl::Status short_answer = TakeChecked(answer, keys, "unit1", failed);
  EXPECT_EQ(ReasonOf(short_answer), reason::kBadResponse) << short_answer;
  answer.mutable_check_blobs()->set_checked(2);
  v1::BlobFailure* f = answer.mutable_check_blobs()->add_failures();
  f->set_index(1);
  f->mutable_status()->set_reason("BLOB_AUTHENTICATION_FAILED");
  ASSERT_TRUE(TakeChecked(answer, keys, "unit1", failed).ok());
  EXPECT_EQ(failed.List(), "b (BLOB_AUTHENTICATION_FAILED)");
}

}  // namespace
}  // namespace hsmsim::host

// Packed batches (docs/protocol.md section 10.6): the unit gives a packed
// request the same answers as the repeated form, failures only for the
// failed indices, and refuses a bad packing as a whole.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/hex.h"
#include "firmware/limits.h"
#include "proto/wire/packed_blobs.h"
#include "tests/firmware/unit_fixture.h"

namespace hsmsim::firmware {
namespace {

void Pack(const std::vector<std::string>& blobs, v1::PackedBlobs& packed) {
  wire::PackedBlobsWriter writer(packed, blobs.size(), 0);
  for (const std::string& b : blobs) writer.Add(b);
}

std::vector<std::string> Unpacked(const v1::PackedBlobs& packed) {
  auto views = wire::UnpackBlobs(packed);
  EXPECT_TRUE(views.ok()) << views.status();
  if (!views.ok()) return {};
  return std::vector<std::string>(views->begin(), views->end());
}

class PackedBatchTest : public testing::UnitFixture {
 protected:
  void SetUp() override {
    UnitFixture::SetUp();
    LoadAndCommit(*unit_, k1_);
    Promote(*unit_);
    under_current_ = GenerateKey("current");
    auto foreign_unit = NewUnit();
    LoadAndCommit(*foreign_unit, k3_);
    Promote(*foreign_unit);
    v1::Request gen;
    gen.mutable_generate_key()->set_key_id("foreign");
    foreign_ = foreign_unit->Handle(gen).response.generate_key().blob();
    LoadAndCommit(*unit_, k2_);
    v1::Request first;
    Pack({GenerateKey("moved")}, *first.mutable_reencrypt_batch()->mutable_packed());
    under_new_ = Unpacked(Call(first).reencrypt_batch().packed()).at(0);
    tampered_ = under_current_;
    tampered_.back() ^= 1;
  }

  std::string NewWkid() {
    return ToHex(unit_->Info().new_register().verification_pattern()).substr(0, 32);
  }

  std::string under_current_, under_new_, foreign_, tampered_;
};

TEST_F(PackedBatchTest, ReencryptAnswersEachBlobInOrderAndListsOnlyTheFailures) {
  v1::Request r;
  Pack({under_current_, under_new_, foreign_, "garbage", tampered_, under_current_},
       *r.mutable_reencrypt_batch()->mutable_packed());
  v1::Response resp = Call(r);
  ASSERT_EQ(resp.status().code(), 0) << resp.status().message();
  const v1::ReencryptBatchResponse& a = resp.reencrypt_batch();
  EXPECT_EQ(a.results_size(), 0);  // the packed form only
  const std::vector<std::string> blobs = Unpacked(a.packed());
  ASSERT_EQ(blobs.size(), 6u);
  for (size_t i : {size_t{0}, size_t{5}}) {
    auto parsed = wire::ParseBlob(AsBytes(blobs[i]));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(ToHex(parsed->wkid), NewWkid());
    EXPECT_EQ(parsed->key_id, "current");
  }
  EXPECT_NE(blobs[0], blobs[5]);  // a fresh IV each
  EXPECT_EQ(blobs[1], under_new_);
  EXPECT_TRUE(blobs[2].empty());
  EXPECT_TRUE(blobs[3].empty());
  EXPECT_TRUE(blobs[4].empty());
  ASSERT_EQ(a.already_under_target_size(), 1);
  EXPECT_EQ(a.already_under_target(0), 1u);
  ASSERT_EQ(a.failures_size(), 3);
  EXPECT_EQ(a.failures(0).index(), 2u);
  EXPECT_EQ(a.failures(0).status().reason(), "UNKNOWN_WKID");
  EXPECT_EQ(a.failures(1).index(), 3u);
  EXPECT_EQ(a.failures(1).status().reason(), "MALFORMED_BLOB");
  EXPECT_EQ(a.failures(2).index(), 4u);
  EXPECT_EQ(a.failures(2).status().reason(), "BLOB_AUTHENTICATION_FAILED");
}

TEST_F(PackedBatchTest, RepeatedFormStillGetsOneResultPerBlob) {
  v1::Request r;
  for (const std::string& b : {under_current_, under_new_, foreign_, tampered_}) {
    r.mutable_reencrypt_batch()->add_blobs(b);
  }
  v1::Response resp = Call(r);
  ASSERT_EQ(resp.status().code(), 0) << resp.status().message();
  const v1::ReencryptBatchResponse& a = resp.reencrypt_batch();
  EXPECT_FALSE(a.has_packed());
  EXPECT_EQ(a.failures_size(), 0);
  ASSERT_EQ(a.results_size(), 4);
  EXPECT_EQ(a.results(0).outcome(), v1::BLOB_REENCRYPTED);
  EXPECT_EQ(a.results(1).outcome(), v1::BLOB_ALREADY_UNDER_TARGET);
  EXPECT_EQ(a.results(1).blob(), under_new_);
  EXPECT_EQ(a.results(2).outcome(), v1::BLOB_FAILED);
  EXPECT_EQ(a.results(2).status().reason(), "UNKNOWN_WKID");
  EXPECT_TRUE(a.results(2).blob().empty());
  EXPECT_EQ(a.results(3).status().reason(), "BLOB_AUTHENTICATION_FAILED");
}

TEST_F(PackedBatchTest, BadPackingOrBothFormsAreRefusedAsAWhole) {
  v1::Request sizes_short;
  Pack({under_current_, under_current_}, *sizes_short.mutable_reencrypt_batch()->mutable_packed());
  sizes_short.mutable_reencrypt_batch()->mutable_packed()->set_sizes(1, 3);
  v1::Request sizes_long = sizes_short;
  sizes_long.mutable_reencrypt_batch()->mutable_packed()->set_sizes(1, 100000);
  v1::Request both;
  Pack({under_current_}, *both.mutable_reencrypt_batch()->mutable_packed());
  both.mutable_reencrypt_batch()->add_blobs(under_current_);
  v1::Request check_bad;
  Pack({under_current_}, *check_bad.mutable_check_blobs()->mutable_packed());
  check_bad.mutable_check_blobs()->mutable_packed()->mutable_data()->push_back('x');
  v1::Request generate_both;
  Pack({"a"}, *generate_both.mutable_generate_keys()->mutable_packed_key_ids());
  generate_both.mutable_generate_keys()->add_key_ids("b");
  for (const v1::Request& r : {sizes_short, sizes_long, both, check_bad, generate_both}) {
    v1::Response resp = Call(r);
    EXPECT_EQ(resp.status().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(resp.status().reason(), "MALFORMED_PACKED_BLOBS") << resp.status().message();
    EXPECT_EQ(resp.body_case(), v1::Response::BODY_NOT_SET);
  }
}

TEST_F(PackedBatchTest, TooManyPackedBlobsIsBatchTooLargeBeforeAnyIsRead) {
  v1::Request r;
  r.mutable_check_blobs()->mutable_packed()->mutable_sizes()->Resize(
      static_cast<int>(kMaxBatchBlobs) + 1, 0);
  EXPECT_EQ(Call(r).status().reason(), "BATCH_TOO_LARGE");
  v1::Request g;
  g.mutable_generate_keys()->mutable_packed_key_ids()->mutable_sizes()->Resize(
      static_cast<int>(kMaxBatchBlobs) + 1, 0);
  EXPECT_EQ(Call(g).status().reason(), "BATCH_TOO_LARGE");
}

TEST_F(PackedBatchTest, CheckBlobsCountsAndListsOnlyWhatCannotBeUsed) {
  // Promote NEW: the first blob is now under OLD, the moved one under CURRENT.
  Promote(*unit_);
  v1::Request r;
  Pack({under_current_, under_new_, foreign_, tampered_},
       *r.mutable_check_blobs()->mutable_packed());
  v1::Response resp = Call(r);
  ASSERT_EQ(resp.status().code(), 0) << resp.status().message();
  const v1::CheckBlobsResponse& a = resp.check_blobs();
  EXPECT_EQ(a.checked(), 4u);
  EXPECT_EQ(a.results_size(), 0);
  ASSERT_EQ(a.under_old_size(), 1);
  EXPECT_EQ(a.under_old(0), 0u);
  ASSERT_EQ(a.failures_size(), 2);
  EXPECT_EQ(a.failures(0).index(), 2u);
  EXPECT_EQ(a.failures(0).status().reason(), "UNKNOWN_WKID");
  EXPECT_EQ(a.failures(1).index(), 3u);
  EXPECT_EQ(a.failures(1).status().reason(), "BLOB_AUTHENTICATION_FAILED");

  v1::Request empty;
  empty.mutable_check_blobs()->mutable_packed();
  v1::Response none = Call(empty);
  ASSERT_EQ(none.status().code(), 0);
  EXPECT_EQ(none.check_blobs().checked(), 0u);
}

TEST_F(PackedBatchTest, GenerateKeysPackedGivesABlobPerKeyIdInOrder) {
  v1::Request r;
  Pack({"k-1", "k-22", std::string(255, 'z')},
       *r.mutable_generate_keys()->mutable_packed_key_ids());
  v1::Response resp = Call(r);
  ASSERT_EQ(resp.status().code(), 0) << resp.status().message();
  EXPECT_EQ(resp.generate_keys().blobs_size(), 0);
  const std::vector<std::string> blobs = Unpacked(resp.generate_keys().packed());
  ASSERT_EQ(blobs.size(), 3u);
  const std::vector<std::string> ids = {"k-1", "k-22", std::string(255, 'z')};
  for (size_t i = 0; i < ids.size(); ++i) {
    auto parsed = wire::ParseBlob(AsBytes(blobs[i]));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->key_id, ids[i]);
    EXPECT_EQ(blobs[i].size(), wire::kBlobOverhead + ids[i].size());
  }
  // A bad key id in a packed batch refuses the batch, naming its place.
  v1::Request bad;
  Pack({"ok", ""}, *bad.mutable_generate_keys()->mutable_packed_key_ids());
  v1::Response refused = Call(bad);
  EXPECT_EQ(refused.status().reason(), "BAD_KEY_ID");
  EXPECT_NE(refused.status().message().find("key id 2"), std::string::npos)
      << refused.status().message();
}

}  // namespace
}  // namespace hsmsim::firmware

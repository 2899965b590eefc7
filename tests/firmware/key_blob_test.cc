// Key storage blobs: round trip, tamper detection, re-encryption batches and
// the OLD register safety net.
#include "firmware/key_blob.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/hex.h"
#include "tests/firmware/unit_fixture.h"

namespace hsmsim::firmware {
namespace {

using testing::Op;
using testing::StatusOf;

class KeyBlobTest : public testing::UnitFixture {
 protected:
  void SetUp() override {
    UnitFixture::SetUp();
    LoadAndCommit(*unit_, k1_);
    Promote(*unit_);
  }

  v1::Response Wrap(const std::string& blob, const std::string& plaintext) {
    v1::Request r;
    r.mutable_wrap_key()->set_blob(blob);
    r.mutable_wrap_key()->set_plaintext(plaintext);
    return Call(r);
  }
  v1::Response Unwrap(const std::string& blob, const std::string& wrapped) {
    v1::Request r;
    r.mutable_unwrap_key()->set_blob(blob);
    r.mutable_unwrap_key()->set_wrapped(wrapped);
    return Call(r);
  }
  v1::Response Reencrypt(const std::vector<std::string>& blobs) {
    v1::Request r;
    for (const auto& b : blobs) r.mutable_reencrypt_batch()->add_blobs(b);
    return Call(r);
  }
};

TEST_F(KeyBlobTest, GeneratedBlobParsesAndNamesCurrentWkid) {
  std::string blob = GenerateKey("tenant-1/key-1");
  auto parsed = ParseBlob(AsBytes(blob));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->key_id, "tenant-1/key-1");
  EXPECT_EQ(parsed->format_version, kBlobFormatVersion);
  EXPECT_EQ(ToHex(parsed->wkid),
            ToHex(unit_->Info().current_register().verification_pattern()).substr(0, 32));
}

TEST_F(KeyBlobTest, WrapUnwrapRoundTrip) {
  std::string blob = GenerateKey("k");
  v1::Response wrapped = Wrap(blob, "0123456789abcdef0123456789abcdef");
  ASSERT_EQ(wrapped.status().code(), 0) << wrapped.status().message();
  EXPECT_FALSE(wrapped.wrap_key().blob_under_old());
  v1::Response unwrapped = Unwrap(blob, wrapped.wrap_key().wrapped());
  ASSERT_EQ(unwrapped.status().code(), 0) << unwrapped.status().message();
  EXPECT_EQ(unwrapped.unwrap_key().plaintext(), "0123456789abcdef0123456789abcdef");
}

TEST_F(KeyBlobTest, EverySingleFlippedBitOfABlobIsRejected) {
  std::string blob = GenerateKey("flip-me");
  v1::Response wrapped = Wrap(blob, "data key");
  ASSERT_EQ(wrapped.status().code(), 0);
  int rejected = 0;
  for (size_t byte = 0; byte < blob.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = blob;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      v1::Response r = Unwrap(bad, wrapped.wrap_key().wrapped());
      EXPECT_NE(r.status().code(), 0) << "flipped bit " << bit << " of byte " << byte;
      EXPECT_FALSE(r.has_unwrap_key());
      if (r.status().code() != 0) ++rejected;
    }
  }
  EXPECT_EQ(rejected, static_cast<int>(blob.size() * 8));
}

TEST_F(KeyBlobTest, FlippedBitsRejectedWithTheRightReasonPerRegion) {
  std::string blob = GenerateKey("abc");
  auto parsed = *ParseBlob(AsBytes(blob));
  const size_t header = parsed.header.size();
  auto flip = [&](size_t offset) {
    std::string bad = blob;
    bad[offset] = static_cast<char>(bad[offset] ^ 0x01);
    return Unwrap(bad, Wrap(blob, "x").wrap_key().wrapped()).status();
  };
  // Attributes are authenticated but not structural: authentication fails.
  EXPECT_EQ(flip(2).reason(), "BLOB_AUTHENTICATION_FAILED");
  // WKID: the blob now names a master key this unit does not hold.
  EXPECT_EQ(flip(6).reason(), "UNKNOWN_WKID");
  // IV, ciphertext and tag.
  EXPECT_EQ(flip(header).reason(), "BLOB_AUTHENTICATION_FAILED");
  EXPECT_EQ(flip(header + 12).reason(), "BLOB_AUTHENTICATION_FAILED");
  EXPECT_EQ(flip(blob.size() - 1).reason(), "BLOB_AUTHENTICATION_FAILED");
  // Version byte.
  EXPECT_EQ(flip(0).reason(), "UNSUPPORTED_BLOB_VERSION");
}

TEST_F(KeyBlobTest, TruncatedAndEmptyBlobsAreMalformed) {
  std::string blob = GenerateKey("k");
  for (size_t len : {size_t{0}, size_t{5}, blob.size() - 1}) {
    v1::Response r = Wrap(blob.substr(0, len), "x");
    EXPECT_EQ(r.status().reason(), "MALFORMED_BLOB") << len;
  }
  EXPECT_EQ(Wrap(blob + "x", "x").status().reason(), "MALFORMED_BLOB");
}

TEST_F(KeyBlobTest, TamperedWrappedKeyRejected) {
  std::string blob = GenerateKey("k");
  std::string wrapped = Wrap(blob, "secret").wrap_key().wrapped();
  std::string bad = wrapped;
  bad[bad.size() - 1] ^= 0x40;
  EXPECT_EQ(Unwrap(blob, bad).status().reason(), "WRAPPED_KEY_AUTHENTICATION_FAILED");
  // A data key wrapped under one root key does not unwrap under another.
  std::string other = GenerateKey("k");
  EXPECT_EQ(Unwrap(other, wrapped).status().reason(), "WRAPPED_KEY_AUTHENTICATION_FAILED");
  EXPECT_EQ(Unwrap(blob, "short").status().reason(), "MALFORMED_WRAPPED_KEY");
}

TEST_F(KeyBlobTest, NonUtf8KeyIdInADamagedBlobStillGivesAParsableResponse) {
  std::string blob = GenerateKey("ab");
  auto parsed = *ParseBlob(AsBytes(blob));
  // Replace the key id bytes "ab" by two bytes that are not UTF-8.
  std::string bad = blob;
  bad[parsed.header.size() - 2] = '\xff';
  bad[parsed.header.size() - 1] = '\xfe';
  LoadAndCommit(*unit_, k2_);
  v1::Response r = Reencrypt({bad});
  ASSERT_EQ(r.status().code(), 0);
  ASSERT_EQ(r.reencrypt_batch().results(0).outcome(), v1::BLOB_FAILED);
  EXPECT_NE(r.reencrypt_batch().results(0).status().message().find("\\xff\\xfe"), std::string::npos)
      << r.reencrypt_batch().results(0).status().message();
  v1::Response reparsed;
  EXPECT_TRUE(reparsed.ParseFromString(r.SerializeAsString()));
}

TEST_F(KeyBlobTest, IvsNeverRepeat) {
  std::set<std::string> ivs;
  for (int i = 0; i < 200; ++i) {
    std::string blob = GenerateKey("k" + std::to_string(i));
    auto parsed = *ParseBlob(AsBytes(blob));
    EXPECT_TRUE(ivs.insert(crypto::AsString(parsed.iv)).second);
  }
}

TEST_F(KeyBlobTest, ReencryptNeedsCommittedNew) {
  std::string blob = GenerateKey("k");
  v1::Response r = Reencrypt({blob});
  EXPECT_EQ(r.status().code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.status().reason(), "NEW_REGISTER_NOT_COMMITTED");
  ASSERT_TRUE(Do(testing::LoadCommand(*unit_, k2_, 2, entropy_)).ok());
  EXPECT_EQ(Reencrypt({blob}).status().reason(), "NEW_REGISTER_NOT_COMMITTED");
}

TEST_F(KeyBlobTest, BatchMixingCurrentNewAndForeignGetsPerBlobResults) {
  std::string under_current = GenerateKey("current");
  // A blob under a foreign master key: made on another unit.
  auto foreign_unit = NewUnit();
  LoadAndCommit(*foreign_unit, k3_);
  Promote(*foreign_unit);
  v1::Request gen;
  gen.mutable_generate_key()->set_key_id("foreign");
  std::string foreign = foreign_unit->Handle(gen).response.generate_key().blob();

  LoadAndCommit(*unit_, k2_);
  v1::Response first = Reencrypt({under_current});
  ASSERT_EQ(first.status().code(), 0);
  std::string under_new = first.reencrypt_batch().results(0).blob();

  v1::Response r = Reencrypt({under_current, under_new, foreign, "garbage"});
  ASSERT_EQ(r.status().code(), 0) << r.status().message();
  ASSERT_EQ(r.reencrypt_batch().results_size(), 4);
  const auto& res = r.reencrypt_batch().results();
  EXPECT_EQ(res[0].outcome(), v1::BLOB_REENCRYPTED);
  EXPECT_EQ(res[1].outcome(), v1::BLOB_ALREADY_UNDER_TARGET);
  EXPECT_EQ(res[1].blob(), under_new);
  EXPECT_EQ(res[2].outcome(), v1::BLOB_FAILED);
  EXPECT_EQ(res[2].status().reason(), "UNKNOWN_WKID");
  EXPECT_TRUE(res[2].blob().empty());
  EXPECT_EQ(res[3].outcome(), v1::BLOB_FAILED);
  EXPECT_EQ(res[3].status().reason(), "MALFORMED_BLOB");

  // The re-encrypted blob names NEW's WKID, keeps the key id, has a new IV.
  auto before = *ParseBlob(AsBytes(under_current));
  auto after = *ParseBlob(AsBytes(res[0].blob()));
  EXPECT_EQ(after.key_id, "current");
  EXPECT_EQ(ToHex(after.wkid),
            ToHex(unit_->Info().new_register().verification_pattern()).substr(0, 32));
  EXPECT_NE(crypto::AsString(before.iv), crypto::AsString(after.iv));
}

TEST_F(KeyBlobTest, RewrappedKeyIsTheSameKey) {
  std::string blob = GenerateKey("same");
  std::string wrapped = Wrap(blob, "the data key").wrap_key().wrapped();
  LoadAndCommit(*unit_, k2_);
  std::string rewrapped = Reencrypt({blob}).reencrypt_batch().results(0).blob();
  Promote(*unit_);
  v1::Response r = Unwrap(rewrapped, wrapped);
  ASSERT_EQ(r.status().code(), 0) << r.status().message();
  EXPECT_EQ(r.unwrap_key().plaintext(), "the data key");
  EXPECT_FALSE(r.unwrap_key().blob_under_old());
}

TEST_F(KeyBlobTest, BlobUnderOldStillUnwrapsAndIsFlagged) {
  std::string blob = GenerateKey("straggler");
  std::string wrapped = Wrap(blob, "dk").wrap_key().wrapped();
  LoadAndCommit(*unit_, k2_);
  Promote(*unit_);
  v1::Response r = Unwrap(blob, wrapped);
  ASSERT_EQ(r.status().code(), 0) << r.status().message();
  EXPECT_EQ(r.unwrap_key().plaintext(), "dk");
  EXPECT_TRUE(r.unwrap_key().blob_under_old());
  EXPECT_TRUE(Wrap(blob, "dk2").wrap_key().blob_under_old());

  // Re-encrypt OLD -> CURRENT for the straggler.
  v1::Request from_old;
  from_old.mutable_reencrypt_from_old()->add_blobs(blob);
  v1::Response moved = Call(from_old);
  ASSERT_EQ(moved.status().code(), 0) << moved.status().message();
  ASSERT_EQ(moved.reencrypt_from_old().results(0).outcome(), v1::BLOB_REENCRYPTED);
  v1::Response again = Unwrap(moved.reencrypt_from_old().results(0).blob(), wrapped);
  EXPECT_FALSE(again.unwrap_key().blob_under_old());
  EXPECT_EQ(again.unwrap_key().plaintext(), "dk");

  // Once OLD is cleared, the straggler no longer works.
  ASSERT_TRUE(Do(Op([](v1::Command& c) { c.mutable_clear_old_master_key(); })).ok());
  EXPECT_EQ(Unwrap(blob, wrapped).status().reason(), "UNKNOWN_WKID");
}

TEST_F(KeyBlobTest, CheckBlobsReportsPerBlob) {
  std::string current = GenerateKey("a");
  LoadAndCommit(*unit_, k2_);
  std::string under_new = Reencrypt({current}).reencrypt_batch().results(0).blob();
  std::string damaged = current;
  damaged.back() ^= 1;
  v1::Request r;
  for (const auto& b : {current, under_new, damaged, std::string("junk")}) {
    r.mutable_check_blobs()->add_blobs(b);
  }
  v1::Response resp = Call(r);
  ASSERT_EQ(resp.status().code(), 0);
  const auto& res = resp.check_blobs().results();
  ASSERT_EQ(res.size(), 4);
  EXPECT_EQ(res[0].status().code(), 0);
  EXPECT_FALSE(res[0].under_old());
  EXPECT_EQ(res[1].status().reason(), "BLOB_UNDER_NEW");
  EXPECT_EQ(res[2].status().reason(), "BLOB_AUTHENTICATION_FAILED");
  EXPECT_EQ(res[3].status().reason(), "MALFORMED_BLOB");
  Promote(*unit_);
  resp = Call(r);
  EXPECT_TRUE(resp.check_blobs().results(0).under_old());
  EXPECT_EQ(resp.check_blobs().results(1).status().code(), 0);
}

TEST_F(KeyBlobTest, BlobUnderUnpromotedNewIsRefusedForUse) {
  LoadAndCommit(*unit_, k2_);
  std::string blob = GenerateKey("k");
  std::string under_new = Reencrypt({blob}).reencrypt_batch().results(0).blob();
  EXPECT_EQ(Wrap(under_new, "x").status().reason(), "BLOB_UNDER_NEW");
}

TEST_F(KeyBlobTest, GenerateKeyNeedsCurrent) {
  ASSERT_TRUE(Do(Op([](v1::Command& c) { c.mutable_clear_current_master_key(); })).ok());
  v1::Request r;
  r.mutable_generate_key()->set_key_id("k");
  EXPECT_EQ(Call(r).status().reason(), "CURRENT_REGISTER_EMPTY");
}

TEST_F(KeyBlobTest, KeyIdLimits) {
  v1::Request r;
  r.mutable_generate_key()->set_key_id("");
  EXPECT_EQ(Call(r).status().reason(), "BAD_KEY_ID");
  r.mutable_generate_key()->set_key_id(std::string(256, 'k'));
  EXPECT_EQ(Call(r).status().reason(), "BAD_KEY_ID");
  r.mutable_generate_key()->set_key_id(std::string(255, 'k'));
  EXPECT_EQ(Call(r).status().code(), 0);
}

TEST_F(KeyBlobTest, DataKeySizeLimits) {
  std::string blob = GenerateKey("k");
  EXPECT_EQ(Wrap(blob, "").status().reason(), "BAD_DATA_KEY_SIZE");
  EXPECT_EQ(Wrap(blob, std::string(1025, 'x')).status().reason(), "BAD_DATA_KEY_SIZE");
  EXPECT_EQ(Wrap(blob, std::string(1024, 'x')).status().code(), 0);
}

TEST_F(KeyBlobTest, OversizedBatchRefused) {
  LoadAndCommit(*unit_, k2_);
  v1::Request r;
  for (size_t i = 0; i <= kMaxBatchBlobs; ++i) r.mutable_reencrypt_batch()->add_blobs("");
  EXPECT_EQ(Call(r).status().reason(), "BATCH_TOO_LARGE");
}

// An entropy source that fails after `good` calls.
class FailingEntropy final : public crypto::Entropy {
 public:
  explicit FailingEntropy(int good) : good_(good) {}
  absl::Status Generate(absl::Span<uint8_t> out) override {
    if (good_-- <= 0) return absl::InternalError("no entropy");
    for (uint8_t& b : out) b = static_cast<uint8_t>(++counter_);
    return absl::OkStatus();
  }

 private:
  int good_;
  uint8_t counter_ = 0;
};

TEST(BlobSealerTest, EveryKeyOfABatchOpensAndNoTwoAreAlike) {
  crypto::SeededEntropy entropy(41);
  SecretBytes master(32, 0x5a);
  auto kek = BlobKek::Create(master);
  ASSERT_TRUE(kek.ok()) << kek.status();
  auto sealer = BlobSealer::Create(**kek, entropy, 300);
  ASSERT_TRUE(sealer.ok()) << sealer.status();
  std::set<std::string> keys;
  std::set<std::string> ivs;
  for (int i = 0; i < 600; ++i) {  // more than two draws of 256
    const std::string key_id = "key-" + std::to_string(i);
    std::string blob(BlobSealer::SealedSize(key_id), '\0');
    ASSERT_TRUE(
        sealer
            ->SealNewKeyInto(key_id, 7,
                             absl::MakeSpan(reinterpret_cast<uint8_t*>(blob.data()), blob.size()))
            .ok());
    auto parsed = ParseBlob(AsBytes(blob));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->key_id, key_id);
    EXPECT_EQ(parsed->attributes, 7u);
    auto key = (*kek)->Open(*parsed);
    ASSERT_TRUE(key.ok()) << key.status();
    keys.insert(std::string(key->begin(), key->end()));
    ivs.insert(crypto::AsString(parsed->iv));
  }
  EXPECT_EQ(keys.size(), 600u);
  EXPECT_EQ(ivs.size(), 600u);
}

TEST(BlobSealerTest, WrongSizesAndFailedEntropyLeaveNoKeyBehind) {
  SecretBytes master(32, 0x33);
  auto kek = BlobKek::Create(master);
  ASSERT_TRUE(kek.ok());
  FailingEntropy entropy(0);
  auto sealer = BlobSealer::Create(**kek, entropy, 1);
  ASSERT_TRUE(sealer.ok());
  std::string blob(BlobSealer::SealedSize("k") + 1, 'x');
  auto span = absl::MakeSpan(reinterpret_cast<uint8_t*>(blob.data()), blob.size());
  EXPECT_EQ(ReasonOf(sealer->SealNewKeyInto("k", 0, span)), "BAD_BUFFER_SIZE");
  EXPECT_EQ(ReasonOf(sealer->SealNewKeyInto("", 0, span.first(BlobSealer::SealedSize("")))),
            "BAD_KEY_ID");
  absl::Status failed = sealer->SealNewKeyInto("k", 0, span.first(BlobSealer::SealedSize("k")));
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(blob, std::string(blob.size(), 'x'));  // nothing written
}

}  // namespace
}  // namespace hsmsim::firmware

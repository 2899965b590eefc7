// The blob header reader the host uses to learn a blob's WKID and key id
// without any key (proto/wire/blob_format.h).
#include <gtest/gtest.h>

#include <string>

#include "common/secret_bytes.h"
#include "common/status.h"
#include "proto/wire/blob_format.h"

namespace hsmsim::wire {
namespace {

BlobWkid TestWkid() {
  BlobWkid wkid;
  for (size_t i = 0; i < wkid.size(); ++i) wkid[i] = static_cast<uint8_t>(0xa0 + i);
  return wkid;
}

// A structurally valid blob: header, then IV, ciphertext and tag bytes.
std::string Blob(std::string_view key_id, uint32_t attributes = 0x01020304) {
  std::string blob = BuildBlobHeader(kBlobAlgorithmAes256, attributes, TestWkid(), key_id);
  blob.append(kBlobIvSize + kRootKeySize + kBlobTagSize, '\x5a');
  return blob;
}

TEST(BlobHeaderTest, ReadsEveryHeaderField) {
  const std::string blob = Blob("root-key-7");
  auto parsed = ParseBlob(AsBytes(blob));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->format_version, kBlobFormatVersion);
  EXPECT_EQ(parsed->algorithm, kBlobAlgorithmAes256);
  EXPECT_EQ(parsed->attributes, 0x01020304u);
  EXPECT_EQ(parsed->wkid, TestWkid());
  EXPECT_EQ(parsed->key_id, "root-key-7");
  // 24 fixed header bytes + the key id, then 12 + 32 + 16.
  EXPECT_EQ(parsed->header.size(), 24u + 10u);
  EXPECT_EQ(parsed->iv.size(), kBlobIvSize);
  EXPECT_EQ(parsed->ciphertext.size(), kRootKeySize);
  EXPECT_EQ(parsed->tag.size(), kBlobTagSize);
  EXPECT_EQ(blob.size(), 34u + 60u);
  EXPECT_EQ(static_cast<uint8_t>(blob[kBlobWkidOffset]), 0xa0);
}

TEST(BlobHeaderTest, KeyIdLengthLimits) {
  EXPECT_TRUE(ParseBlob(AsBytes(Blob(std::string(kMaxKeyIdSize, 'k')))).ok());
  std::string empty_id = Blob("x");
  empty_id[23] = 0;  // key id length 0
  EXPECT_EQ(ReasonOf(ParseBlob(AsBytes(empty_id)).status()), "MALFORMED_BLOB");
}

TEST(BlobHeaderTest, EveryTruncationAndExtensionIsMalformed) {
  const std::string blob = Blob("k");
  for (size_t n = 0; n < blob.size(); ++n) {
    auto parsed = ParseBlob(AsBytes(std::string_view(blob).substr(0, n)));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_EQ(ReasonOf(parsed.status()), "MALFORMED_BLOB") << n;
  }
  EXPECT_EQ(ReasonOf(ParseBlob(AsBytes(blob + "x")).status()), "MALFORMED_BLOB");
}

TEST(BlobHeaderTest, OtherVersionAndAlgorithmRefused) {
  std::string v2 = Blob("k");
  v2[0] = 2;
  EXPECT_EQ(ReasonOf(ParseBlob(AsBytes(v2)).status()), "UNSUPPORTED_BLOB_VERSION");
  std::string other_algorithm = Blob("k");
  other_algorithm[1] = 9;
  EXPECT_EQ(ReasonOf(ParseBlob(AsBytes(other_algorithm)).status()), "MALFORMED_BLOB");
}

}  // namespace
}  // namespace hsmsim::wire

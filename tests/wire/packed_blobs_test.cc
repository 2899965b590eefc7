// PackedBlobs (docs/protocol.md section 10.6): what is packed unpacks to the
// same strings, and sizes that do not add up to the data are refused.
#include "proto/wire/packed_blobs.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/reasons.h"
#include "common/status.h"

namespace hsmsim::wire {
namespace {

TEST(PackedBlobsTest, WhatIsPackedUnpacksToTheSameStringsInOrder) {
  v1::PackedBlobs packed;
  PackedBlobsWriter writer(packed, 4, 10);
  writer.Add("abc");
  writer.Add("");
  absl::Span<uint8_t> space = writer.Extend(5);
  ASSERT_EQ(space.size(), 5u);
  for (uint8_t& b : space) b = 'x';
  writer.Add(std::string("\0\1", 2));
  auto views = UnpackBlobs(packed);
  ASSERT_TRUE(views.ok()) << views.status();
  EXPECT_EQ(std::vector<std::string>(views->begin(), views->end()),
            (std::vector<std::string>{"abc", "", "xxxxx", std::string("\0\1", 2)}));
  EXPECT_EQ(PackedSize(*views), 10u);
}

TEST(PackedBlobsTest, TruncateLastShortensOnlyTheLastString) {
  v1::PackedBlobs packed;
  PackedBlobsWriter writer(packed, 2, 0);
  writer.Add("keep");
  writer.Extend(8);
  writer.TruncateLast(0);
  writer.Add("next");
  auto views = UnpackBlobs(packed);
  ASSERT_TRUE(views.ok()) << views.status();
  EXPECT_EQ(std::vector<std::string>(views->begin(), views->end()),
            (std::vector<std::string>{"keep", "", "next"}));
}

TEST(PackedBlobsTest, SizesThatDoNotAddUpAreRefusedNamingBothFigures) {
  v1::PackedBlobs packed;
  packed.set_data("abcdef");
  packed.add_sizes(2);
  packed.add_sizes(3);
  auto short_sizes = UnpackBlobs(packed);
  EXPECT_EQ(ReasonOf(short_sizes.status()), reason::kMalformedPackedBlobs);
  EXPECT_NE(short_sizes.status().message().find("add up to 5 bytes"), std::string::npos);
  EXPECT_NE(short_sizes.status().message().find("holds 6 bytes"), std::string::npos);
  // Sizes near 2^32 each must not wrap around to the data's size.
  packed.clear_sizes();
  packed.add_sizes(UINT32_MAX);
  packed.add_sizes(7);
  EXPECT_EQ(ReasonOf(UnpackBlobs(packed).status()), reason::kMalformedPackedBlobs);
}

TEST(PackedBlobsTest, BatchBlobsTakesEitherFormButNotBoth) {
  google::protobuf::RepeatedPtrField<std::string> repeated;
  *repeated.Add() = "one";
  auto from_repeated = BatchBlobs(repeated, nullptr);
  ASSERT_TRUE(from_repeated.ok());
  ASSERT_EQ(from_repeated->size(), 1u);
  EXPECT_EQ((*from_repeated)[0], "one");

  v1::PackedBlobs packed;
  PackedBlobsWriter(packed, 1, 3).Add("two");
  EXPECT_EQ(ReasonOf(BatchBlobs(repeated, &packed).status()), reason::kMalformedPackedBlobs);
  repeated.Clear();
  auto from_packed = BatchBlobs(repeated, &packed);
  ASSERT_TRUE(from_packed.ok());
  EXPECT_EQ((*from_packed)[0], "two");
}

}  // namespace
}  // namespace hsmsim::wire

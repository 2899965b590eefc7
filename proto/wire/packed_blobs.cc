#include "proto/wire/packed_blobs.h"

#include <algorithm>

#include "common/check.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::wire {

absl::StatusOr<std::vector<std::string_view>> UnpackBlobs(const v1::PackedBlobs& packed) {
  const std::string& data = packed.data();
  // Summed in 64 bits: at most 2^32 sizes of below 2^32 each cannot wrap.
  uint64_t total = 0;
  for (uint32_t size : packed.sizes()) total += size;
  if (total != data.size()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedPackedBlobs,
                 StrCat("packed batch of ", packed.sizes_size(), " strings whose sizes add up to ",
                        total, " bytes, but its data holds ", data.size(), " bytes"));
  }
  std::vector<std::string_view> views;
  views.reserve(static_cast<size_t>(packed.sizes_size()));
  size_t offset = 0;
  for (uint32_t size : packed.sizes()) {
    views.emplace_back(data.data() + offset, size);
    offset += size;
  }
  return views;
}

absl::StatusOr<std::vector<std::string_view>> BatchBlobs(
    const google::protobuf::RepeatedPtrField<std::string>& repeated,
    const v1::PackedBlobs* packed) {
  if (packed != nullptr) {
    if (!repeated.empty()) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedPackedBlobs,
                   StrCat("the request sets both the packed field (", packed->sizes_size(),
                          " strings) and the repeated field (", repeated.size(),
                          " strings); set one of the two"));
    }
    return UnpackBlobs(*packed);
  }
  std::vector<std::string_view> views;
  views.reserve(static_cast<size_t>(repeated.size()));
  for (const std::string& s : repeated) views.emplace_back(s);
  return views;
}

PackedBlobsWriter::PackedBlobsWriter(v1::PackedBlobs& packed, size_t count, size_t bytes)
    : packed_(packed) {
  packed_.mutable_data()->reserve(packed_.data().size() + bytes);
  packed_.mutable_sizes()->Reserve(packed_.sizes_size() + static_cast<int>(count));
}

void PackedBlobsWriter::Add(std::string_view blob) {
  packed_.mutable_data()->append(blob);
  packed_.add_sizes(static_cast<uint32_t>(blob.size()));
}

absl::Span<uint8_t> PackedBlobsWriter::Extend(size_t size) {
  std::string& data = *packed_.mutable_data();
  const size_t at = data.size();
  data.resize(at + size);
  packed_.add_sizes(static_cast<uint32_t>(size));
  return absl::MakeSpan(reinterpret_cast<uint8_t*>(data.data()) + at, size);
}

void PackedBlobsWriter::TruncateLast(size_t size) {
  HSMSIM_CHECK(packed_.sizes_size() > 0);
  const int last = packed_.sizes_size() - 1;
  const uint32_t had = packed_.sizes(last);
  HSMSIM_CHECK(size <= had);
  std::string& data = *packed_.mutable_data();
  data.resize(data.size() - (had - size));
  packed_.set_sizes(last, static_cast<uint32_t>(size));
}

size_t PackedSize(absl::Span<const std::string_view> blobs) {
  size_t total = 0;
  for (std::string_view b : blobs) total += b.size();
  return total;
}

}  // namespace hsmsim::wire

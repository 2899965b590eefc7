#include "proto/wire/blob_format.h"

#include <algorithm>
#include <string>

#include "common/check.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::wire {
namespace {

constexpr size_t kFixedHeaderSize = kBlobWkidOffset + kBlobWkidSize + 2;

absl::Status Malformed(std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedBlob,
               StrCat("key blob is malformed: ", what));
}

}  // namespace

void WriteBlobHeader(uint8_t algorithm, uint32_t attributes, const BlobWkid& wkid,
                     std::string_view key_id, absl::Span<uint8_t> out) {
  HSMSIM_CHECK(out.size() == BlobHeaderSize(key_id));
  uint8_t* p = out.data();
  *p++ = kBlobFormatVersion;
  *p++ = algorithm;
  for (int shift = 24; shift >= 0; shift -= 8) *p++ = static_cast<uint8_t>(attributes >> shift);
  p = std::copy(wkid.begin(), wkid.end(), p);
  *p++ = static_cast<uint8_t>(key_id.size() >> 8);
  *p++ = static_cast<uint8_t>(key_id.size() & 0xff);
  std::copy(key_id.begin(), key_id.end(), p);
}

std::string BuildBlobHeader(uint8_t algorithm, uint32_t attributes, const BlobWkid& wkid,
                            std::string_view key_id) {
  std::string h(BlobHeaderSize(key_id), '\0');
  WriteBlobHeader(algorithm, attributes, wkid, key_id,
                  absl::MakeSpan(reinterpret_cast<uint8_t*>(h.data()), h.size()));
  return h;
}

absl::StatusOr<ParsedBlob> ParseBlob(absl::Span<const uint8_t> blob) {
  if (blob.size() < kFixedHeaderSize) {
    return Malformed(StrCat(blob.size(), " bytes is shorter than a blob header"));
  }
  ParsedBlob p;
  p.format_version = blob[0];
  if (p.format_version != kBlobFormatVersion) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kUnsupportedBlobVersion,
                 StrCat("key blob format version ", p.format_version,
                        " is not supported (hsmsim reads version ", kBlobFormatVersion, ")"));
  }
  p.algorithm = blob[1];
  if (BlobKeySize(p.algorithm) == 0) {
    return Malformed(StrCat("unknown algorithm ", p.algorithm));
  }
  p.attributes = (uint32_t{blob[2]} << 24) | (uint32_t{blob[3]} << 16) | (uint32_t{blob[4]} << 8) |
                 uint32_t{blob[5]};
  std::copy_n(blob.begin() + 6, kBlobWkidSize, p.wkid.begin());
  size_t id_len = (size_t{blob[22]} << 8) | size_t{blob[23]};
  if (id_len == 0 || id_len > kMaxKeyIdSize) {
    return Malformed(StrCat("key id length ", id_len, " is outside 1..255"));
  }
  size_t header_size = kFixedHeaderSize + id_len;
  size_t expected = header_size + kBlobIvSize + kRootKeySize + kBlobTagSize;
  if (blob.size() != expected) {
    return Malformed(StrCat("size ", blob.size(), " bytes, expected ", expected));
  }
  p.key_id =
      std::string_view(reinterpret_cast<const char*>(blob.data()) + kFixedHeaderSize, id_len);
  p.header = blob.subspan(0, header_size);
  p.iv = blob.subspan(header_size, kBlobIvSize);
  p.ciphertext = blob.subspan(header_size + kBlobIvSize, kRootKeySize);
  p.tag = blob.subspan(header_size + kBlobIvSize + kRootKeySize, kBlobTagSize);
  return p;
}

}  // namespace hsmsim::wire

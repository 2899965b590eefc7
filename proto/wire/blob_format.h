// The layout of a key storage blob (a key wrapped under a master key), as
// both the unit, which seals and opens blobs, and the host, which stores them
// and reads their WKID and key id, need it. Reading the header never needs
// a key; authenticity is the firmware's business (firmware/key_blob.h).
//
// Layout (all integers big-endian; docs/protocol.md section 11):
//   header  u8  format_version (1)
//           u8  algorithm (1 = AES-256, 2 = AES-128, 3 = AES-192)
//           u32 attributes
//           16  WKID of the master key (the first 16 bytes of its VP)
//           u16 key_id length (1..255), then the key id bytes
//   body    12  IV
//           32  ciphertext of the 32-byte root key (an AES-128 or -192 key
//               zero-padded to 32 bytes: the algorithm says how many count)
//           16  GCM tag
// The body is AES-256-GCM (NIST SP 800-38D) with the whole header as
// associated data.
#ifndef HSMSIM_PROTO_WIRE_BLOB_FORMAT_H_
#define HSMSIM_PROTO_WIRE_BLOB_FORMAT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hsmsim::wire {

inline constexpr uint8_t kBlobFormatVersion = 1;
inline constexpr uint8_t kBlobAlgorithmAes256 = 1;
inline constexpr uint8_t kBlobAlgorithmAes128 = 2;
inline constexpr uint8_t kBlobAlgorithmAes192 = 3;
inline constexpr size_t kMaxKeyIdSize = 255;
inline constexpr size_t kRootKeySize = 32;
inline constexpr size_t kBlobWkidSize = 16;
inline constexpr size_t kBlobWkidOffset = 1 + 1 + 4;  // after version, algorithm, attributes
inline constexpr size_t kBlobIvSize = 12;
inline constexpr size_t kBlobTagSize = 16;
// Every byte of a blob but its key id: header without the key id (24), IV,
// ciphertext and tag. A blob with a key id of L bytes has 84 + L bytes.
inline constexpr size_t kBlobOverhead =
    kBlobWkidOffset + kBlobWkidSize + 2 + kBlobIvSize + kRootKeySize + kBlobTagSize;
static_assert(kBlobOverhead == 84);

// BlobWkid is the 16-byte WKID a blob names (same type as crypto::Wkid).
using BlobWkid = std::array<uint8_t, kBlobWkidSize>;

// ParsedBlob is a view into a blob's bytes: valid only while they live.
struct ParsedBlob {
  uint8_t format_version = 0;
  uint8_t algorithm = 0;
  uint32_t attributes = 0;
  BlobWkid wkid{};
  std::string_view key_id;
  absl::Span<const uint8_t> header;  // the associated data
  absl::Span<const uint8_t> iv;
  absl::Span<const uint8_t> ciphertext;
  absl::Span<const uint8_t> tag;
};

// BlobKeySize returns the size in bytes of the key a blob of `algorithm`
// holds (32, 16 or 24), or 0 for an unknown algorithm.
inline size_t BlobKeySize(uint8_t algorithm) {
  switch (algorithm) {
    case kBlobAlgorithmAes256:
      return 32;
    case kBlobAlgorithmAes128:
      return 16;
    case kBlobAlgorithmAes192:
      return 24;
    default:
      return 0;
  }
}

// ParseBlob checks the structure of `blob` (not its authenticity) and returns
// views of its parts. Returns INVALID_ARGUMENT with reason MALFORMED_BLOB
// naming the first problem (size, algorithm, key id length), or
// UNSUPPORTED_BLOB_VERSION for another format version.
absl::StatusOr<ParsedBlob> ParseBlob(absl::Span<const uint8_t> blob);

// BlobHeaderSize returns the size of the header of a blob for `key_id`.
inline size_t BlobHeaderSize(std::string_view key_id) {
  return kBlobWkidOffset + kBlobWkidSize + 2 + key_id.size();
}

// WriteBlobHeader writes the header for the given fields into `out`, which
// must be exactly BlobHeaderSize(key_id) bytes. REQUIRES: 1 <= key_id.size()
// <= kMaxKeyIdSize (the caller checks).
void WriteBlobHeader(uint8_t algorithm, uint32_t attributes, const BlobWkid& wkid,
                     std::string_view key_id, absl::Span<uint8_t> out);

// BuildBlobHeader returns the header bytes for the given fields. REQUIRES:
// 1 <= key_id.size() <= kMaxKeyIdSize (the caller checks).
std::string BuildBlobHeader(uint8_t algorithm, uint32_t attributes, const BlobWkid& wkid,
                            std::string_view key_id);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_BLOB_FORMAT_H_

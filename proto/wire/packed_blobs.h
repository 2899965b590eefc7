// Packed batches of the hsmsim.v1 wire (docs/protocol.md section 10.6): the
// byte strings of a batch (blobs, key ids) carried in one PackedBlobs field,
// their bytes concatenated in `data` and their sizes in `sizes`, so that a
// batch of N blobs costs one allocation on each side instead of N. Shared by
// hsmsim-unit, which reads packed requests and writes packed answers, and the
// host, which does the reverse. Pure functions, no I/O.
#ifndef HSMSIM_PROTO_WIRE_PACKED_BLOBS_H_
#define HSMSIM_PROTO_WIRE_PACKED_BLOBS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::wire {

// UnpackBlobs returns views of the strings of `packed`, in order. The views
// point into packed.data() and are valid while `packed` lives unchanged.
// Returns INVALID_ARGUMENT (MALFORMED_PACKED_BLOBS) naming both figures when
// the sizes do not add up to the size of `data`.
absl::StatusOr<std::vector<std::string_view>> UnpackBlobs(const v1::PackedBlobs& packed);

// BatchBlobs returns views of a batch request's strings, whichever form it
// uses: `packed`'s when `packed` is set (not null), else `repeated`'s. The
// views are valid while the request lives unchanged. Returns INVALID_ARGUMENT
// (MALFORMED_PACKED_BLOBS) when both forms hold strings, and UnpackBlobs'
// error.
absl::StatusOr<std::vector<std::string_view>> BatchBlobs(
    const google::protobuf::RepeatedPtrField<std::string>& repeated, const v1::PackedBlobs* packed);

// PackedOrNull returns a batch request's packed strings (a
// ReencryptBatchRequest, ReencryptFromOldRequest or CheckBlobsRequest), or
// null when the request does not set its `packed` field.
template <typename BatchRequest>
const v1::PackedBlobs* PackedOrNull(const BatchRequest& request) {
  return request.has_packed() ? &request.packed() : nullptr;
}

// PackedBlobsWriter appends strings to a PackedBlobs. Not thread-safe.
// `packed` must outlive it, and nothing else may change `packed` meanwhile.
class PackedBlobsWriter {
 public:
  // `count` and `bytes`: how many strings, of how many bytes in total, the
  // caller expects to add (a reservation, not a limit).
  PackedBlobsWriter(v1::PackedBlobs& packed, size_t count, size_t bytes);

  // Add appends `blob` as the next string.
  void Add(std::string_view blob);

  // Extend appends a string of `size` bytes and returns them to be filled in
  // (they hold zeros until then). The span is valid until the next call of
  // Add, Extend or Truncate.
  absl::Span<uint8_t> Extend(size_t size);

  // TruncateLast shortens the last string appended to `size` bytes (<= its
  // size): used to drop what Extend gave when filling it failed.
  void TruncateLast(size_t size);

 private:
  v1::PackedBlobs& packed_;
};

// PackedSize returns the number of bytes `blobs` take in a PackedBlobs'
// `data` (the sum of their sizes).
size_t PackedSize(absl::Span<const std::string_view> blobs);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_PACKED_BLOBS_H_

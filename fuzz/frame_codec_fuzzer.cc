// Fuzzes the frame codec: DecodeFrameHeader and ParseFrameBody on arbitrary
// bytes, under several maximum frame sizes. Properties: never crash; a
// decoded header is at most 5 bytes and within the maximum; a body that
// parses re-encodes into a frame whose header decodes to its size.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>

#include "common/check.h"
#include "hsmsim/v1/unit.pb.h"
#include "proto/wire/frame_codec.h"

namespace {

void CheckRoundTrip(const google::protobuf::MessageLite& message) {
  std::string frame = hsmsim::wire::EncodeFrame(message);
  auto header = hsmsim::wire::DecodeFrameHeader(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(frame.data()), frame.size()),
      hsmsim::wire::kDefaultMaxFrameBytes);
  HSMSIM_CHECK(header.ok() && header->has_value());
  HSMSIM_CHECK((*header)->prefix_size + (*header)->body_size == frame.size());
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it refuses: noise here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr size_t kMaxima[] = {
      0, 1, 127, 128, 16384, hsmsim::wire::kDefaultMaxFrameBytes, UINT32_MAX};
  const size_t max = kMaxima[data[0] % (sizeof(kMaxima) / sizeof(kMaxima[0]))];
  absl::Span<const uint8_t> bytes(data + 1, size - 1);
  auto header = hsmsim::wire::DecodeFrameHeader(bytes, max);
  if (!header.ok() || !header->has_value()) {
    // Refused, or need more: a shorter input never yields a frame.
    for (size_t cut = 0; cut < bytes.size() && cut <= hsmsim::wire::kMaxVarint32Bytes; ++cut) {
      auto shorter = hsmsim::wire::DecodeFrameHeader(bytes.first(cut), max);
      HSMSIM_CHECK(!shorter.ok() || !shorter->has_value());
    }
    return 0;
  }
  const hsmsim::wire::FrameHeader h = **header;
  HSMSIM_CHECK(h.prefix_size >= 1 && h.prefix_size <= hsmsim::wire::kMaxVarint32Bytes);
  HSMSIM_CHECK(h.body_size <= max);
  if (bytes.size() - h.prefix_size < h.body_size) return 0;
  absl::Span<const uint8_t> body = bytes.subspan(h.prefix_size, h.body_size);
  hsmsim::v1::Request request;
  if (hsmsim::wire::ParseFrameBody(body, &request).ok()) CheckRoundTrip(request);
  hsmsim::v1::Response response;
  if (hsmsim::wire::ParseFrameBody(body, &response).ok()) CheckRoundTrip(response);
  return 0;
}

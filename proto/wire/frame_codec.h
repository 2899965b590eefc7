// Frame codec of the hsmsim.v1 wire: each message is a protobuf prefixed by
// its length as a varint32 (protobuf's "delimited" format). Pure functions:
// bytes in, "need more / frame / bad" out; no I/O. Shared by hsmsim-unit and
// the host client.
#ifndef HSMSIM_PROTO_WIRE_FRAME_CODEC_H_
#define HSMSIM_PROTO_WIRE_FRAME_CODEC_H_

#include <google/protobuf/message_lite.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hsmsim::wire {

inline constexpr size_t kDefaultMaxFrameBytes = size_t{64} << 20;
inline constexpr size_t kMaxVarint32Bytes = 5;

// The length prefix of a frame.
struct FrameHeader {
  size_t prefix_size = 0;  // bytes of the varint
  size_t body_size = 0;    // bytes of the message that follow
};

// DecodeFrameHeader reads the varint32 length prefix at the start of `data`.
// Returns std::nullopt when `data` holds only part of a prefix (read more),
// the header when the prefix is complete, INVALID_ARGUMENT (MALFORMED_FRAME)
// for a prefix longer than 5 bytes or above 2^32-1, and RESOURCE_EXHAUSTED
// (FRAME_TOO_LARGE) when the body would exceed `max_body_size`: the caller
// refuses it before reading (or allocating) the body.
absl::StatusOr<std::optional<FrameHeader>> DecodeFrameHeader(absl::Span<const uint8_t> data,
                                                             size_t max_body_size);

// AppendFrame serializes `message` with its length prefix onto `out`.
void AppendFrame(const google::protobuf::MessageLite& message, std::string* out);

// EncodeFrame returns `message` with its length prefix.
std::string EncodeFrame(const google::protobuf::MessageLite& message);

// ParseFrameBody parses a frame body into `message`. Returns INVALID_ARGUMENT
// (MALFORMED_FRAME) when the bytes are not a valid message of that type.
absl::Status ParseFrameBody(absl::Span<const uint8_t> body, google::protobuf::MessageLite* message);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_FRAME_CODEC_H_

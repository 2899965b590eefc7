#include "proto/wire/frame_codec.h"

#include <google/protobuf/io/coded_stream.h>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::wire {

absl::StatusOr<std::optional<FrameHeader>> DecodeFrameHeader(absl::Span<const uint8_t> data,
                                                             size_t max_body_size) {
  uint64_t value = 0;
  for (size_t i = 0; i < kMaxVarint32Bytes; ++i) {
    if (i >= data.size()) return std::optional<FrameHeader>();
    uint8_t byte = data[i];
    value |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      if (value > UINT32_MAX) {
        return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedFrame,
                     "frame length prefix exceeds 32 bits");
      }
      if (value > max_body_size) {
        return Error(
            absl::StatusCode::kResourceExhausted, reason::kFrameTooLarge,
            StrCat("frame of ", value, " bytes exceeds the maximum of ", max_body_size, " bytes"));
      }
      return std::optional<FrameHeader>(FrameHeader{i + 1, static_cast<size_t>(value)});
    }
  }
  return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedFrame,
               "frame length prefix is longer than 5 bytes");
}

void AppendFrame(const google::protobuf::MessageLite& message, std::string* out) {
  // The size is computed once (it also caches every submessage's size), then
  // the prefix and the body are written straight into `out`.
  const size_t body = message.ByteSizeLong();
  const size_t prefix =
      google::protobuf::io::CodedOutputStream::VarintSize32(static_cast<uint32_t>(body));
  const size_t at = out->size();
  out->resize(at + prefix + body);
  auto* p = reinterpret_cast<uint8_t*>(out->data()) + at;
  p = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(body), p);
  message.SerializeWithCachedSizesToArray(p);
}

std::string EncodeFrame(const google::protobuf::MessageLite& message) {
  std::string out;
  AppendFrame(message, &out);
  return out;
}

absl::Status ParseFrameBody(absl::Span<const uint8_t> body,
                            google::protobuf::MessageLite* message) {
  if (body.size() > static_cast<size_t>(INT32_MAX) ||
      !message->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kMalformedFrame,
        StrCat("frame body of ", body.size(), " bytes is not a valid ", message->GetTypeName()));
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::wire

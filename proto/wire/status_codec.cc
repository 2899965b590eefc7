#include "proto/wire/status_codec.h"

#include <string>

#include "common/reasons.h"
#include "common/status.h"

namespace hsmsim::wire {

v1::Status ToWireStatus(const absl::Status& status) {
  v1::Status out;
  out.set_code(static_cast<int32_t>(status.code()));
  if (!status.ok()) {
    out.set_reason(ReasonOf(status));
    out.set_message(std::string(status.message()));
  }
  return out;
}

absl::Status FromWireStatus(const v1::Status& status) {
  if (status.code() == 0) return absl::OkStatus();
  int code = status.code();
  if (code < 1 || code > 16) code = static_cast<int>(absl::StatusCode::kUnknown);
  return Error(static_cast<absl::StatusCode>(code),
               status.reason().empty() ? reason::kUnspecified : status.reason(), status.message());
}

}  // namespace hsmsim::wire

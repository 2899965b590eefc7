#include "host/unit_channel.h"

#include <future>
#include <memory>
#include <utility>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::host {
namespace {

absl::Status BadResponse(std::string_view unit_name, std::string_view expected) {
  return Error(absl::StatusCode::kInternal, reason::kBadResponse,
               StrCat("unit ", unit_name, " answered without a ", expected, " body"));
}

}  // namespace

absl::StatusOr<v1::Response> UnitChannel::Call(v1::Request request) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<v1::Response>>>();
  std::future<absl::StatusOr<v1::Response>> future = promise->get_future();
  CallAsync(std::move(request),
            [promise](absl::StatusOr<v1::Response> r) { promise->set_value(std::move(r)); });
  return future.get();
}

absl::StatusOr<v1::GetInfoResponse> UnitChannel::GetInfo() {
  v1::Request request;
  request.mutable_get_info();
  absl::StatusOr<v1::Response> response = Call(std::move(request));
  HSMSIM_RETURN_IF_ERROR(ResponseStatus(response, name()));
  if (!response->has_get_info()) return BadResponse(name(), "get_info");
  return std::move(*response->mutable_get_info());
}

absl::StatusOr<v1::CommandResponse> UnitChannel::SendCommand(const v1::SignedCommand& command) {
  v1::Request request;
  *request.mutable_signed_command() = command;
  absl::StatusOr<v1::Response> response = Call(std::move(request));
  HSMSIM_RETURN_IF_ERROR(ResponseStatus(response, name()));
  if (!response->has_command()) return BadResponse(name(), "command");
  return std::move(*response->mutable_command());
}

bool IsIdempotentRequest(const v1::Request& request) {
  switch (request.body_case()) {
    case v1::Request::kGetInfo:
    case v1::Request::kWrapKey:
    case v1::Request::kUnwrapKey:
    case v1::Request::kReencryptBatch:
    case v1::Request::kReencryptFromOld:
      return true;
    default:
      return false;
  }
}

bool IsUnreachable(const absl::Status& status) {
  const std::string reason = ReasonOf(status);
  return reason == kUnitUnreachable || reason == kUnitTimeout;
}

absl::Status ResponseStatus(const absl::StatusOr<v1::Response>& result,
                            std::string_view unit_name) {
  if (!result.ok()) return result.status();
  if (result->status().code() == 0) return absl::OkStatus();
  return WithContext(wire::FromWireStatus(result->status()), StrCat("unit ", unit_name));
}

}  // namespace hsmsim::host

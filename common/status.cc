#include "common/status.h"

#include <string>

#include "absl/strings/cord.h"
#include "common/reasons.h"

namespace hsmsim {
namespace {
constexpr std::string_view kReasonUrl = "type.hsmsim.dev/reason";
}  // namespace

absl::Status Error(absl::StatusCode code, std::string_view reason, std::string_view message) {
  absl::Status status(code, absl::string_view(message.data(), message.size()));
  status.SetPayload(absl::string_view(kReasonUrl.data(), kReasonUrl.size()),
                    absl::Cord(absl::string_view(reason.data(), reason.size())));
  return status;
}

std::string ReasonOf(const absl::Status& status) {
  if (status.ok()) return "";
  auto payload = status.GetPayload(absl::string_view(kReasonUrl.data(), kReasonUrl.size()));
  if (!payload.has_value()) return std::string(reason::kUnspecified);
  return std::string(*payload);
}

absl::Status WithContext(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(), std::string(context) + ": " + std::string(status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace hsmsim

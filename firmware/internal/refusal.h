// Shorthands for the two kinds of refusal most firmware checks give. Internal
// to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_REFUSAL_H_
#define HSMSIM_FIRMWARE_INTERNAL_REFUSAL_H_

#include <string_view>

#include "absl/status/status.h"
#include "common/status.h"

namespace hsmsim::firmware::internal {

// Precondition returns FAILED_PRECONDITION (`reason`): the request is well
// formed but the unit's state does not allow it.
inline absl::Status Precondition(std::string_view reason, std::string_view message) {
  return Error(absl::StatusCode::kFailedPrecondition, reason, message);
}

// Invalid returns INVALID_ARGUMENT (`reason`): the request itself is wrong,
// whatever the unit's state.
inline absl::Status Invalid(std::string_view reason, std::string_view message) {
  return Error(absl::StatusCode::kInvalidArgument, reason, message);
}

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_REFUSAL_H_

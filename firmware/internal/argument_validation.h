// Step 1 and step 6 of docs/protocol.md section 6.2: parsing a signed
// command's bytes, and the checks of a command's fields that do not look at
// the unit's state. Internal to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_ARGUMENT_VALIDATION_H_
#define HSMSIM_FIRMWARE_INTERNAL_ARGUMENT_VALIDATION_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware::internal {

// OpName returns the upper-case name of a command operation as messages show
// it ("ADD_ADMIN", ...; "NONE" when no operation is set).
std::string_view OpName(v1::Command::OpCase op);

// ParseCommand returns the Command inside `signed_command`. Returns
// INVALID_ARGUMENT (MALFORMED_COMMAND) when the bytes do not parse and
// INVALID_ARGUMENT (MISSING_OPERATION) when the command names no operation.
absl::StatusOr<v1::Command> ParseCommand(const v1::SignedCommand& signed_command);

// ValidInstanceName is true for 1..64 characters of A-Z a-z 0-9 . _ -.
bool ValidInstanceName(std::string_view name);

// ValidateArguments returns OK when the fields of `command` are within their
// limits, whatever the unit's state; else INVALID_ARGUMENT with BAD_ADMIN_NAME,
// BAD_KEY_ID, BAD_THRESHOLD, BAD_INSTANCE_NAME, SINGLE_KEY_PART,
// BAD_PART_COUNT, NO_KEY_PARTS, BAD_VERIFICATION_PATTERN or MISSING_OPERATION.
absl::Status ValidateArguments(const v1::Command& command);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_ARGUMENT_VALIDATION_H_

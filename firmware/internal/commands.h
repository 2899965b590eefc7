// What each signed command does to the unit's state: step 8 of
// docs/protocol.md section 6.2, the state preconditions and transitions of
// section 7 and the register state machine of section 8. One function per
// command. Internal to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_COMMANDS_H_
#define HSMSIM_FIRMWARE_INTERNAL_COMMANDS_H_

#include "absl/status/status.h"
#include "crypto/entropy.h"
#include "firmware/unit_state.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware::internal {

// ApplyCommand applies `command` to `next`, a copy of the unit's state.
// REQUIRES: the command passed authorization and ValidateArguments.
// Returns OK with `next` moved to the new state (the counter is the caller's
// to increment), or the refusal (code and reason per command, in
// docs/protocol.md section 7), after which `next` is to be discarded: it may
// be partly changed. `entropy` is used by GENERATE_IMPORTER.
absl::Status ApplyCommand(const v1::Command& command, crypto::Entropy& entropy, UnitState& next);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_COMMANDS_H_

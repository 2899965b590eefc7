// Who may run a signed command: steps 2 to 5 and 7 of docs/protocol.md
// section 6.2 (the command is for this unit and this counter, every signature
// is by an installed administrator and verifies, the mode allows the
// command, and enough distinct administrators signed; section 6.4 gives the
// signatures required). Pure functions of the command and the unit's state.
// Internal to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_AUTHORIZATION_H_
#define HSMSIM_FIRMWARE_INTERNAL_AUTHORIZATION_H_

#include <cstdint>
#include <set>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "crypto/ec_p521.h"
#include "firmware/unit_state.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware::internal {

// The distinct administrators (by key id) whose signatures verified.
using Signers = std::set<crypto::KeyId>;

// VerifySigners checks that `command` (parsed from `signed_command`) is
// addressed to this unit at its current counter and that every signature
// verifies, and returns the distinct signers. Checks, in order:
//   INVALID_ARGUMENT (TOO_MANY_SIGNATURES): more than kMaxAdministrators
//     signatures;
//   PERMISSION_DENIED (WRONG_UNIT): the unit id is not this unit's;
//   ABORTED (COUNTER_MISMATCH): the counter is not the unit's;
//   UNAUTHENTICATED (UNKNOWN_SIGNER or BAD_SIGNATURE), for the first
//     signature, in the order given, by a key that is not an installed
//     administrator or that does not verify over the command bytes.
absl::StatusOr<Signers> VerifySigners(const v1::SignedCommand& signed_command,
                                      const v1::Command& command, const UnitState& state);

// AllowedInImprint is true for the commands a unit in imprint mode accepts:
// ADD_ADMIN, REMOVE_ADMIN, SET_THRESHOLDS, ZEROIZE and ASSIGN_INSTANCE.
bool AllowedInImprint(v1::Command::OpCase op);

// CheckModeAllows returns FAILED_PRECONDITION (IMPRINT_MODE) for a command
// that imprint mode refuses when `state` is in imprint mode, else OK.
absl::Status CheckModeAllows(const v1::Command& command, const UnitState& state);

// RequiredSignatures returns how many distinct administrators must sign
// `command` in `state` (docs/protocol.md section 6.4). In imprint mode that
// is the new signature threshold for SET_THRESHOLDS and 0 otherwise; in
// normal mode the signature threshold for ADD_ADMIN, SET_THRESHOLDS and
// COMMIT_NEW_MASTER_KEY, the revocation threshold for REMOVE_ADMIN, 1 for
// the rest.
uint32_t RequiredSignatures(const v1::Command& command, const UnitState& state);

// CheckEnoughSigners returns PERMISSION_DENIED (INSUFFICIENT_SIGNATURES) when
// `signers` are fewer than RequiredSignatures(command, state), else OK.
absl::Status CheckEnoughSigners(const v1::Command& command, const UnitState& state,
                                const Signers& signers);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_AUTHORIZATION_H_

#include "firmware/internal/authorization.h"

#include <algorithm>
#include <string_view>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "firmware/internal/argument_validation.h"
#include "firmware/internal/refusal.h"

namespace hsmsim::firmware::internal {
namespace {

using absl::StatusCode;

absl::Status CheckAddressedToUnit(const v1::Command& command, std::string_view op,
                                  const UnitState& state) {
  if (!ConstantTimeEquals(AsBytes(command.unit_id()), state.unit_id)) {
    return Error(StatusCode::kPermissionDenied, reason::kWrongUnit,
                 StrCat(op, " is for unit ", ToHex(command.unit_id()), ", this is unit ",
                        ToHex(state.unit_id)));
  }
  if (command.transaction_counter() != state.transaction_counter) {
    return Error(StatusCode::kAborted, reason::kCounterMismatch,
                 StrCat(op, " carries transaction counter ", command.transaction_counter(),
                        " but the unit expects ", state.transaction_counter,
                        " (a replayed or stale command); read the counter and sign again"));
  }
  return absl::OkStatus();
}

// VerifyOne returns the administrator whose valid signature `sig` is over
// `command_bytes`, or the refusal.
absl::StatusOr<const Administrator*> VerifyOne(const v1::Signature& sig,
                                               std::string_view command_bytes, std::string_view op,
                                               const UnitState& state) {
  auto it = std::find_if(state.admins.begin(), state.admins.end(), [&](const Administrator& a) {
    return ConstantTimeEquals(a.key_id, AsBytes(sig.admin_key_id()));
  });
  if (it == state.admins.end()) {
    return Error(StatusCode::kUnauthenticated, reason::kUnknownSigner,
                 StrCat(op, " is signed by key ", ToHex(sig.admin_key_id()),
                        ", which is not an administrator of this unit"));
  }
  absl::Status verified =
      crypto::VerifySha512(*it->public_key, AsBytes(command_bytes), AsBytes(sig.signature()));
  if (!verified.ok()) {
    return Error(StatusCode::kUnauthenticated, reason::kBadSignature,
                 StrCat(op, ": the signature of administrator '", it->name,
                        "' does not verify over the command bytes"));
  }
  return &*it;
}

}  // namespace

absl::StatusOr<Signers> VerifySigners(const v1::SignedCommand& signed_command,
                                      const v1::Command& command, const UnitState& state) {
  const std::string_view op = OpName(command.op_case());
  if (signed_command.signatures_size() > static_cast<int>(kMaxAdministrators)) {
    return Invalid(
        reason::kTooManySignatures,
        StrCat(op, " carries ", signed_command.signatures_size(),
               " signatures; a unit has at most ", kMaxAdministrators, " administrators"));
  }
  HSMSIM_RETURN_IF_ERROR(CheckAddressedToUnit(command, op, state));
  // Every signature present must be by an installed administrator and valid;
  // the same administrator counts once.
  Signers signers;
  for (const v1::Signature& sig : signed_command.signatures()) {
    HSMSIM_ASSIGN_OR_RETURN(const Administrator* admin,
                            VerifyOne(sig, signed_command.command(), op, state));
    signers.insert(admin->key_id);
  }
  return signers;
}

bool AllowedInImprint(v1::Command::OpCase op) {
  return op == v1::Command::kAddAdmin || op == v1::Command::kRemoveAdmin ||
         op == v1::Command::kSetThresholds || op == v1::Command::kZeroize ||
         op == v1::Command::kAssignInstance;
}

absl::Status CheckModeAllows(const v1::Command& command, const UnitState& state) {
  if (state.mode == v1::MODE_IMPRINT && !AllowedInImprint(command.op_case())) {
    return Precondition(reason::kImprintMode,
                        StrCat(OpName(command.op_case()),
                               " is refused in imprint mode; set the signature "
                               "thresholds first"));
  }
  return absl::OkStatus();
}

uint32_t RequiredSignatures(const v1::Command& command, const UnitState& state) {
  if (state.mode == v1::MODE_IMPRINT) {
    return command.op_case() == v1::Command::kSetThresholds
               ? command.set_thresholds().signature_threshold()
               : 0;
  }
  switch (command.op_case()) {
    case v1::Command::kAddAdmin:
    case v1::Command::kSetThresholds:
    case v1::Command::kCommitNewMasterKey:
      return state.signature_threshold;
    case v1::Command::kRemoveAdmin:
      return state.revocation_threshold;
    default:
      return 1;
  }
}

absl::Status CheckEnoughSigners(const v1::Command& command, const UnitState& state,
                                const Signers& signers) {
  const uint32_t required = RequiredSignatures(command, state);
  if (signers.size() < required) {
    return Error(StatusCode::kPermissionDenied, reason::kInsufficientSignatures,
                 StrCat(OpName(command.op_case()), " needs ", required,
                        " administrator signature(s), got ", signers.size(), " distinct"));
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::firmware::internal

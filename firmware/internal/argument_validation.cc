#include "firmware/internal/argument_validation.h"

#include <algorithm>
#include <string>

#include "common/reasons.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/verification_pattern.h"
#include "firmware/internal/refusal.h"
#include "firmware/limits.h"

namespace hsmsim::firmware::internal {
namespace {

absl::Status ValidateAddAdmin(const v1::AddAdmin& add) {
  const std::string& name = add.name();
  if (name.empty() || name.size() > kMaxAdminNameLength) {
    return Invalid(reason::kBadAdminName,
                   StrCat("administrator name must be 1..30 characters, got ", name.size()));
  }
  if (std::any_of(name.begin(), name.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e;
      })) {
    return Invalid(reason::kBadAdminName,
                   "administrator name must be printable ASCII (no control characters)");
  }
  return absl::OkStatus();
}

absl::Status ValidateRemoveAdmin(const v1::RemoveAdmin& remove) {
  if (remove.key_id().size() != crypto::kKeyIdSize) {
    return Invalid(reason::kBadKeyId,
                   StrCat("administrator key id must be 32 bytes, got ", remove.key_id().size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateSetThresholds(const v1::SetThresholds& set) {
  const uint32_t sig = set.signature_threshold();
  const uint32_t rev = set.revocation_threshold();
  if (sig < 1 || sig > kMaxAdministrators || rev < 1 || rev > kMaxAdministrators) {
    return Invalid(reason::kBadThreshold,
                   StrCat("thresholds must be 1..8; got signature ", sig, ", revocation ", rev));
  }
  return absl::OkStatus();
}

absl::Status ValidateAssignInstance(const v1::AssignInstance& assign) {
  if (!ValidInstanceName(assign.instance())) {
    return Invalid(reason::kBadInstanceName,
                   "instance name must be 1..64 characters of A-Z a-z 0-9 . _ -");
  }
  return absl::OkStatus();
}

absl::Status ValidateLoadKeyParts(const v1::LoadKeyParts& load) {
  if (load.total_parts() == 1) {
    return Invalid(reason::kSingleKeyPart,
                   "a master key loaded from one part alone is refused; use 2 or 3 parts");
  }
  if (load.total_parts() < kMinKeyParts || load.total_parts() > kMaxKeyParts) {
    return Invalid(reason::kBadPartCount,
                   StrCat("total parts must be 2..20, got ", load.total_parts()));
  }
  if (load.parts_size() == 0) {
    return Invalid(reason::kNoKeyParts, "LOAD_KEY_PARTS carries no key part");
  }
  return absl::OkStatus();
}

absl::Status ValidateCommit(const v1::CommitNewMasterKey& commit) {
  if (commit.expected_verification_pattern().size() != crypto::kVerificationPatternSize) {
    return Invalid(reason::kBadVerificationPattern,
                   StrCat("expected verification pattern must be 32 bytes, got ",
                          commit.expected_verification_pattern().size()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view OpName(v1::Command::OpCase op) {
  switch (op) {
    case v1::Command::kAddAdmin:
      return "ADD_ADMIN";
    case v1::Command::kRemoveAdmin:
      return "REMOVE_ADMIN";
    case v1::Command::kSetThresholds:
      return "SET_THRESHOLDS";
    case v1::Command::kZeroize:
      return "ZEROIZE";
    case v1::Command::kAssignInstance:
      return "ASSIGN_INSTANCE";
    case v1::Command::kGenerateImporter:
      return "GENERATE_IMPORTER";
    case v1::Command::kLoadKeyParts:
      return "LOAD_KEY_PARTS";
    case v1::Command::kCommitNewMasterKey:
      return "COMMIT_NEW_MASTER_KEY";
    case v1::Command::kSetImmediate:
      return "SET_IMMEDIATE";
    case v1::Command::kClearNewMasterKey:
      return "CLEAR_NEW_MASTER_KEY";
    case v1::Command::kClearCurrentMasterKey:
      return "CLEAR_CURRENT_MASTER_KEY";
    case v1::Command::kClearOldMasterKey:
      return "CLEAR_OLD_MASTER_KEY";
    case v1::Command::OP_NOT_SET:
      return "NONE";
  }
  return "UNKNOWN";
}

absl::StatusOr<v1::Command> ParseCommand(const v1::SignedCommand& signed_command) {
  v1::Command command;
  if (!command.ParseFromString(signed_command.command())) {
    return Invalid(reason::kMalformedCommand,
                   StrCat("command bytes (", signed_command.command().size(),
                          ") do not parse as hsmsim.v1.Command"));
  }
  if (command.op_case() == v1::Command::OP_NOT_SET) {
    return Invalid(reason::kMissingOperation, "command names no operation");
  }
  return command;
}

bool ValidInstanceName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

absl::Status ValidateArguments(const v1::Command& command) {
  switch (command.op_case()) {
    case v1::Command::kAddAdmin:
      return ValidateAddAdmin(command.add_admin());
    case v1::Command::kRemoveAdmin:
      return ValidateRemoveAdmin(command.remove_admin());
    case v1::Command::kSetThresholds:
      return ValidateSetThresholds(command.set_thresholds());
    case v1::Command::kAssignInstance:
      return ValidateAssignInstance(command.assign_instance());
    case v1::Command::kLoadKeyParts:
      return ValidateLoadKeyParts(command.load_key_parts());
    case v1::Command::kCommitNewMasterKey:
      return ValidateCommit(command.commit_new_master_key());
    case v1::Command::OP_NOT_SET:
      return Invalid(reason::kMissingOperation, "command names no operation");
    default:
      return absl::OkStatus();
  }
}

}  // namespace hsmsim::firmware::internal

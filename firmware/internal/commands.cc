#include "firmware/internal/commands.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "firmware/internal/refusal.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::firmware::internal {
namespace {

using absl::StatusCode;

// --- administrators and mode ---------------------------------------------

absl::Status AddAdmin(const v1::AddAdmin& add, UnitState& next) {
  if (next.admins.size() >= kMaxAdministrators) {
    return Error(
        StatusCode::kResourceExhausted, reason::kTooManyAdmins,
        StrCat("the unit already has ", kMaxAdministrators, " administrators, the most it holds"));
  }
  HSMSIM_ASSIGN_OR_RETURN(Administrator admin, MakeAdministrator(add.name(), add.public_key()));
  for (const Administrator& a : next.admins) {
    if (a.key_id == admin.key_id) {
      return Error(StatusCode::kAlreadyExists, reason::kAdminExists,
                   StrCat("administrator key ", ToHex(admin.key_id), " is already installed as '",
                          a.name, "'"));
    }
    if (a.name == admin.name) {
      return Error(StatusCode::kAlreadyExists, reason::kAdminNameTaken,
                   StrCat("an administrator named '", a.name, "' is already installed"));
    }
  }
  next.admins.push_back(std::move(admin));
  return absl::OkStatus();
}

absl::Status RemoveAdmin(const v1::RemoveAdmin& remove, UnitState& next) {
  auto it = std::find_if(next.admins.begin(), next.admins.end(), [&](const Administrator& a) {
    return ConstantTimeEquals(a.key_id, AsBytes(remove.key_id()));
  });
  if (it == next.admins.end()) {
    return Error(StatusCode::kNotFound, reason::kUnknownAdmin,
                 StrCat("no administrator with key id ", ToHex(remove.key_id())));
  }
  const uint32_t remaining = static_cast<uint32_t>(next.admins.size() - 1);
  if (next.mode == v1::MODE_NORMAL &&
      (remaining < next.signature_threshold || remaining < next.revocation_threshold)) {
    return Precondition(
        reason::kBelowThreshold,
        StrCat("removing '", it->name, "' would leave ", remaining,
               " administrator(s), below the signature threshold ", next.signature_threshold,
               " or revocation threshold ", next.revocation_threshold));
  }
  next.admins.erase(it);
  return absl::OkStatus();
}

absl::Status SetThresholds(const v1::SetThresholds& set, UnitState& next) {
  const uint32_t sig = set.signature_threshold();
  const uint32_t rev = set.revocation_threshold();
  const uint32_t n = static_cast<uint32_t>(next.admins.size());
  if (sig > n || rev > n) {
    return Precondition(reason::kThresholdAboveAdmins,
                        StrCat("thresholds (signature ", sig, ", revocation ", rev, ") exceed the ",
                               n, " installed administrator(s)"));
  }
  next.signature_threshold = sig;
  next.revocation_threshold = rev;
  next.mode = v1::MODE_NORMAL;
  return absl::OkStatus();
}

absl::Status Zeroize(UnitState& next) {
  UnitState zeroized;
  zeroized.unit_id = next.unit_id;
  zeroized.instance = next.instance;
  // The counter keeps counting so that commands signed before the zeroize
  // can never be replayed after it.
  zeroized.transaction_counter = next.transaction_counter;
  next = std::move(zeroized);
  return absl::OkStatus();
}

absl::Status AssignInstance(const v1::AssignInstance& assign, UnitState& next) {
  next.instance = assign.instance();
  return absl::OkStatus();
}

// --- the importer key and key parts ------------------------------------------

absl::Status GenerateImporter(crypto::Entropy& entropy, UnitState& next) {
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateP521(entropy));
  return InstallImporterKey(std::move(key), next);
}

// PartsSoFar is the NEW register's load in progress: the XOR of the parts
// loaded and their VPs (none when NEW is EMPTY).
struct PartsSoFar {
  SecretBytes accumulated = SecretBytes(crypto::kMasterKeySize, 0);
  std::vector<crypto::VerificationPattern> vps;
};

// ResumeLoad returns the load that `load` continues in NEW, or the refusal
// when NEW is full or expects another number of parts.
absl::StatusOr<PartsSoFar> ResumeLoad(const v1::LoadKeyParts& load, const MasterKeyRegister& reg) {
  PartsSoFar so_far;
  if (reg.state() == v1::REGISTER_PARTIALLY_LOADED) {
    if (reg.parts_total() != load.total_parts()) {
      return Invalid(reason::kPartCountMismatch,
                     StrCat("the load in progress expects ", reg.parts_total(),
                            " parts in all, this command says ", load.total_parts()));
    }
    so_far.accumulated = MakeSecret(reg.key());
    so_far.vps = reg.part_vps();
  } else if (!reg.empty()) {
    return Precondition(reason::kNewRegisterFull,
                        StrCat("NEW register is ", wire::RegisterStateName(reg.state()),
                               "; clear it before loading another key"));
  }
  if (so_far.vps.size() + static_cast<size_t>(load.parts_size()) > load.total_parts()) {
    return Invalid(reason::kTooManyParts,
                   StrCat(so_far.vps.size(), " part(s) loaded and ", load.parts_size(),
                          " more exceed the total of ", load.total_parts()));
  }
  return so_far;
}

// AddParts decrypts each part of `load` with the importer key and XORs it
// into `so_far`, refusing a part already loaded.
absl::Status AddParts(const v1::LoadKeyParts& load, const UnitState& state, PartsSoFar& so_far) {
  for (int i = 0; i < load.parts_size(); ++i) {
    auto part = crypto::DecryptKeyPartWithImporter(*state.importer_key, state.importer_key_id,
                                                   load.parts(i));
    if (!part.ok()) return WithContext(part.status(), StrCat("key part ", i + 1));
    const crypto::VerificationPattern vp = crypto::ComputeVerificationPattern(*part);
    for (const auto& seen : so_far.vps) {
      if (ConstantTimeEquals(seen, vp)) {
        return Invalid(
            reason::kDuplicateKeyPart,
            StrCat("key part ", i + 1, " (VP ", ToHex(vp).substr(0, 16), "...) is already loaded"));
      }
    }
    so_far.vps.push_back(vp);
    for (size_t b = 0; b < crypto::kMasterKeySize; ++b) so_far.accumulated[b] ^= (*part)[b];
  }
  return absl::OkStatus();
}

absl::Status LoadKeyParts(const v1::LoadKeyParts& load, UnitState& next) {
  if (!next.importer_key) {
    return Precondition(reason::kNoImporterKey,
                        "the unit has no importer key; run GENERATE_IMPORTER and encrypt the "
                        "parts to its public key");
  }
  HSMSIM_ASSIGN_OR_RETURN(PartsSoFar so_far, ResumeLoad(load, next.new_register));
  HSMSIM_RETURN_IF_ERROR(AddParts(load, next, so_far));
  if (so_far.vps.size() < load.total_parts()) {
    next.new_register = MasterKeyRegister::Partial(std::move(so_far.accumulated),
                                                   load.total_parts(), std::move(so_far.vps));
    return absl::OkStatus();
  }
  if (std::all_of(so_far.accumulated.begin(), so_far.accumulated.end(),
                  [](uint8_t b) { return b == 0; })) {
    return Invalid(reason::kWeakMasterKey, "the parts combine to an all-zero master key");
  }
  HSMSIM_ASSIGN_OR_RETURN(
      next.new_register,
      MasterKeyRegister::Holding(so_far.accumulated, v1::REGISTER_FULL_UNCOMMITTED));
  return absl::OkStatus();
}

// --- master key registers ------------------------------------------------------

absl::Status CommitNewMasterKey(const v1::CommitNewMasterKey& commit, UnitState& next) {
  MasterKeyRegister& reg = next.new_register;
  if (reg.state() == v1::REGISTER_FULL_COMMITTED) {
    return Precondition(reason::kNewRegisterAlreadyCommitted, "NEW register is already committed");
  }
  if (reg.state() != v1::REGISTER_FULL_UNCOMMITTED) {
    return Precondition(reason::kNewRegisterNotFull,
                        StrCat("NEW register is ", wire::RegisterStateName(reg.state()),
                               "; load every key part before committing"));
  }
  const std::string& expected = commit.expected_verification_pattern();
  if (!ConstantTimeEquals(reg.vp(), AsBytes(expected))) {
    return Precondition(reason::kVerificationPatternMismatch,
                        StrCat("NEW register holds VP ", ToHex(reg.vp()), ", the command expects ",
                               ToHex(expected)));
  }
  reg.set_state(v1::REGISTER_FULL_COMMITTED);
  return absl::OkStatus();
}

absl::Status SetImmediate(UnitState& next) {
  if (next.new_register.state() != v1::REGISTER_FULL_COMMITTED) {
    return Precondition(reason::kNewRegisterNotCommitted,
                        StrCat("SET_IMMEDIATE needs NEW FULL_COMMITTED; NEW is ",
                               wire::RegisterStateName(next.new_register.state())));
  }
  next.old_register = std::move(next.current_register);
  next.current_register = std::move(next.new_register);
  next.current_register.set_state(v1::REGISTER_VALID);
  next.new_register.Clear();
  return absl::OkStatus();
}

// ClearRegister empties `reg` (called `name` in messages), refusing an EMPTY
// one with FAILED_PRECONDITION and `reason`.
absl::Status ClearRegister(std::string_view name, std::string_view reason, MasterKeyRegister& reg) {
  if (reg.empty()) return Precondition(reason, StrCat(name, " register is already empty"));
  reg.Clear();
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyCommand(const v1::Command& command, crypto::Entropy& entropy, UnitState& next) {
  switch (command.op_case()) {
    case v1::Command::kAddAdmin:
      return AddAdmin(command.add_admin(), next);
    case v1::Command::kRemoveAdmin:
      return RemoveAdmin(command.remove_admin(), next);
    case v1::Command::kSetThresholds:
      return SetThresholds(command.set_thresholds(), next);
    case v1::Command::kZeroize:
      return Zeroize(next);
    case v1::Command::kAssignInstance:
      return AssignInstance(command.assign_instance(), next);
    case v1::Command::kGenerateImporter:
      return GenerateImporter(entropy, next);
    case v1::Command::kLoadKeyParts:
      return LoadKeyParts(command.load_key_parts(), next);
    case v1::Command::kCommitNewMasterKey:
      return CommitNewMasterKey(command.commit_new_master_key(), next);
    case v1::Command::kSetImmediate:
      return SetImmediate(next);
    case v1::Command::kClearNewMasterKey:
      return ClearRegister("NEW", reason::kNewRegisterEmpty, next.new_register);
    case v1::Command::kClearCurrentMasterKey:
      return ClearRegister("CURRENT", reason::kCurrentRegisterEmpty, next.current_register);
    case v1::Command::kClearOldMasterKey:
      return ClearRegister("OLD", reason::kOldRegisterEmpty, next.old_register);
    case v1::Command::OP_NOT_SET:
      break;
  }
  return Invalid(reason::kMissingOperation, "command names no operation");
}

}  // namespace hsmsim::firmware::internal

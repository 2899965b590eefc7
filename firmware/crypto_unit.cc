#include "firmware/crypto_unit.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "common/check.h"
#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/key_part.h"
#include "crypto/symmetric.h"
#include "proto/wire/enum_names.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::firmware {
namespace {

using absl::StatusCode;

constexpr std::string_view kWrapLabel = "hsmsim/v1 data key wrap|";
constexpr uint8_t kWrappedKeyVersion = 1;

absl::Status Precondition(std::string_view reason, std::string_view message) {
  return Error(StatusCode::kFailedPrecondition, reason, message);
}
absl::Status Invalid(std::string_view reason, std::string_view message) {
  return Error(StatusCode::kInvalidArgument, reason, message);
}

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

// Commands a unit in imprint mode accepts (without signatures, except
// SET_THRESHOLDS which needs as many as the threshold it sets).
bool AllowedInImprint(v1::Command::OpCase op) {
  return op == v1::Command::kAddAdmin || op == v1::Command::kRemoveAdmin ||
         op == v1::Command::kSetThresholds || op == v1::Command::kZeroize ||
         op == v1::Command::kAssignInstance;
}

bool ValidInstanceName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// ValidateArguments checks a command's fields without looking at the state.
absl::Status ValidateArguments(const v1::Command& command) {
  switch (command.op_case()) {
    case v1::Command::kAddAdmin: {
      const std::string& name = command.add_admin().name();
      if (name.empty() || name.size() > kMaxAdminNameLength) {
        return Invalid("BAD_ADMIN_NAME", StrCat("administrator name must be 1..30 "
                                                "characters, got ",
                                                name.size()));
      }
      if (std::any_of(name.begin(), name.end(), [](char c) {
            return static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e;
          })) {
        return Invalid("BAD_ADMIN_NAME",
                       "administrator name must be printable ASCII (no control characters)");
      }
      return absl::OkStatus();
    }
    case v1::Command::kRemoveAdmin:
      if (command.remove_admin().key_id().size() != crypto::kKeyIdSize) {
        return Invalid("BAD_KEY_ID", StrCat("administrator key id must be 32 bytes, got ",
                                            command.remove_admin().key_id().size()));
      }
      return absl::OkStatus();
    case v1::Command::kSetThresholds: {
      uint32_t sig = command.set_thresholds().signature_threshold();
      uint32_t rev = command.set_thresholds().revocation_threshold();
      if (sig < 1 || sig > kMaxAdministrators || rev < 1 || rev > kMaxAdministrators) {
        return Invalid("BAD_THRESHOLD", StrCat("thresholds must be 1..8; got signature ", sig,
                                               ", revocation ", rev));
      }
      return absl::OkStatus();
    }
    case v1::Command::kAssignInstance:
      if (!ValidInstanceName(command.assign_instance().instance())) {
        return Invalid("BAD_INSTANCE_NAME",
                       "instance name must be 1..64 characters of A-Z a-z 0-9 . _ -");
      }
      return absl::OkStatus();
    case v1::Command::kLoadKeyParts: {
      const auto& load = command.load_key_parts();
      if (load.total_parts() == 1) {
        return Invalid("SINGLE_KEY_PART",
                       "a master key loaded from one part alone is refused; use 2 or 3 parts");
      }
      if (load.total_parts() < kMinKeyParts || load.total_parts() > kMaxKeyParts) {
        return Invalid("BAD_PART_COUNT",
                       StrCat("total parts must be 2..20, got ", load.total_parts()));
      }
      if (load.parts_size() == 0) {
        return Invalid("NO_KEY_PARTS", "LOAD_KEY_PARTS carries no key part");
      }
      return absl::OkStatus();
    }
    case v1::Command::kCommitNewMasterKey:
      if (command.commit_new_master_key().expected_verification_pattern().size() !=
          crypto::kVerificationPatternSize) {
        return Invalid(
            "BAD_VERIFICATION_PATTERN",
            StrCat("expected verification pattern must be 32 bytes, got ",
                   command.commit_new_master_key().expected_verification_pattern().size()));
      }
      return absl::OkStatus();
    case v1::Command::OP_NOT_SET:
      return Invalid("MISSING_OPERATION", "command names no operation");
    default:
      return absl::OkStatus();
  }
}

std::string SerializeDeterministic(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

void WipeRegisterSnapshot(v1::RegisterSnapshot* r) { WipeString(r->mutable_key()); }

absl::Status BadState(std::string_view what) {
  return Error(StatusCode::kDataLoss, "BAD_STATE", StrCat("unit state is inconsistent: ", what));
}

absl::StatusOr<MasterKeyRegister> RestoreRegister(const v1::RegisterSnapshot& s,
                                                  std::string_view name, bool is_new) {
  switch (s.state()) {
    case v1::REGISTER_STATE_UNSPECIFIED:
    case v1::REGISTER_EMPTY:
      if (!s.key().empty()) return BadState(StrCat(name, " is EMPTY but holds key bytes"));
      return MasterKeyRegister();
    case v1::REGISTER_PARTIALLY_LOADED: {
      if (!is_new) return BadState(StrCat(name, " cannot be PARTIALLY_LOADED"));
      if (s.key().size() != crypto::kMasterKeySize || s.parts_total() < kMinKeyParts ||
          s.parts_total() > kMaxKeyParts || s.part_verification_patterns_size() < 1 ||
          static_cast<uint32_t>(s.part_verification_patterns_size()) >= s.parts_total()) {
        return BadState(StrCat(name, " partial load has inconsistent part counts"));
      }
      std::vector<crypto::VerificationPattern> vps;
      for (const std::string& vp : s.part_verification_patterns()) {
        if (vp.size() != crypto::kVerificationPatternSize) {
          return BadState(StrCat(name, " part verification pattern has the wrong size"));
        }
        crypto::VerificationPattern p;
        std::copy(vp.begin(), vp.end(), p.begin());
        vps.push_back(p);
      }
      return MasterKeyRegister::Partial(MakeSecret(s.key()), s.parts_total(), std::move(vps));
    }
    case v1::REGISTER_FULL_UNCOMMITTED:
    case v1::REGISTER_FULL_COMMITTED:
      if (!is_new) return BadState(StrCat(name, " cannot be ", wire::RegisterStateName(s.state())));
      break;
    case v1::REGISTER_VALID:
      if (is_new) return BadState("NEW cannot be VALID");
      break;
    default:
      return BadState(StrCat(name, " has unknown state ", static_cast<int>(s.state())));
  }
  if (s.key().size() != crypto::kMasterKeySize) {
    return BadState(StrCat(name, " key has ", s.key().size(), " bytes"));
  }
  return MasterKeyRegister::Holding(AsBytes(s.key()), s.state());
}

v1::RegisterSnapshot SnapshotRegister(const MasterKeyRegister& r) {
  v1::RegisterSnapshot s;
  s.set_state(r.state());
  if (!r.empty()) s.set_key(std::string(AsStringView(r.key())));
  if (r.state() == v1::REGISTER_PARTIALLY_LOADED) {
    s.set_parts_total(r.parts_total());
    for (const auto& vp : r.part_vps()) s.add_part_verification_patterns(crypto::AsString(vp));
  }
  return s;
}

}  // namespace

// --- construction and persistence ------------------------------------------

absl::StatusOr<std::unique_ptr<CryptoUnit>> CryptoUnit::Create(crypto::Entropy& entropy) {
  std::unique_ptr<CryptoUnit> unit(new CryptoUnit(entropy));
  HSMSIM_RETURN_IF_ERROR(entropy.Generate(absl::MakeSpan(unit->state_.unit_id)));
  return unit;
}

absl::StatusOr<CryptoUnit::Administrator> CryptoUnit::MakeAdministrator(
    std::string name, std::string public_key_der) {
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key,
                          crypto::ParseP521PublicKeyDer(AsBytes(public_key_der)));
  Administrator admin;
  admin.name = std::move(name);
  admin.key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(public_key_der));
  admin.public_key_der = std::move(public_key_der);
  admin.public_key = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
  return admin;
}

SecretBytes CryptoUnit::Snapshot() const {
  v1::UnitSnapshot s;
  s.set_format_version(kStateFormatVersion);
  s.set_unit_id(crypto::AsString(state_.unit_id));
  s.set_firmware_version(state_.firmware_version);
  s.set_instance(state_.instance);
  s.set_mode(state_.mode);
  for (const Administrator& a : state_.admins) {
    auto* admin = s.add_administrators();
    admin->set_name(a.name);
    admin->set_public_key(a.public_key_der);
  }
  s.set_signature_threshold(state_.signature_threshold);
  s.set_revocation_threshold(state_.revocation_threshold);
  s.set_transaction_counter(state_.transaction_counter);
  *s.mutable_new_register() = SnapshotRegister(state_.new_register);
  *s.mutable_current_register() = SnapshotRegister(state_.current_register);
  *s.mutable_old_register() = SnapshotRegister(state_.old_register);
  if (state_.importer_key) {
    auto scalar = crypto::P521PrivateScalar(*state_.importer_key);
    // The importer key was built by this code; failing to export it is a bug.
    HSMSIM_CHECK(scalar.ok());
    s.set_importer_private_key(std::string(AsStringView(*scalar)));
  }
  std::string bytes = SerializeDeterministic(s);
  SecretBytes out = MakeSecret(bytes);
  WipeString(&bytes);
  WipeRegisterSnapshot(s.mutable_new_register());
  WipeRegisterSnapshot(s.mutable_current_register());
  WipeRegisterSnapshot(s.mutable_old_register());
  WipeString(s.mutable_importer_private_key());
  return out;
}

absl::StatusOr<std::unique_ptr<CryptoUnit>> CryptoUnit::Restore(absl::Span<const uint8_t> snapshot,
                                                                crypto::Entropy& entropy) {
  v1::UnitSnapshot s;
  if (!s.ParseFromArray(snapshot.data(), static_cast<int>(snapshot.size()))) {
    return BadState(StrCat("snapshot of ", snapshot.size(), " bytes does not parse"));
  }
  struct Wiper {
    v1::UnitSnapshot* s;
    ~Wiper() {
      WipeRegisterSnapshot(s->mutable_new_register());
      WipeRegisterSnapshot(s->mutable_current_register());
      WipeRegisterSnapshot(s->mutable_old_register());
      WipeString(s->mutable_importer_private_key());
    }
  } wiper{&s};
  if (s.format_version() > kStateFormatVersion) {
    return Error(StatusCode::kFailedPrecondition, "UNSUPPORTED_STATE_VERSION",
                 StrCat("unit state format version ", s.format_version(),
                        " is newer than this firmware supports (", kStateFormatVersion,
                        "); run a newer hsmsim-unit"));
  }
  if (s.format_version() == 0) return BadState("format version is missing");
  std::unique_ptr<CryptoUnit> unit(new CryptoUnit(entropy));
  State& st = unit->state_;
  if (s.unit_id().size() != kUnitIdSize) {
    return BadState(StrCat("unit id has ", s.unit_id().size(), " bytes"));
  }
  std::copy(s.unit_id().begin(), s.unit_id().end(), st.unit_id.begin());
  // The unit reports the firmware that runs now, not the one that wrote the
  // state; the snapshot records the writer for diagnosis only.
  st.instance = s.instance();
  if (s.mode() != v1::MODE_IMPRINT && s.mode() != v1::MODE_NORMAL) {
    return BadState(StrCat("unknown mode ", static_cast<int>(s.mode())));
  }
  st.mode = s.mode();
  if (static_cast<size_t>(s.administrators_size()) > kMaxAdministrators) {
    return BadState(StrCat(s.administrators_size(), " administrators"));
  }
  for (const auto& a : s.administrators()) {
    auto admin = MakeAdministrator(a.name(), a.public_key());
    if (!admin.ok()) {
      return BadState(StrCat("administrator '", a.name(), "': ", admin.status().message()));
    }
    st.admins.push_back(std::move(*admin));
  }
  st.signature_threshold = s.signature_threshold();
  st.revocation_threshold = s.revocation_threshold();
  if (st.mode == v1::MODE_NORMAL) {
    uint32_t n = static_cast<uint32_t>(st.admins.size());
    if (st.signature_threshold < 1 || st.signature_threshold > n || st.revocation_threshold < 1 ||
        st.revocation_threshold > n) {
      return BadState("thresholds do not fit the administrators");
    }
  } else if (st.signature_threshold != 0 || st.revocation_threshold != 0) {
    return BadState("imprint mode with thresholds set");
  }
  st.transaction_counter = s.transaction_counter();
  HSMSIM_ASSIGN_OR_RETURN(st.new_register, RestoreRegister(s.new_register(), "NEW", true));
  HSMSIM_ASSIGN_OR_RETURN(st.current_register,
                          RestoreRegister(s.current_register(), "CURRENT", false));
  HSMSIM_ASSIGN_OR_RETURN(st.old_register, RestoreRegister(s.old_register(), "OLD", false));
  if (!s.importer_private_key().empty()) {
    auto key = crypto::P521FromPrivateScalar(AsBytes(s.importer_private_key()));
    if (!key.ok()) return BadState("importer key is not a valid P-521 key");
    HSMSIM_ASSIGN_OR_RETURN(st.importer_public_key_der, crypto::PublicKeyDer(**key));
    st.importer_key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(st.importer_public_key_der));
    st.importer_key = std::shared_ptr<EVP_PKEY>(key->release(), EVP_PKEY_free);
  }
  return unit;
}

v1::GetInfoResponse CryptoUnit::Info() const {
  v1::GetInfoResponse info;
  info.set_unit_id(crypto::AsString(state_.unit_id));
  info.set_firmware_version(state_.firmware_version);
  info.set_instance(state_.instance);
  info.set_mode(state_.mode);
  for (const Administrator& a : state_.admins) {
    auto* admin = info.add_administrators();
    admin->set_name(a.name);
    admin->set_key_id(crypto::AsString(a.key_id));
    admin->set_public_key(a.public_key_der);
  }
  info.set_signature_threshold(state_.signature_threshold);
  info.set_revocation_threshold(state_.revocation_threshold);
  *info.mutable_new_register() = state_.new_register.Info();
  *info.mutable_current_register() = state_.current_register.Info();
  *info.mutable_old_register() = state_.old_register.Info();
  info.set_transaction_counter(state_.transaction_counter);
  info.set_importer_public_key(state_.importer_public_key_der);
  return info;
}

// --- dispatch ----------------------------------------------------------------

bool CryptoUnit::IsReadOnly(const v1::Request& request) {
  switch (request.body_case()) {
    case v1::Request::kGetInfo:
    case v1::Request::kGenerateKey:
    case v1::Request::kGenerateKeys:
    case v1::Request::kWrapKey:
    case v1::Request::kUnwrapKey:
    case v1::Request::kReencryptBatch:
    case v1::Request::kReencryptFromOld:
    case v1::Request::kCheckBlobs:
      return true;
    default:
      return false;
  }
}

HandleResult CryptoUnit::Handle(const v1::Request& request) {
  if (IsReadOnly(request)) return HandleResult{HandleReadOnly(request), false};
  HandleResult result;
  result.response.set_id(request.id());
  if (request.body_case() != v1::Request::kSignedCommand) {
    *result.response.mutable_status() = wire::ToWireStatus(
        Invalid("UNKNOWN_REQUEST",
                StrCat("request ", request.id(), " carries no operation this firmware knows")));
    return result;
  }
  auto command = HandleSignedCommand(request.signed_command());
  if (!command.ok()) {
    *result.response.mutable_status() = wire::ToWireStatus(command.status());
    return result;
  }
  *result.response.mutable_status() = wire::ToWireStatus(absl::OkStatus());
  *result.response.mutable_command() = std::move(*command);
  result.state_changed = true;
  return result;
}

v1::Response CryptoUnit::HandleReadOnly(const v1::Request& request) const {
  v1::Response response;
  response.set_id(request.id());
  absl::Status status = absl::OkStatus();
  switch (request.body_case()) {
    case v1::Request::kGetInfo:
      *response.mutable_get_info() = Info();
      break;
    case v1::Request::kGenerateKey: {
      auto r = GenerateKey(request.generate_key());
      if (r.ok()) *response.mutable_generate_key() = std::move(*r);
      status = r.status();
      break;
    }
    case v1::Request::kGenerateKeys: {
      auto r = GenerateKeys(request.generate_keys());
      if (r.ok()) *response.mutable_generate_keys() = std::move(*r);
      status = r.status();
      break;
    }
    case v1::Request::kWrapKey: {
      auto r = WrapKey(request.wrap_key());
      if (r.ok()) *response.mutable_wrap_key() = std::move(*r);
      status = r.status();
      break;
    }
    case v1::Request::kUnwrapKey: {
      auto r = UnwrapKey(request.unwrap_key());
      if (r.ok()) *response.mutable_unwrap_key() = std::move(*r);
      status = r.status();
      break;
    }
    case v1::Request::kReencryptBatch: {
      auto r = Reencrypt(request.reencrypt_batch().blobs(), state_.current_register,
                         state_.new_register);
      if (r.ok()) *response.mutable_reencrypt_batch() = std::move(*r);
      status = r.status();
      break;
    }
    case v1::Request::kReencryptFromOld: {
      auto r = Reencrypt(request.reencrypt_from_old().blobs(), state_.old_register,
                         state_.current_register);
      if (r.ok()) *response.mutable_reencrypt_from_old() = std::move(*r);
      status = r.status();
      break;
    }
    case v1::Request::kCheckBlobs: {
      auto r = CheckBlobs(request.check_blobs());
      if (r.ok()) *response.mutable_check_blobs() = std::move(*r);
      status = r.status();
      break;
    }
    default:
      status = Invalid("NOT_READ_ONLY", "request is not a read-only operation");
      break;
  }
  *response.mutable_status() = wire::ToWireStatus(status);
  return response;
}

// --- signed commands -----------------------------------------------------------

absl::StatusOr<v1::CommandResponse> CryptoUnit::HandleSignedCommand(
    const v1::SignedCommand& signed_command) {
  v1::Command command;
  if (!command.ParseFromString(signed_command.command())) {
    return Invalid("MALFORMED_COMMAND", StrCat("command bytes (", signed_command.command().size(),
                                               ") do not parse as hsmsim.v1.Command"));
  }
  const std::string_view op = OpName(command.op_case());
  if (command.op_case() == v1::Command::OP_NOT_SET) {
    return Invalid("MISSING_OPERATION", "command names no operation");
  }
  if (signed_command.signatures_size() > static_cast<int>(kMaxAdministrators)) {
    return Invalid("TOO_MANY_SIGNATURES", StrCat(op, " carries ", signed_command.signatures_size(),
                                                 " signatures; a unit has at most ",
                                                 kMaxAdministrators, " administrators"));
  }
  if (!ConstantTimeEquals(AsBytes(command.unit_id()), state_.unit_id)) {
    return Error(StatusCode::kPermissionDenied, "WRONG_UNIT",
                 StrCat(op, " is for unit ", ToHex(command.unit_id()), ", this is unit ",
                        ToHex(state_.unit_id)));
  }
  if (command.transaction_counter() != state_.transaction_counter) {
    return Error(StatusCode::kAborted, "COUNTER_MISMATCH",
                 StrCat(op, " carries transaction counter ", command.transaction_counter(),
                        " but the unit expects ", state_.transaction_counter,
                        " (a replayed or stale command); read the counter and sign again"));
  }
  // Every signature present must be by an installed administrator and valid;
  // the same administrator counts once.
  std::set<crypto::KeyId> signers;
  for (const v1::Signature& sig : signed_command.signatures()) {
    auto it = std::find_if(state_.admins.begin(), state_.admins.end(), [&](const Administrator& a) {
      return ConstantTimeEquals(a.key_id, AsBytes(sig.admin_key_id()));
    });
    if (it == state_.admins.end()) {
      return Error(StatusCode::kUnauthenticated, "UNKNOWN_SIGNER",
                   StrCat(op, " is signed by key ", ToHex(sig.admin_key_id()),
                          ", which is not an administrator of this unit"));
    }
    absl::Status verified = crypto::VerifySha512(*it->public_key, AsBytes(signed_command.command()),
                                                 AsBytes(sig.signature()));
    if (!verified.ok()) {
      return Error(StatusCode::kUnauthenticated, "BAD_SIGNATURE",
                   StrCat(op, ": the signature of administrator '", it->name,
                          "' does not verify over the command bytes"));
    }
    signers.insert(it->key_id);
  }
  if (state_.mode == v1::MODE_IMPRINT && !AllowedInImprint(command.op_case())) {
    return Precondition("IMPRINT_MODE", StrCat(op,
                                               " is refused in imprint mode; set the signature "
                                               "thresholds first"));
  }
  HSMSIM_RETURN_IF_ERROR(ValidateArguments(command));
  uint32_t required = 1;
  if (state_.mode == v1::MODE_IMPRINT) {
    required = command.op_case() == v1::Command::kSetThresholds
                   ? command.set_thresholds().signature_threshold()
                   : 0;
  } else if (command.op_case() == v1::Command::kAddAdmin ||
             command.op_case() == v1::Command::kSetThresholds ||
             command.op_case() == v1::Command::kCommitNewMasterKey) {
    required = state_.signature_threshold;
  } else if (command.op_case() == v1::Command::kRemoveAdmin) {
    required = state_.revocation_threshold;
  }
  if (signers.size() < required) {
    return Error(StatusCode::kPermissionDenied, "INSUFFICIENT_SIGNATURES",
                 StrCat(op, " needs ", required, " administrator signature(s), got ",
                        signers.size(), " distinct"));
  }
  State next = state_;
  HSMSIM_RETURN_IF_ERROR(Apply(command, next));
  ++next.transaction_counter;
  state_ = std::move(next);
  v1::CommandResponse response;
  *response.mutable_info() = Info();
  return response;
}

absl::Status CryptoUnit::Apply(const v1::Command& command, State& next) {
  switch (command.op_case()) {
    case v1::Command::kAddAdmin: {
      const auto& add = command.add_admin();
      if (next.admins.size() >= kMaxAdministrators) {
        return Error(StatusCode::kResourceExhausted, "TOO_MANY_ADMINS",
                     StrCat("the unit already has ", kMaxAdministrators,
                            " administrators, the most it holds"));
      }
      HSMSIM_ASSIGN_OR_RETURN(Administrator admin, MakeAdministrator(add.name(), add.public_key()));
      for (const Administrator& a : next.admins) {
        if (a.key_id == admin.key_id) {
          return Error(StatusCode::kAlreadyExists, "ADMIN_EXISTS",
                       StrCat("administrator key ", ToHex(admin.key_id),
                              " is already installed as '", a.name, "'"));
        }
        if (a.name == admin.name) {
          return Error(StatusCode::kAlreadyExists, "ADMIN_NAME_TAKEN",
                       StrCat("an administrator named '", a.name, "' is already installed"));
        }
      }
      next.admins.push_back(std::move(admin));
      return absl::OkStatus();
    }
    case v1::Command::kRemoveAdmin: {
      auto it = std::find_if(next.admins.begin(), next.admins.end(), [&](const Administrator& a) {
        return ConstantTimeEquals(a.key_id, AsBytes(command.remove_admin().key_id()));
      });
      if (it == next.admins.end()) {
        return Error(
            StatusCode::kNotFound, "UNKNOWN_ADMIN",
            StrCat("no administrator with key id ", ToHex(command.remove_admin().key_id())));
      }
      uint32_t remaining = static_cast<uint32_t>(next.admins.size() - 1);
      if (next.mode == v1::MODE_NORMAL &&
          (remaining < next.signature_threshold || remaining < next.revocation_threshold)) {
        return Precondition(
            "BELOW_THRESHOLD",
            StrCat("removing '", it->name, "' would leave ", remaining,
                   " administrator(s), below the signature threshold ", next.signature_threshold,
                   " or revocation threshold ", next.revocation_threshold));
      }
      next.admins.erase(it);
      return absl::OkStatus();
    }
    case v1::Command::kSetThresholds: {
      uint32_t sig = command.set_thresholds().signature_threshold();
      uint32_t rev = command.set_thresholds().revocation_threshold();
      uint32_t n = static_cast<uint32_t>(next.admins.size());
      if (sig > n || rev > n) {
        return Precondition("THRESHOLD_ABOVE_ADMINS",
                            StrCat("thresholds (signature ", sig, ", revocation ", rev,
                                   ") exceed the ", n, " installed administrator(s)"));
      }
      next.signature_threshold = sig;
      next.revocation_threshold = rev;
      next.mode = v1::MODE_NORMAL;
      return absl::OkStatus();
    }
    case v1::Command::kZeroize: {
      State zeroized;
      zeroized.unit_id = next.unit_id;
      zeroized.instance = next.instance;
      // The counter keeps counting so that commands signed before the
      // zeroize can never be replayed after it.
      zeroized.transaction_counter = next.transaction_counter;
      next = std::move(zeroized);
      return absl::OkStatus();
    }
    case v1::Command::kAssignInstance:
      next.instance = command.assign_instance().instance();
      return absl::OkStatus();
    case v1::Command::kGenerateImporter: {
      HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateP521(entropy_));
      HSMSIM_ASSIGN_OR_RETURN(next.importer_public_key_der, crypto::PublicKeyDer(*key));
      next.importer_key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(next.importer_public_key_der));
      next.importer_key = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
      return absl::OkStatus();
    }
    case v1::Command::kLoadKeyParts: {
      const auto& load = command.load_key_parts();
      if (!next.importer_key) {
        return Precondition("NO_IMPORTER_KEY",
                            "the unit has no importer key; run GENERATE_IMPORTER and encrypt the "
                            "parts to its public key");
      }
      MasterKeyRegister& reg = next.new_register;
      SecretBytes accumulated(crypto::kMasterKeySize, 0);
      std::vector<crypto::VerificationPattern> vps;
      if (reg.state() == v1::REGISTER_PARTIALLY_LOADED) {
        if (reg.parts_total() != load.total_parts()) {
          return Invalid("PART_COUNT_MISMATCH",
                         StrCat("the load in progress expects ", reg.parts_total(),
                                " parts in all, this command says ", load.total_parts()));
        }
        accumulated = MakeSecret(reg.key());
        vps = reg.part_vps();
      } else if (!reg.empty()) {
        return Precondition("NEW_REGISTER_FULL",
                            StrCat("NEW register is ", wire::RegisterStateName(reg.state()),
                                   "; clear it before loading another key"));
      }
      if (vps.size() + static_cast<size_t>(load.parts_size()) > load.total_parts()) {
        return Invalid("TOO_MANY_PARTS",
                       StrCat(vps.size(), " part(s) loaded and ", load.parts_size(),
                              " more exceed the total of ", load.total_parts()));
      }
      for (int i = 0; i < load.parts_size(); ++i) {
        auto part = crypto::DecryptKeyPartWithImporter(*next.importer_key, next.importer_key_id,
                                                       load.parts(i));
        if (!part.ok()) return WithContext(part.status(), StrCat("key part ", i + 1));
        crypto::VerificationPattern vp = crypto::ComputeVerificationPattern(*part);
        for (const auto& seen : vps) {
          if (ConstantTimeEquals(seen, vp)) {
            return Invalid("DUPLICATE_KEY_PART",
                           StrCat("key part ", i + 1, " (VP ", ToHex(vp).substr(0, 16),
                                  "...) is already loaded"));
          }
        }
        vps.push_back(vp);
        for (size_t b = 0; b < crypto::kMasterKeySize; ++b) accumulated[b] ^= (*part)[b];
      }
      if (vps.size() < load.total_parts()) {
        reg =
            MasterKeyRegister::Partial(std::move(accumulated), load.total_parts(), std::move(vps));
        return absl::OkStatus();
      }
      if (std::all_of(accumulated.begin(), accumulated.end(), [](uint8_t b) { return b == 0; })) {
        return Invalid("WEAK_MASTER_KEY", "the parts combine to an all-zero master key");
      }
      HSMSIM_ASSIGN_OR_RETURN(
          reg, MasterKeyRegister::Holding(accumulated, v1::REGISTER_FULL_UNCOMMITTED));
      return absl::OkStatus();
    }
    case v1::Command::kCommitNewMasterKey: {
      MasterKeyRegister& reg = next.new_register;
      if (reg.state() == v1::REGISTER_FULL_COMMITTED) {
        return Precondition("NEW_REGISTER_ALREADY_COMMITTED", "NEW register is already committed");
      }
      if (reg.state() != v1::REGISTER_FULL_UNCOMMITTED) {
        return Precondition("NEW_REGISTER_NOT_FULL",
                            StrCat("NEW register is ", wire::RegisterStateName(reg.state()),
                                   "; load every key part before committing"));
      }
      const std::string& expected = command.commit_new_master_key().expected_verification_pattern();
      if (!ConstantTimeEquals(reg.vp(), AsBytes(expected))) {
        return Precondition("VERIFICATION_PATTERN_MISMATCH",
                            StrCat("NEW register holds VP ", ToHex(reg.vp()),
                                   ", the command expects ", ToHex(expected)));
      }
      reg.set_state(v1::REGISTER_FULL_COMMITTED);
      return absl::OkStatus();
    }
    case v1::Command::kSetImmediate: {
      if (next.new_register.state() != v1::REGISTER_FULL_COMMITTED) {
        return Precondition("NEW_REGISTER_NOT_COMMITTED",
                            StrCat("SET_IMMEDIATE needs NEW FULL_COMMITTED; NEW is ",
                                   wire::RegisterStateName(next.new_register.state())));
      }
      next.old_register = std::move(next.current_register);
      next.current_register = std::move(next.new_register);
      next.current_register.set_state(v1::REGISTER_VALID);
      next.new_register.Clear();
      return absl::OkStatus();
    }
    case v1::Command::kClearNewMasterKey:
      if (next.new_register.empty())
        return Precondition("NEW_REGISTER_EMPTY", "NEW register is already empty");
      next.new_register.Clear();
      return absl::OkStatus();
    case v1::Command::kClearCurrentMasterKey:
      if (next.current_register.empty()) {
        return Precondition("CURRENT_REGISTER_EMPTY", "CURRENT register is already empty");
      }
      next.current_register.Clear();
      return absl::OkStatus();
    case v1::Command::kClearOldMasterKey:
      if (next.old_register.empty())
        return Precondition("OLD_REGISTER_EMPTY", "OLD register is already empty");
      next.old_register.Clear();
      return absl::OkStatus();
    case v1::Command::OP_NOT_SET:
      break;
  }
  return Invalid("MISSING_OPERATION", "command names no operation");
}

// --- workload ---------------------------------------------------------------

absl::Status CryptoUnit::CheckGenerate(v1::KeyAlgorithm algorithm) const {
  if (algorithm != v1::KEY_ALGORITHM_UNSPECIFIED && algorithm != v1::KEY_ALGORITHM_AES_256) {
    return Invalid("UNSUPPORTED_ALGORITHM", StrCat("key algorithm ", static_cast<int>(algorithm),
                                                   " is not supported; use AES_256"));
  }
  if (!state_.current_register.HoldsKey()) {
    return Precondition("CURRENT_REGISTER_EMPTY", "GENERATE_KEY needs a VALID CURRENT master key");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::GenerateKeysResponse> CryptoUnit::GenerateKeys(
    const v1::GenerateKeysRequest& request) const {
  HSMSIM_RETURN_IF_ERROR(CheckGenerate(request.algorithm()));
  if (static_cast<size_t>(request.key_ids_size()) > kMaxBatchBlobs) {
    return Invalid("BATCH_TOO_LARGE", StrCat("a batch holds at most ", kMaxBatchBlobs,
                                             " keys, got ", request.key_ids_size()));
  }
  for (int i = 0; i < request.key_ids_size(); ++i) {
    const size_t size = request.key_ids(i).size();
    if (size == 0 || size > kMaxKeyIdSize) {
      return Invalid("BAD_KEY_ID", StrCat("key id ", i + 1, " of the batch has ", size,
                                          " bytes; key ids are 1..", kMaxKeyIdSize, " bytes"));
    }
  }
  v1::GenerateKeysResponse response;
  response.mutable_blobs()->Reserve(request.key_ids_size());
  SecretBytes key(kRootKeySize);
  const BlobKek& kek = *state_.current_register.kek();
  for (const std::string& key_id : request.key_ids()) {
    HSMSIM_RETURN_IF_ERROR(entropy_.Generate(absl::MakeSpan(key)));
    HSMSIM_ASSIGN_OR_RETURN(std::string blob,
                            kek.Seal(key_id, request.attributes(), key, entropy_));
    response.add_blobs(std::move(blob));
  }
  return response;
}

absl::StatusOr<v1::GenerateKeyResponse> CryptoUnit::GenerateKey(
    const v1::GenerateKeyRequest& request) const {
  HSMSIM_RETURN_IF_ERROR(CheckGenerate(request.algorithm()));
  SecretBytes key(kRootKeySize);
  HSMSIM_RETURN_IF_ERROR(entropy_.Generate(absl::MakeSpan(key)));
  HSMSIM_ASSIGN_OR_RETURN(
      std::string blob,
      state_.current_register.kek()->Seal(request.key_id(), request.attributes(), key, entropy_));
  v1::GenerateKeyResponse response;
  response.set_blob(std::move(blob));
  return response;
}

absl::StatusOr<SecretBytes> CryptoUnit::ResolveRootKey(std::string_view blob, std::string* key_id,
                                                       bool* under_old) const {
  HSMSIM_ASSIGN_OR_RETURN(ParsedBlob parsed, ParseBlob(AsBytes(blob)));
  *key_id = std::string(parsed.key_id);
  const auto matches = [&](const MasterKeyRegister& r) {
    return r.HoldsKey() && r.kek()->wkid() == parsed.wkid;
  };
  if (matches(state_.current_register)) {
    *under_old = false;
    return state_.current_register.kek()->Open(parsed);
  }
  if (state_.old_register.HoldsKey() && matches(state_.old_register)) {
    *under_old = true;
    return state_.old_register.kek()->Open(parsed);
  }
  if (matches(state_.new_register)) {
    return Precondition(
        "BLOB_UNDER_NEW",
        StrCat("blob for key '", Printable(parsed.key_id), "' is under WKID ", ToHex(parsed.wkid),
               ", which this unit holds only in NEW (not yet promoted)"));
  }
  return Precondition("UNKNOWN_WKID", StrCat("blob for key '", Printable(parsed.key_id),
                                             "' is under WKID ", ToHex(parsed.wkid),
                                             ", which this unit holds in neither CURRENT nor OLD"));
}

absl::StatusOr<v1::WrapKeyResponse> CryptoUnit::WrapKey(const v1::WrapKeyRequest& request) const {
  if (request.plaintext().empty() || request.plaintext().size() > kMaxDataKeySize) {
    return Invalid("BAD_DATA_KEY_SIZE",
                   StrCat("data key must be 1..1024 bytes, got ", request.plaintext().size()));
  }
  std::string key_id;
  bool under_old = false;
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes root, ResolveRootKey(request.blob(), &key_id, &under_old));
  std::string aad = StrCat(kWrapLabel, key_id);
  std::string out(1 + crypto::kGcmIvSize + request.plaintext().size() + crypto::kGcmTagSize, '\0');
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  o[0] = kWrappedKeyVersion;
  absl::Span<uint8_t> iv(o + 1, crypto::kGcmIvSize);
  HSMSIM_RETURN_IF_ERROR(entropy_.Generate(iv));
  HSMSIM_RETURN_IF_ERROR(crypto::AesGcmSeal(
      root, iv, AsBytes(aad), AsBytes(request.plaintext()),
      absl::Span<uint8_t>(o + 1 + crypto::kGcmIvSize, request.plaintext().size()),
      absl::Span<uint8_t>(o + 1 + crypto::kGcmIvSize + request.plaintext().size(),
                          crypto::kGcmTagSize)));
  v1::WrapKeyResponse response;
  response.set_wrapped(std::move(out));
  response.set_blob_under_old(under_old);
  return response;
}

absl::StatusOr<v1::UnwrapKeyResponse> CryptoUnit::UnwrapKey(
    const v1::UnwrapKeyRequest& request) const {
  const std::string& w = request.wrapped();
  constexpr size_t kOverhead = 1 + crypto::kGcmIvSize + crypto::kGcmTagSize;
  if (w.size() <= kOverhead || w.size() > kOverhead + kMaxDataKeySize ||
      static_cast<uint8_t>(w[0]) != kWrappedKeyVersion) {
    return Invalid("MALFORMED_WRAPPED_KEY", StrCat("wrapped data key of ", w.size(),
                                                   " bytes is not a version-1 hsmsim wrapped key"));
  }
  std::string key_id;
  bool under_old = false;
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes root, ResolveRootKey(request.blob(), &key_id, &under_old));
  std::string aad = StrCat(kWrapLabel, key_id);
  const auto* in = reinterpret_cast<const uint8_t*>(w.data());
  size_t ct_size = w.size() - kOverhead;
  SecretBytes plaintext(ct_size);
  absl::Status opened = crypto::AesGcmOpen(
      root, absl::Span<const uint8_t>(in + 1, crypto::kGcmIvSize), AsBytes(aad),
      absl::Span<const uint8_t>(in + 1 + crypto::kGcmIvSize, ct_size),
      absl::Span<const uint8_t>(in + 1 + crypto::kGcmIvSize + ct_size, crypto::kGcmTagSize),
      absl::MakeSpan(plaintext));
  if (!opened.ok()) {
    return Invalid(
        "WRAPPED_KEY_AUTHENTICATION_FAILED",
        StrCat("wrapped data key does not authenticate under root key '", Printable(key_id),
               "': it was altered, or wrapped under another root key"));
  }
  v1::UnwrapKeyResponse response;
  response.set_plaintext(std::string(AsStringView(plaintext)));
  response.set_blob_under_old(under_old);
  return response;
}

absl::StatusOr<v1::CheckBlobsResponse> CryptoUnit::CheckBlobs(
    const v1::CheckBlobsRequest& request) const {
  if (static_cast<size_t>(request.blobs_size()) > kMaxBatchBlobs) {
    return Invalid("BATCH_TOO_LARGE", StrCat("a batch holds at most ", kMaxBatchBlobs,
                                             " blobs, got ", request.blobs_size()));
  }
  v1::CheckBlobsResponse response;
  response.mutable_results()->Reserve(request.blobs_size());
  for (const std::string& blob : request.blobs()) {
    v1::BlobCheck* check = response.add_results();
    std::string key_id;
    bool under_old = false;
    auto key = ResolveRootKey(blob, &key_id, &under_old);
    *check->mutable_status() = wire::ToWireStatus(key.status());
    check->set_under_old(key.ok() && under_old);
  }
  return response;
}

absl::StatusOr<v1::ReencryptBatchResponse> CryptoUnit::Reencrypt(
    const google::protobuf::RepeatedPtrField<std::string>& blobs, const MasterKeyRegister& from,
    const MasterKeyRegister& to) const {
  const bool to_new = &to == &state_.new_register;
  if (to_new) {
    if (to.state() != v1::REGISTER_FULL_COMMITTED) {
      return Precondition("NEW_REGISTER_NOT_COMMITTED",
                          StrCat("re-encryption needs NEW FULL_COMMITTED; NEW is ",
                                 wire::RegisterStateName(to.state())));
    }
    if (!from.HoldsKey()) {
      return Precondition("CURRENT_REGISTER_EMPTY", "re-encryption needs a VALID CURRENT register");
    }
  } else {
    if (!from.HoldsKey()) {
      return Precondition("OLD_REGISTER_EMPTY",
                          "re-encryption from OLD needs a VALID OLD register");
    }
    if (!to.HoldsKey()) {
      return Precondition("CURRENT_REGISTER_EMPTY", "re-encryption needs a VALID CURRENT register");
    }
  }
  if (static_cast<size_t>(blobs.size()) > kMaxBatchBlobs) {
    return Invalid("BATCH_TOO_LARGE",
                   StrCat("a batch holds at most ", kMaxBatchBlobs, " blobs, got ", blobs.size()));
  }
  const BlobKek& source = *from.kek();
  const BlobKek& target = *to.kek();
  const std::string_view from_name = to_new ? "CURRENT" : "OLD";
  v1::ReencryptBatchResponse response;
  response.mutable_results()->Reserve(static_cast<int>(blobs.size()));
  // One rewrapper for the whole batch: keyed contexts leased once, IVs drawn
  // in chunks.
  auto rewrapper = BlobRewrapper::Create(source, target, entropy_, blobs.size());
  if (!rewrapper.ok()) return rewrapper.status();
  for (const std::string& blob : blobs) {
    v1::BlobResult* result = response.add_results();
    auto parsed = ParseBlob(AsBytes(blob));
    absl::Status failure;
    if (!parsed.ok()) {
      failure = parsed.status();
    } else if (parsed->wkid == target.wkid()) {
      result->set_outcome(v1::BLOB_ALREADY_UNDER_TARGET);
      result->set_blob(blob);
      continue;
    } else if (parsed->wkid != source.wkid()) {
      failure =
          Precondition("UNKNOWN_WKID", StrCat("blob for key '", Printable(parsed->key_id),
                                              "' is under WKID ", ToHex(parsed->wkid), ", neither ",
                                              from_name, " (", ToHex(source.wkid()),
                                              ") nor the target (", ToHex(target.wkid()), ")"));
    } else {
      auto rewrapped = rewrapper->Rewrap(*parsed);
      if (rewrapped.ok()) {
        result->set_outcome(v1::BLOB_REENCRYPTED);
        result->set_blob(std::move(*rewrapped));
        continue;
      }
      failure = rewrapped.status();
    }
    result->set_outcome(v1::BLOB_FAILED);
    *result->mutable_status() = wire::ToWireStatus(failure);
  }
  return response;
}

}  // namespace hsmsim::firmware

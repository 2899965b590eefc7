#include "firmware/internal/snapshot_codec.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/verification_pattern.h"
#include "hsmsim/v1/state.pb.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::firmware::internal {
namespace {

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

// WipeKeyMaterial wipes every key byte a UnitSnapshot message holds.
void WipeKeyMaterial(v1::UnitSnapshot& s) {
  WipeString(s.mutable_new_register()->mutable_key());
  WipeString(s.mutable_current_register()->mutable_key());
  WipeString(s.mutable_old_register()->mutable_key());
  WipeString(s.mutable_importer_private_key());
}

absl::Status BadState(std::string_view what) {
  return Error(absl::StatusCode::kDataLoss, reason::kBadState,
               StrCat("unit state is inconsistent: ", what));
}

// --- encoding ------------------------------------------------------------------

v1::RegisterSnapshot EncodeRegister(const MasterKeyRegister& r) {
  v1::RegisterSnapshot s;
  s.set_state(r.state());
  if (!r.empty()) s.set_key(std::string(AsStringView(r.key())));
  if (r.state() == v1::REGISTER_PARTIALLY_LOADED) {
    s.set_parts_total(r.parts_total());
    for (const auto& vp : r.part_vps()) s.add_part_verification_patterns(crypto::AsString(vp));
  }
  return s;
}

// --- decoding ------------------------------------------------------------------

absl::StatusOr<MasterKeyRegister> DecodePartialRegister(const v1::RegisterSnapshot& s,
                                                        std::string_view name) {
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

// DecodeRegister rebuilds register `name`; only NEW (`is_new`) may be
// partially loaded or full, and only CURRENT and OLD may be VALID.
absl::StatusOr<MasterKeyRegister> DecodeRegister(const v1::RegisterSnapshot& s,
                                                 std::string_view name, bool is_new) {
  switch (s.state()) {
    case v1::REGISTER_STATE_UNSPECIFIED:
    case v1::REGISTER_EMPTY:
      if (!s.key().empty()) return BadState(StrCat(name, " is EMPTY but holds key bytes"));
      return MasterKeyRegister();
    case v1::REGISTER_PARTIALLY_LOADED:
      if (!is_new) return BadState(StrCat(name, " cannot be PARTIALLY_LOADED"));
      return DecodePartialRegister(s, name);
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

absl::Status CheckFormatVersion(const v1::UnitSnapshot& s) {
  if (s.format_version() > kStateFormatVersion) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kUnsupportedStateVersion,
                 StrCat("unit state format version ", s.format_version(),
                        " is newer than this firmware supports (", kStateFormatVersion,
                        "); run a newer hsmsim-unit"));
  }
  if (s.format_version() == 0) return BadState("format version is missing");
  return absl::OkStatus();
}

// DecodeIdentity fills the unit id, instance and mode.
absl::Status DecodeIdentity(const v1::UnitSnapshot& s, UnitState& state) {
  if (s.unit_id().size() != kUnitIdSize) {
    return BadState(StrCat("unit id has ", s.unit_id().size(), " bytes"));
  }
  std::copy(s.unit_id().begin(), s.unit_id().end(), state.unit_id.begin());
  // The unit reports the firmware that runs now, not the one that wrote the
  // state; the snapshot records the writer for diagnosis only.
  state.instance = s.instance();
  if (s.mode() != v1::MODE_IMPRINT && s.mode() != v1::MODE_NORMAL) {
    return BadState(StrCat("unknown mode ", static_cast<int>(s.mode())));
  }
  state.mode = s.mode();
  return absl::OkStatus();
}

// DecodeAdministrators fills the administrators and thresholds (after the
// mode, which they must fit).
absl::Status DecodeAdministrators(const v1::UnitSnapshot& s, UnitState& state) {
  if (static_cast<size_t>(s.administrators_size()) > kMaxAdministrators) {
    return BadState(StrCat(s.administrators_size(), " administrators"));
  }
  for (const auto& a : s.administrators()) {
    auto admin = MakeAdministrator(a.name(), a.public_key());
    if (!admin.ok()) {
      return BadState(StrCat("administrator '", a.name(), "': ", admin.status().message()));
    }
    state.admins.push_back(std::move(*admin));
  }
  state.signature_threshold = s.signature_threshold();
  state.revocation_threshold = s.revocation_threshold();
  if (state.mode == v1::MODE_NORMAL) {
    const uint32_t n = static_cast<uint32_t>(state.admins.size());
    if (state.signature_threshold < 1 || state.signature_threshold > n ||
        state.revocation_threshold < 1 || state.revocation_threshold > n) {
      return BadState("thresholds do not fit the administrators");
    }
  } else if (state.signature_threshold != 0 || state.revocation_threshold != 0) {
    return BadState("imprint mode with thresholds set");
  }
  return absl::OkStatus();
}

absl::Status DecodeKeys(const v1::UnitSnapshot& s, UnitState& state) {
  HSMSIM_ASSIGN_OR_RETURN(state.new_register, DecodeRegister(s.new_register(), "NEW", true));
  HSMSIM_ASSIGN_OR_RETURN(state.current_register,
                          DecodeRegister(s.current_register(), "CURRENT", false));
  HSMSIM_ASSIGN_OR_RETURN(state.old_register, DecodeRegister(s.old_register(), "OLD", false));
  if (!s.importer_private_key().empty()) {
    auto key = crypto::P521FromPrivateScalar(AsBytes(s.importer_private_key()));
    if (!key.ok()) return BadState("importer key is not a valid P-521 key");
    HSMSIM_RETURN_IF_ERROR(InstallImporterKey(std::move(*key), state));
  }
  return absl::OkStatus();
}

}  // namespace

SecretBytes EncodeSnapshot(const UnitState& state) {
  v1::UnitSnapshot s;
  s.set_format_version(kStateFormatVersion);
  s.set_unit_id(crypto::AsString(state.unit_id));
  s.set_firmware_version(state.firmware_version);
  s.set_instance(state.instance);
  s.set_mode(state.mode);
  for (const Administrator& a : state.admins) {
    auto* admin = s.add_administrators();
    admin->set_name(a.name);
    admin->set_public_key(a.public_key_der);
  }
  s.set_signature_threshold(state.signature_threshold);
  s.set_revocation_threshold(state.revocation_threshold);
  s.set_transaction_counter(state.transaction_counter);
  *s.mutable_new_register() = EncodeRegister(state.new_register);
  *s.mutable_current_register() = EncodeRegister(state.current_register);
  *s.mutable_old_register() = EncodeRegister(state.old_register);
  if (state.importer_key) {
    auto scalar = crypto::P521PrivateScalar(*state.importer_key);
    // The importer key was built by this code; failing to export it is a bug.
    HSMSIM_CHECK(scalar.ok());
    s.set_importer_private_key(std::string(AsStringView(*scalar)));
  }
  std::string bytes = SerializeDeterministic(s);
  SecretBytes out = MakeSecret(bytes);
  WipeString(&bytes);
  WipeKeyMaterial(s);
  return out;
}

absl::StatusOr<UnitState> DecodeSnapshot(absl::Span<const uint8_t> bytes) {
  v1::UnitSnapshot s;
  if (!s.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return BadState(StrCat("snapshot of ", bytes.size(), " bytes does not parse"));
  }
  struct Wiper {
    v1::UnitSnapshot& s;
    ~Wiper() { WipeKeyMaterial(s); }
  } wiper{s};
  HSMSIM_RETURN_IF_ERROR(CheckFormatVersion(s));
  UnitState state;
  HSMSIM_RETURN_IF_ERROR(DecodeIdentity(s, state));
  HSMSIM_RETURN_IF_ERROR(DecodeAdministrators(s, state));
  state.transaction_counter = s.transaction_counter();
  HSMSIM_RETURN_IF_ERROR(DecodeKeys(s, state));
  return state;
}

}  // namespace hsmsim::firmware::internal

// UnitState: all nonvolatile state of one crypto unit (identity, mode,
// administrators, thresholds, transaction counter, the three master key
// registers and the importer key), shared by CryptoUnit and the internal
// pieces that check, change and encode it.
//
// A value type. Copying shares the immutable OpenSSL keys and KEKs and copies
// the (wiping) key bytes, so a command runs on a copy that replaces the
// unit's state only when the command succeeds. Not thread-safe; owned by
// CryptoUnit.
#ifndef HSMSIM_FIRMWARE_UNIT_STATE_H_
#define HSMSIM_FIRMWARE_UNIT_STATE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "crypto/ec_p521.h"
#include "firmware/limits.h"
#include "firmware/master_key_register.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware {

// Administrator is one installed administrator: a name and a P-521 public
// key, identified by the SHA-256 of its DER encoding.
struct Administrator {
  std::string name;
  std::string public_key_der;
  crypto::KeyId key_id{};
  std::shared_ptr<EVP_PKEY> public_key;  // immutable once built
};

// MakeAdministrator returns the administrator `name` with the DER
// SubjectPublicKeyInfo `public_key_der`. Returns INVALID_ARGUMENT
// (BAD_PUBLIC_KEY) unless the DER is the canonical encoding of a P-521 key.
// The name is not checked here (see ValidateArguments).
absl::StatusOr<Administrator> MakeAdministrator(std::string name, std::string public_key_der);

struct UnitState {
  std::array<uint8_t, kUnitIdSize> unit_id{};
  std::string firmware_version = kFirmwareVersion;
  std::string instance;
  v1::Mode mode = v1::MODE_IMPRINT;
  std::vector<Administrator> admins;
  uint32_t signature_threshold = 0;
  uint32_t revocation_threshold = 0;
  uint64_t transaction_counter = 0;
  MasterKeyRegister new_register;
  MasterKeyRegister current_register;
  MasterKeyRegister old_register;
  std::shared_ptr<EVP_PKEY> importer_key;  // null when none; immutable once built
  std::string importer_public_key_der;
  crypto::KeyId importer_key_id{};
};

// InstallImporterKey makes the P-521 key pair `key` the importer key of
// `state` (replacing any earlier one). Returns INTERNAL (CRYPTO_FAILED) when
// its public key cannot be encoded; `state` is then unchanged.
absl::Status InstallImporterKey(crypto::EvpPkeyPtr key, UnitState& state);

// PublicInfo returns what GetInfo reports about `state`: everything but key
// material.
v1::GetInfoResponse PublicInfo(const UnitState& state);

}  // namespace hsmsim::firmware

#endif  // HSMSIM_FIRMWARE_UNIT_STATE_H_

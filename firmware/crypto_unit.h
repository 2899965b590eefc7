// CryptoUnit: everything an emulated crypto unit does inside its tamper
// boundary, as a pure library. No sockets, files, clocks, threads, globals or
// logging: a request goes in, a response comes out, and where the unit's
// nonvolatile state changed the caller must persist Snapshot() before it
// sends the response.
//
// Thread-safety: Handle() mutates and must not run concurrently with any
// other call. HandleReadOnly() and the other const methods may run
// concurrently with each other (the emulator uses a shared mutex: shared for
// IsReadOnly() requests, exclusive for the rest).
#ifndef HSMSIM_CRYPTO_UNIT_H_
#define HSMSIM_CRYPTO_UNIT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "firmware/master_key_register.h"
#include "hsmsim/v1/state.pb.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware {

inline constexpr char kFirmwareVersion[] = "hsmsim-fw 0.1.0";
inline constexpr uint32_t kStateFormatVersion = 1;
inline constexpr size_t kUnitIdSize = 16;
inline constexpr size_t kMaxAdministrators = 8;
inline constexpr size_t kMaxAdminNameLength = 30;
inline constexpr uint32_t kMinKeyParts = 2;
inline constexpr uint32_t kMaxKeyParts = 20;
inline constexpr size_t kMaxBatchBlobs = 100'000;
inline constexpr size_t kMaxDataKeySize = 1024;

// Outcome of one request.
struct HandleResult {
  v1::Response response;
  // True when the nonvolatile state changed: persist Snapshot() before
  // sending `response`.
  bool state_changed = false;
};

class CryptoUnit {
 public:
  // Create returns a new unit in imprint mode with a random 128-bit id.
  // `entropy` must outlive the unit.
  static absl::StatusOr<std::unique_ptr<CryptoUnit>> Create(crypto::Entropy& entropy);

  // Restore rebuilds a unit from Snapshot() bytes. Returns
  // FAILED_PRECONDITION (UNSUPPORTED_STATE_VERSION) for a snapshot of a newer
  // format, DATA_LOSS (BAD_STATE) naming the first inconsistency otherwise.
  static absl::StatusOr<std::unique_ptr<CryptoUnit>> Restore(absl::Span<const uint8_t> snapshot,
                                                             crypto::Entropy& entropy);

  CryptoUnit(const CryptoUnit&) = delete;
  CryptoUnit& operator=(const CryptoUnit&) = delete;

  // IsReadOnly is true for requests that never change nonvolatile state
  // (GetInfo and the workload operations).
  static bool IsReadOnly(const v1::Request& request);

  // Handle serves any request. The response echoes the request id; on error
  // its status carries the code, reason and message and the state is
  // unchanged.
  HandleResult Handle(const v1::Request& request);

  // HandleReadOnly serves a request for which IsReadOnly() is true.
  v1::Response HandleReadOnly(const v1::Request& request) const;

  // Snapshot returns the deterministic serialization of the nonvolatile
  // state (it contains key material: the buffer wipes itself).
  SecretBytes Snapshot() const;

  v1::GetInfoResponse Info() const;
  const std::array<uint8_t, kUnitIdSize>& unit_id() const { return state_.unit_id; }

 private:
  struct Administrator {
    std::string name;
    std::string public_key_der;
    crypto::KeyId key_id{};
    std::shared_ptr<EVP_PKEY> public_key;
  };

  // All nonvolatile state. Copyable: commands run on a copy, which replaces
  // the state only when the command succeeds.
  struct State {
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
    std::shared_ptr<EVP_PKEY> importer_key;  // null when none
    std::string importer_public_key_der;
    crypto::KeyId importer_key_id{};
  };

  explicit CryptoUnit(crypto::Entropy& entropy) : entropy_(entropy) {}

  absl::StatusOr<v1::CommandResponse> HandleSignedCommand(const v1::SignedCommand& signed_command);
  absl::Status Apply(const v1::Command& command, State& next);

  absl::StatusOr<v1::GenerateKeyResponse> GenerateKey(const v1::GenerateKeyRequest& request) const;
  absl::StatusOr<v1::GenerateKeysResponse> GenerateKeys(
      const v1::GenerateKeysRequest& request) const;
  // CheckGenerate returns OK when a root key of `algorithm` can be generated.
  absl::Status CheckGenerate(v1::KeyAlgorithm algorithm) const;
  absl::StatusOr<v1::WrapKeyResponse> WrapKey(const v1::WrapKeyRequest& request) const;
  absl::StatusOr<v1::UnwrapKeyResponse> UnwrapKey(const v1::UnwrapKeyRequest& request) const;
  absl::StatusOr<v1::CheckBlobsResponse> CheckBlobs(const v1::CheckBlobsRequest& request) const;
  absl::StatusOr<v1::ReencryptBatchResponse> Reencrypt(
      const google::protobuf::RepeatedPtrField<std::string>& blobs, const MasterKeyRegister& from,
      const MasterKeyRegister& to) const;

  // ResolveRootKey opens a root-key blob under CURRENT or OLD.
  absl::StatusOr<SecretBytes> ResolveRootKey(std::string_view blob, std::string* key_id,
                                             bool* under_old) const;

  static absl::StatusOr<Administrator> MakeAdministrator(std::string name,
                                                         std::string public_key_der);

  State state_;
  crypto::Entropy& entropy_;
};

}  // namespace hsmsim::firmware

#endif  // HSMSIM_CRYPTO_UNIT_H_

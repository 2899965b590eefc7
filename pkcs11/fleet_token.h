// FleetToken: the token of libhsmsim-pkcs11.so, a fleet seen as one
// PKCS#11 token. Its keys are the fleet keystore's keys (token objects:
// rows of the keystore, so a master key rotation re-encrypts them with every
// other key) or blobs held in memory (session objects). All key crypto
// happens in a unit, over the unit protocol: GenerateKey and ImportKey make
// keys, EncryptAesGcm and DecryptAesGcm use them (docs/protocol.md 10.7).
//
// Rotation: a token key is used with its blob and, when the unit answers
// UNKNOWN_WKID or BLOB_UNDER_NEW, with its pending blob (the one a running
// rotation made); when neither works the row is read again (a finalized
// rotation switched them) and tried once more. A unit that does not answer
// is skipped for the next one. New token keys are placed as `hsmctl keys
// create` places them (host/key_creation.h): under the rotation's target
// when one is open.
//
// Thread-safety: none; the module calls it under its one lock.
#ifndef HSMSIM_PKCS11_FLEET_TOKEN_H_
#define HSMSIM_PKCS11_FLEET_TOKEN_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "host/fleet_manifest.h"
#include "host/keystore.h"
#include "host/rotation.h"
#include "hsmsim/v1/unit.pb.h"
#include "pkcs11/module_config.h"
#include "pkcs11/token_store.h"
#include "pkcs11/unit_link.h"

namespace hsmsim::pkcs11 {

// The key an operation uses: a keystore key (token object) by name, or a
// session object's blob.
struct KeyRef {
  bool token = false;
  std::string name;  // token: the keystore key's name
  std::string blob;  // session: the blob
};

// Parameters of one AES-GCM operation.
struct GcmOperation {
  std::string iv;
  std::string aad;
  uint32_t tag_size = 16;
};

class FleetToken {
 public:
  // Open reads the fleet manifest, opens (creating when absent) its keystore
  // and the token tables beside it. Errors: the manifest's and keystore's.
  static absl::StatusOr<std::unique_ptr<FleetToken>> Open(const ModuleConfig& config);

  // CreateTokenKey makes the AES key `name` of `key_bytes` (16, 24 or 32)
  // bytes in the keystore: generated in a unit, or `value` imported when
  // not null. Errors: the units' (no unit available, UNIT_UNREACHABLE) and
  // the keystore's (KEY_EXISTS).
  absl::Status CreateTokenKey(const std::string& name, size_t key_bytes, const SecretBytes* value);

  // CreateSessionBlob returns a blob of a new (or imported) AES key for a
  // session object, under the units' CURRENT.
  absl::StatusOr<std::string> CreateSessionBlob(size_t key_bytes, const SecretBytes* value);

  // Encrypt returns ciphertext || tag; Decrypt the plaintext. Errors: the
  // unit's (CIPHERTEXT_AUTHENTICATION_FAILED, BAD_GCM_PARAMETERS, ...),
  // NOT_FOUND (NO_SUCH_KEY) for a token key no longer in the keystore.
  absl::StatusOr<std::string> Encrypt(const KeyRef& key, const GcmOperation& op,
                                      const std::string& plaintext);
  absl::StatusOr<SecretBytes> Decrypt(const KeyRef& key, const GcmOperation& op,
                                      const std::string& ciphertext);

  TokenStore& store() { return *store_; }
  const ModuleConfig& config() const { return config_; }
  // The service instance fleet.json names ("" when none).
  const std::string& instance() const { return manifest_.instance; }

  // AbandonAfterFork drops, without closing, what the parent process
  // shares: sockets and SQLite connections (closing a SQLite connection in
  // the child could disturb the parent's locks). Call in a forked child only.
  void AbandonAfterFork();

 private:
  FleetToken(ModuleConfig config, host::FleetManifest manifest,
             std::unique_ptr<host::Keystore> keystore, std::unique_ptr<TokenStore> store);

  // UseBlobs asks units for `make(blob)` with each of `blobs` in turn until
  // one answers OK (see the class comment). On WKID refusals of every blob
  // it returns the last refusal; a transport error moves to the next unit.
  absl::StatusOr<v1::Response> UseBlobs(const std::vector<std::string>& blobs,
                                        const std::function<v1::Request(const std::string&)>& make);
  absl::StatusOr<v1::Response> UseKey(const KeyRef& key,
                                      const std::function<v1::Request(const std::string&)>& make);
  // MakeBlob generates or imports a key on `link`, under its CURRENT.
  absl::StatusOr<std::string> MakeBlob(UnitLink& link, const std::string& key_id, size_t key_bytes,
                                       const SecretBytes* value);
  std::vector<host::UnitObservation> ObserveUnits();

  ModuleConfig config_;
  host::FleetManifest manifest_;
  std::unique_ptr<host::Keystore> keystore_;
  std::unique_ptr<TokenStore> store_;
  std::vector<std::unique_ptr<UnitLink>> links_;  // selected units, manifest order
  size_t next_unit_ = 0;                          // round robin start
};

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_FLEET_TOKEN_H_

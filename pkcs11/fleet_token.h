// FleetToken: the token of libhsmsim-pkcs11.so, a fleet seen as one
// PKCS#11 token. Its keys are the fleet keystore's keys (token objects:
// rows of the keystore, so a master key rotation re-encrypts them with every
// other key) or blobs held in memory (session objects). All key crypto
// happens in a unit, over the unit protocol: GenerateKey, ImportKey and
// UnwrapAesKeyPad make keys, EncryptAesGcm, DecryptAesGcm and WrapAesKeyPad
// use them (docs/protocol.md 10.7, 10.8).
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
#include <optional>
#include <string>
#include <utility>
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

// Where a new key's value comes from: a unit generates it (the default),
// `value` is imported, or `wrapped` (RFC 5649) is unwrapped in a unit with
// the AES key of one of `unwrapping_blobs` (the unwrapping key's blobs).
struct KeySource {
  const SecretBytes* value = nullptr;
  std::vector<std::string> unwrapping_blobs;
  std::string wrapped;
  // The new blob's header attributes (proto/wire/blob_attributes.h):
  // wire::kBlobAttributeExtractable for a key with CKA_EXTRACTABLE TRUE, so
  // that the unit wraps it (C_WrapKey); 0 otherwise.
  uint32_t blob_attributes = 0;
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
  // bytes in the keystore from `source`. Errors: the units' (no unit
  // available, UNIT_UNREACHABLE; for an unwrap WRAPPED_KEY_AUTHENTICATION_
  // FAILED, BAD_AES_KEY_SIZE) and the keystore's (KEY_EXISTS).
  absl::Status CreateTokenKey(const std::string& name, size_t key_bytes, const KeySource& source);

  // CreateSessionBlob returns a blob of a new AES key from `source` for a
  // session object, under the units' CURRENT. Errors as CreateTokenKey.
  absl::StatusOr<std::string> CreateSessionBlob(size_t key_bytes, const KeySource& source);

  // BlobsOf returns the blobs a key may be used with: a session object's
  // blob; a token key's blob and pending blob (empty when none). NOT_FOUND
  // (NO_SUCH_KEY) for a token key no longer in the keystore.
  absl::StatusOr<std::vector<std::string>> BlobsOf(const KeyRef& key);

  // WrapKey returns `key` wrapped with `wrapping` (RFC 5649), in a unit that
  // can open a blob of each (any pair of their blobs, so a rotation half
  // done is no obstacle). Errors: the units', NO_SUCH_KEY.
  absl::StatusOr<std::string> WrapKey(const KeyRef& wrapping, const KeyRef& key);

  // Encrypt returns ciphertext || tag; Decrypt the plaintext. Errors: the
  // unit's (CIPHERTEXT_AUTHENTICATION_FAILED, BAD_GCM_PARAMETERS, ...),
  // NOT_FOUND (NO_SUCH_KEY) for a token key no longer in the keystore.
  absl::StatusOr<std::string> Encrypt(const KeyRef& key, const GcmOperation& op,
                                      const std::string& plaintext);
  absl::StatusOr<SecretBytes> Decrypt(const KeyRef& key, const GcmOperation& op,
                                      const std::string& ciphertext);

  // EncryptCbcPad and DecryptCbcPad: AES-CBC with PKCS#7 padding and the
  // 16-byte `iv`. Errors: the unit's (BAD_CBC_PARAMETERS,
  // CBC_PADDING_INVALID, ...), NO_SUCH_KEY.
  absl::StatusOr<std::string> EncryptCbcPad(const KeyRef& key, const std::string& iv,
                                            const std::string& plaintext);
  absl::StatusOr<SecretBytes> DecryptCbcPad(const KeyRef& key, const std::string& iv,
                                            const std::string& ciphertext);

  // ReencryptFromOld returns `blobs` re-encrypted from OLD to CURRENT by a
  // unit, in order: a blob already under CURRENT comes back unchanged, one
  // the unit cannot re-encrypt comes back empty. For session objects, which
  // no rotation re-encrypts. Errors: the units' (NO_UNIT_AVAILABLE,
  // UNIT_UNREACHABLE, BATCH_TOO_LARGE).
  absl::StatusOr<std::vector<std::string>> ReencryptFromOld(const std::vector<std::string>& blobs);

  // TakeSessionBlobUnderOld is true when a key use since the last call used
  // a session object's blob under OLD (a rotation has promoted since the
  // object was made: after the next one no unit could use it), and resets.
  bool TakeSessionBlobUnderOld() { return std::exchange(session_blob_under_old_, false); }

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
  // MakeBlob generates, imports or unwraps a key on `link`, under its
  // CURRENT.
  absl::StatusOr<std::string> MakeBlob(UnitLink& link, const std::string& key_id, size_t key_bytes,
                                       const KeySource& source);
  // TryWrap asks each unit for the wrap with each pair of blobs; nullopt
  // when every answer was a WKID refusal (`last` holds the last one).
  absl::StatusOr<std::optional<std::string>> TryWrap(const std::vector<std::string>& wrapping,
                                                     const std::vector<std::string>& key,
                                                     absl::Status* last);
  std::vector<host::UnitObservation> ObserveUnits();

  ModuleConfig config_;
  host::FleetManifest manifest_;
  std::unique_ptr<host::Keystore> keystore_;
  std::unique_ptr<TokenStore> store_;
  std::vector<std::unique_ptr<UnitLink>> links_;  // selected units, manifest order
  size_t next_unit_ = 0;                          // round robin start
  bool session_blob_under_old_ = false;
};

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_FLEET_TOKEN_H_

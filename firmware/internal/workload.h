// The workload operations on root keys (docs/protocol.md sections 10.1 to
// 10.3 and CheckBlobs): generate root keys as blobs under CURRENT, wrap and
// unwrap data keys with a root-key blob, and check which blobs the unit can
// open. Unsigned and read-only: each reads the unit's state and never
// changes it, so any number may run at once (`entropy` is thread-safe).
// Internal to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_WORKLOAD_H_
#define HSMSIM_FIRMWARE_INTERNAL_WORKLOAD_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "firmware/unit_state.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware::internal {

// A root key opened from a blob under CURRENT or OLD: `key` holds as many
// bytes as the blob's algorithm says (32, or 16 or 24 for AES-128/-192).
struct RootKey {
  SecretBytes key;
  std::string key_id;
  bool under_old = false;
};

// OpenRootKey opens a root-key blob under CURRENT or OLD. Returns
// INVALID_ARGUMENT (MALFORMED_BLOB) for bytes that are not a blob,
// FAILED_PRECONDITION (BLOB_UNDER_NEW) for a blob under NEW,
// FAILED_PRECONDITION (UNKNOWN_WKID) for a blob under another master key
// (the caller may retry with the key's blob under another generation),
// INVALID_ARGUMENT (BLOB_AUTHENTICATION_FAILED) for an altered blob.
absl::StatusOr<RootKey> OpenRootKey(std::string_view blob, const UnitState& state);

// GenerateKey returns a blob under CURRENT holding a new random root key.
// Returns INVALID_ARGUMENT (UNSUPPORTED_ALGORITHM) for an algorithm other
// than AES_256, FAILED_PRECONDITION (CURRENT_REGISTER_EMPTY) without a VALID
// CURRENT, INVALID_ARGUMENT (BAD_KEY_ID) for a bad key id.
absl::StatusOr<v1::GenerateKeyResponse> GenerateKey(const v1::GenerateKeyRequest& request,
                                                    const UnitState& state,
                                                    crypto::Entropy& entropy);

// GenerateKeys does GenerateKey for each key id of a batch, all or nothing:
// the request's `key_ids` answered in `blobs`, or its `packed_key_ids`
// answered in `packed` (docs/protocol.md section 10.6). Errors as
// GenerateKey, INVALID_ARGUMENT (BATCH_TOO_LARGE) above kMaxBatchBlobs key
// ids, INVALID_ARGUMENT (MALFORMED_PACKED_BLOBS) for a bad packing or both
// forms set.
absl::StatusOr<v1::GenerateKeysResponse> GenerateKeys(const v1::GenerateKeysRequest& request,
                                                      const UnitState& state,
                                                      crypto::Entropy& entropy);

// WrapKey encrypts a data key under the root key in a blob under CURRENT or
// OLD (flagged in the response). Returns INVALID_ARGUMENT
// (BAD_DATA_KEY_SIZE) outside 1..kMaxDataKeySize bytes, and the blob's
// refusals: MALFORMED_BLOB, BLOB_UNDER_NEW, UNKNOWN_WKID,
// BLOB_AUTHENTICATION_FAILED.
absl::StatusOr<v1::WrapKeyResponse> WrapKey(const v1::WrapKeyRequest& request,
                                            const UnitState& state, crypto::Entropy& entropy);

// UnwrapKey returns the data key WrapKey wrapped. Returns INVALID_ARGUMENT
// (MALFORMED_WRAPPED_KEY) for bytes that are not a wrapped key,
// INVALID_ARGUMENT (WRAPPED_KEY_AUTHENTICATION_FAILED) when they do not
// authenticate under the blob's root key, and the blob's refusals as WrapKey.
absl::StatusOr<v1::UnwrapKeyResponse> UnwrapKey(const v1::UnwrapKeyRequest& request,
                                                const UnitState& state);

// CheckBlobs opens each blob and reports per blob whether it can be used and
// whether it is under OLD: in `results` for a request's repeated `blobs`; in
// `checked`, `under_old` and `failures` for its `packed` blobs
// (docs/protocol.md section 10.6). Returns INVALID_ARGUMENT (BATCH_TOO_LARGE)
// above kMaxBatchBlobs blobs, INVALID_ARGUMENT (MALFORMED_PACKED_BLOBS) for a
// bad packing or both forms set; a blob that does not open is a per-blob
// status.
absl::StatusOr<v1::CheckBlobsResponse> CheckBlobs(const v1::CheckBlobsRequest& request,
                                                  const UnitState& state);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_WORKLOAD_H_

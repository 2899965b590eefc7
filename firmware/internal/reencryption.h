// Re-encryption of key storage blobs from one master key register to
// another (docs/protocol.md section 10.4): CURRENT to NEW during a rotation,
// OLD to CURRENT for stragglers after promotion. Read-only on the unit's
// state, so batches run in parallel (`entropy` is thread-safe). Internal to
// firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_REENCRYPTION_H_
#define HSMSIM_FIRMWARE_INTERNAL_REENCRYPTION_H_

#include <string>

#include "absl/status/statusor.h"
#include "crypto/entropy.h"
#include "firmware/unit_state.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware::internal {

// The two directions a batch can go.
enum class ReencryptDirection {
  kCurrentToNew,  // ReencryptBatch: NEW must be FULL_COMMITTED
  kOldToCurrent,  // ReencryptFromOld
};

// Reencrypt re-encrypts each blob of a batch request in `direction`: the
// request's `blobs`, or its `packed` blobs when `packed` is not null
// (docs/protocol.md sections 10.4 and 10.6). Whole-batch refusals, in order:
// FAILED_PRECONDITION (NEW_REGISTER_NOT_COMMITTED, CURRENT_REGISTER_EMPTY or
// OLD_REGISTER_EMPTY) when a register of the direction does not hold what it
// must, INVALID_ARGUMENT (BATCH_TOO_LARGE) above kMaxBatchBlobs blobs,
// INVALID_ARGUMENT (MALFORMED_PACKED_BLOBS) for a bad packing or both forms
// set, INTERNAL when OpenSSL cannot be set up. Otherwise an answer per blob
// in order: re-encrypted with the new blob, already under the target with
// the blob unchanged, or failed with its status (MALFORMED_BLOB,
// UNKNOWN_WKID, BLOB_AUTHENTICATION_FAILED, ...): in `results` for a
// repeated request, in `packed`, `already_under_target` and `failures` for a
// packed one.
absl::StatusOr<v1::ReencryptBatchResponse> Reencrypt(
    ReencryptDirection direction, const google::protobuf::RepeatedPtrField<std::string>& blobs,
    const v1::PackedBlobs* packed, const UnitState& state, crypto::Entropy& entropy);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_REENCRYPTION_H_

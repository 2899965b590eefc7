// The unit's nonvolatile state as bytes (docs/protocol.md section 15): the
// deterministic serialization of a v1::UnitSnapshot, and its decoding with
// every consistency check. Internal to firmware/.
#ifndef HSMSIM_FIRMWARE_INTERNAL_SNAPSHOT_CODEC_H_
#define HSMSIM_FIRMWARE_INTERNAL_SNAPSHOT_CODEC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "firmware/unit_state.h"

namespace hsmsim::firmware::internal {

// EncodeSnapshot returns the snapshot of `state`: the same state gives the
// same bytes. It contains key material; the buffer wipes itself, and every
// intermediate copy is wiped. REQUIRES: an importer key in `state` has its
// P-521 private scalar (CHECKed: the unit builds its importer keys itself).
SecretBytes EncodeSnapshot(const UnitState& state);

// DecodeSnapshot rebuilds the state EncodeSnapshot encoded. The firmware
// version in the result is the running one, not the one that wrote the
// snapshot. Returns FAILED_PRECONDITION (UNSUPPORTED_STATE_VERSION) for a
// snapshot of a newer format, DATA_LOSS (BAD_STATE) naming the first
// inconsistency otherwise.
absl::StatusOr<UnitState> DecodeSnapshot(absl::Span<const uint8_t> bytes);

}  // namespace hsmsim::firmware::internal

#endif  // HSMSIM_FIRMWARE_INTERNAL_SNAPSHOT_CODEC_H_

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

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "firmware/limits.h"
#include "firmware/unit_state.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware {

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
  explicit CryptoUnit(crypto::Entropy& entropy) : entropy_(entropy) {}

  // HandleSignedCommand runs the checks of docs/protocol.md section 6.2 in
  // order and, when all pass, applies the command to a copy of the state
  // that then replaces it.
  absl::StatusOr<v1::CommandResponse> HandleSignedCommand(const v1::SignedCommand& signed_command);

  UnitState state_;
  crypto::Entropy& entropy_;
};

}  // namespace hsmsim::firmware

#endif  // HSMSIM_CRYPTO_UNIT_H_

// UnitChannel: the host's seam to one crypto unit. Everything in the host
// that talks to a unit (rotation, recovery, interlock, signed commands, key
// part loading, hsmctl) takes a UnitChannel, so that tests can put an
// in-process unit (tests/support/in_process_unit.h) where production puts a
// UnitClient over a socket.
//
// The contract every implementation keeps, as UnitClient does:
//   - the channel chooses each request's id (the caller's is overwritten);
//   - CallAsync calls `done` exactly once, with the unit's response (whatever
//     its status) or a transport error;
//   - transport errors name the unit, with code UNAVAILABLE and reason
//     UNIT_UNREACHABLE (no answer, connection lost) or DEADLINE_EXCEEDED and
//     reason UNIT_TIMEOUT;
//   - only idempotent requests (IsIdempotentRequest) are retried after a
//     transport error; a signed command is sent once, because the unit's
//     transaction counter makes a resend either fail or apply twice.
//
// Thread-safety: implementations are thread-safe; every method may be
// called from any thread concurrently.
#ifndef HSMSIM_HOST_UNIT_CHANNEL_H_
#define HSMSIM_HOST_UNIT_CHANNEL_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/reasons.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

inline constexpr std::string_view kUnitUnreachable = reason::kUnitUnreachable;
inline constexpr std::string_view kUnitTimeout = reason::kUnitTimeout;

class UnitChannel {
 public:
  using Callback = std::function<void(absl::StatusOr<v1::Response>)>;

  virtual ~UnitChannel() = default;

  // name returns the unit's name in the fleet ("unit1"), as errors use it.
  virtual const std::string& name() const = 0;

  // CallAsync sends `request` (its id chosen by the channel) and calls `done`
  // exactly once, on a thread of the channel, with the unit's response or a
  // transport error. `done` must not block and must not call back into this
  // channel synchronously.
  virtual void CallAsync(v1::Request request, Callback done) = 0;

  // Call is the synchronous form of CallAsync: blocks until `done` would run.
  virtual absl::StatusOr<v1::Response> Call(v1::Request request);

  // GetInfo returns the unit's public state, or the transport error, or the
  // unit's refusal (its code and reason kept, the message prefixed with
  // "unit NAME").
  virtual absl::StatusOr<v1::GetInfoResponse> GetInfo();

  // SendCommand sends one signed command (once, never retried) and returns
  // the unit's state after it, or the transport error or the unit's refusal
  // as GetInfo does.
  virtual absl::StatusOr<v1::CommandResponse> SendCommand(const v1::SignedCommand& command);
};

// IsIdempotentRequest is true for requests that may safely be sent twice:
// GetInfo, WrapKey, UnwrapKey, ReencryptBatch, ReencryptFromOld.
bool IsIdempotentRequest(const v1::Request& request);

// IsUnreachable is true for the transport errors of a channel (the unit did
// not answer: UNIT_UNREACHABLE or UNIT_TIMEOUT), false for a unit's refusal.
bool IsUnreachable(const absl::Status& status);

// ResponseStatus returns the transport error of `result`, or the unit's
// whole-request status with the message prefixed by "unit NAME", or OK.
absl::Status ResponseStatus(const absl::StatusOr<v1::Response>& result, std::string_view unit_name);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_UNIT_CHANNEL_H_

// UnitClient: the host's connection to one crypto unit (hsmsim-unit), the
// production UnitChannel (host/unit_channel.h).
//
// One TCP connection per unit, opened lazily and reopened after a failure.
// Requests are pipelined: many may be in flight at once, and responses, which
// the unit sends in completion order, are matched to requests by id. Every
// request has a timeout. Only idempotent requests (GetInfo, WrapKey,
// UnwrapKey, ReencryptBatch, ReencryptFromOld) are retried after a lost
// connection or a timeout; signed commands never are, because the unit's
// transaction counter makes a resend either fail or apply twice.
//
// Errors of the transport name the unit and its endpoint, e.g.
// "unit u2 at 127.0.0.1:40123: connection refused", with code UNAVAILABLE
// and reason UNIT_UNREACHABLE, or DEADLINE_EXCEEDED and reason UNIT_TIMEOUT.
// Over TLS (UnitClientOptions::tls) a failed handshake is UNAVAILABLE
// (TLS_HANDSHAKE_FAILED) and a certificate for another unit id
// FAILED_PRECONDITION (UNIT_CERT_ID_MISMATCH); a plaintext client that
// meets a TLS unit gets TLS_HANDSHAKE_FAILED too.
//
// Thread-safety: all methods may be called from any thread concurrently. The
// client owns one background thread that runs the socket.
#ifndef HSMSIM_HOST_UNIT_CLIENT_H_
#define HSMSIM_HOST_UNIT_CLIENT_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "host/unit_channel.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

class TlsClientConfig;  // host/unit_tls.h

struct UnitClientOptions {
  // Time allowed for one attempt of a request, connecting included.
  std::chrono::milliseconds timeout{10'000};
  // Attempts of an idempotent request (1 = no retry). Signed commands always
  // get exactly one.
  int idempotent_attempts = 3;
  // Pause before a retry.
  std::chrono::milliseconds retry_backoff{100};
  // Largest response frame accepted.
  size_t max_frame_bytes = size_t{64} << 20;
  // Mutual TLS (host/unit_tls.h): null speaks plaintext. With it every
  // connection completes a TLS handshake, within `timeout`, and the unit's
  // certificate must name `tls_unit_id` (bytes; empty: any id) before a
  // request is sent.
  std::shared_ptr<const TlsClientConfig> tls;
  std::string tls_unit_id;
};

class UnitClient final : public UnitChannel {
 public:
  // Create returns a client for unit `name` at `endpoint` ("HOST:PORT").
  // It does not connect yet. Returns INVALID_ARGUMENT (BAD_ENDPOINT) when the
  // endpoint has no port.
  static absl::StatusOr<std::unique_ptr<UnitClient>> Create(std::string name, std::string endpoint,
                                                            UnitClientOptions options = {});
  ~UnitClient() override;
  UnitClient(const UnitClient&) = delete;
  UnitClient& operator=(const UnitClient&) = delete;

  const std::string& name() const override;
  const std::string& endpoint() const;

  // IsIdempotent is IsIdempotentRequest (host/unit_channel.h).
  static bool IsIdempotent(const v1::Request& request) { return IsIdempotentRequest(request); }

  // CallAsync sends `request` (its id is chosen by the client) and calls
  // `done` exactly once, on the client's thread, with the unit's response
  // (whatever its status) or a transport error. `done` must not block.
  void CallAsync(v1::Request request, Callback done) override;

  // Call, GetInfo and SendCommand are UnitChannel's, over CallAsync.

 private:
  class Impl;
  explicit UnitClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_UNIT_CLIENT_H_

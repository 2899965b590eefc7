// TlsClientStream: one mutual TLS connection from the host to a unit, over
// its own TCP socket (host/unit_tls.h). An interface, so that UnitClient
// does not include the Asio SSL headers (unit_tls.cc implements it).
//
// Thread-safety: used on its io_context's thread only.
#ifndef HSMSIM_HOST_TLS_CLIENT_STREAM_H_
#define HSMSIM_HOST_TLS_CLIENT_STREAM_H_

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "host/unit_tls.h"

namespace hsmsim::host {

// TlsClientStream: one TLS connection to a unit, over its own TCP socket.
class TlsClientStream {
 public:
  using IoHandler = std::function<void(boost::system::error_code, size_t)>;

  // Create returns a stream on `io` with `config` (which must outlive it).
  static std::unique_ptr<TlsClientStream> Create(boost::asio::io_context& io,
                                                 const TlsClientConfig& config);
  virtual ~TlsClientStream() = default;

  // tcp is the socket under TLS: connect it, then AsyncHandshake.
  virtual boost::asio::ip::tcp::socket& tcp() = 0;

  // AsyncHandshake runs the client handshake on the connected socket and
  // then compares the unit id the unit's certificate names with
  // `expected_unit_id` (bytes; empty: any id, e.g. at first contact). Calls
  // `done` once with OK; UNAVAILABLE (TLS_HANDSHAKE_FAILED) with OpenSSL's
  // words and the likely causes; or FAILED_PRECONDITION
  // (UNIT_CERT_ID_MISMATCH) naming both ids. `prefix` ("unit u2 at
  // HOST:PORT") starts every message.
  virtual void AsyncHandshake(std::string expected_unit_id, std::string prefix,
                              std::function<void(absl::Status)> done) = 0;

  // The unit id the unit's certificate named (bytes), once the handshake
  // succeeded; empty before.
  virtual const std::string& peer_unit_id() const = 0;

  // IsTlsError is true when `ec` (of a read or write) is a TLS failure,
  // e.g. the unit's alert after it refused hsmctl's client certificate.
  virtual bool IsTlsError(const boost::system::error_code& ec) const = 0;

  // AsyncReadSome and AsyncWrite (all of `buffer`) as Asio's.
  virtual void AsyncReadSome(boost::asio::mutable_buffer buffer, IoHandler done) = 0;
  virtual void AsyncWrite(boost::asio::const_buffer buffer, IoHandler done) = 0;
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_TLS_CLIENT_STREAM_H_

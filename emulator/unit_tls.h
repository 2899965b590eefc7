// Mutual TLS on the unit socket (hsmsim-unit --tls-cert/--tls-key/--tls-ca,
// docs/tls.md). The unit presents its certificate (which carries its unit
// id) and requires a client certificate that chains to --tls-ca; TLS 1.3
// only. The frames inside are the plaintext ones (docs/protocol.md).
//
// Only unit_tls.cc and unit_session_tls.cc include the Asio SSL headers.
//
// Thread-safety: a ServerTls is immutable once loaded and may be shared by
// every session.
#ifndef HSMSIM_EMULATOR_UNIT_TLS_H_
#define HSMSIM_EMULATOR_UNIT_TLS_H_

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "emulator/frame_budget.h"
#include "emulator/request_dispatcher.h"
#include "emulator/unit_session.h"

namespace hsmsim::emulator {

// ServerTls: the unit's TLS context (its certificate and key, the CA that
// clients' certificates must chain to).
class ServerTls;

// LoadServerTls reads the PEM files `cert_file` (the unit's certificate,
// optionally followed by intermediates), `key_file` (its private key) and
// `ca_file` (the CA clients must chain to). INVALID_ARGUMENT
// (TLS_SETUP_FAILED) naming the file and OpenSSL's words when one is
// unreadable or not PEM, or the key does not match the certificate.
absl::StatusOr<std::shared_ptr<ServerTls>> LoadServerTls(const std::string& cert_file,
                                                         const std::string& key_file,
                                                         const std::string& ca_file);

// MakeTlsSession wraps an accepted `socket` (with a strand executor) in a
// TLS stream of `tls` and returns its session, not started. `tls`, `pool`,
// `dispatcher` and `budget` must outlive the session.
std::shared_ptr<UnitSession> MakeTlsSession(boost::asio::ip::tcp::socket socket,
                                            const std::shared_ptr<ServerTls>& tls,
                                            boost::asio::thread_pool& pool,
                                            RequestDispatcher& dispatcher, FrameBudget& budget,
                                            SessionConfig config);

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_UNIT_TLS_H_

#include "emulator/unit_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <utility>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::emulator {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

class ServerTls {
 public:
  ServerTls() : context_(ssl::context::tls_server) {}
  ssl::context& context() { return context_; }

 private:
  ssl::context context_;
};

// Defined in unit_session_tls.cc, which instantiates the TLS session.
std::shared_ptr<UnitSession> MakeTlsSessionOn(asio::ip::tcp::socket socket, ssl::context& context,
                                              asio::thread_pool& pool,
                                              RequestDispatcher& dispatcher, FrameBudget& budget,
                                              SessionConfig config);

namespace {

absl::Status SetupFailed(std::string_view flag, const std::string& file,
                         const boost::system::error_code& ec) {
  ERR_clear_error();
  return Error(absl::StatusCode::kInvalidArgument, reason::kTlsSetupFailed,
               StrCat(flag, " ", file, ": ", ec.message()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<ServerTls>> LoadServerTls(const std::string& cert_file,
                                                         const std::string& key_file,
                                                         const std::string& ca_file) {
  auto tls = std::make_shared<ServerTls>();
  ssl::context& ctx = tls->context();
  boost::system::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::no_tlsv1_2,
                  ec);
  if (ec || SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_3_VERSION) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed,
                 "cannot restrict the unit's TLS context to TLS 1.3");
  }
  ctx.use_certificate_chain_file(cert_file, ec);
  if (ec) return SetupFailed("--tls-cert", cert_file, ec);
  ctx.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    ERR_clear_error();
    return Error(absl::StatusCode::kInvalidArgument, reason::kTlsSetupFailed,
                 StrCat("--tls-key ", key_file, ": ", ec.message(),
                        " (is it the key of --tls-cert ", cert_file, "?)"));
  }
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    ERR_clear_error();
    return Error(absl::StatusCode::kInvalidArgument, reason::kTlsSetupFailed,
                 StrCat("--tls-key ", key_file, " is not the key of --tls-cert ", cert_file));
  }
  ctx.load_verify_file(ca_file, ec);
  if (ec) return SetupFailed("--tls-ca", ca_file, ec);
  // Mutual TLS: a client without a certificate that chains to --tls-ca
  // fails the handshake.
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return SetupFailed("--tls-ca", ca_file, ec);
  return tls;
}

std::shared_ptr<UnitSession> MakeTlsSession(asio::ip::tcp::socket socket,
                                            const std::shared_ptr<ServerTls>& tls,
                                            asio::thread_pool& pool, RequestDispatcher& dispatcher,
                                            FrameBudget& budget, SessionConfig config) {
  return MakeTlsSessionOn(std::move(socket), tls->context(), pool, dispatcher, budget, config);
}

}  // namespace hsmsim::emulator

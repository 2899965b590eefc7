#include "host/unit_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <utility>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/tls_certificates.h"
#include "host/tls_client_stream.h"

namespace hsmsim::host {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

class TlsClientConfig {
 public:
  TlsClientConfig() : context_(ssl::context::tls_client) {}
  ssl::context& context() const { return context_; }

 private:
  // Asio's context methods are not const; the context is not changed once
  // loaded.
  mutable ssl::context context_;
};

namespace {

absl::Status BadFile(std::string_view what, const std::string& file,
                     const boost::system::error_code& ec) {
  ERR_clear_error();
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
               StrCat("the fleet's ", what, " ", file, ": ", ec.message()));
}

class StreamImpl final : public TlsClientStream {
 public:
  StreamImpl(asio::io_context& io, ssl::context& context) : stream_(io, context) {}

  asio::ip::tcp::socket& tcp() override { return stream_.next_layer(); }
  const std::string& peer_unit_id() const override { return peer_unit_id_; }

  void AsyncHandshake(std::string expected_unit_id, std::string prefix,
                      std::function<void(absl::Status)> done) override {
    stream_.async_handshake(
        ssl::stream_base::client,
        [this, expected = std::move(expected_unit_id), prefix = std::move(prefix),
         done = std::move(done)](const boost::system::error_code& ec) {
          done(Check(ec, expected, prefix));
        });
  }

  bool IsTlsError(const boost::system::error_code& ec) const override {
    // Not ssl::error::stream_truncated: a unit that closes the connection
    // (stops, crashes, drops it) does so without a TLS close_notify, and
    // that stays "unreachable", as over plaintext.
    return ec.category() == asio::error::get_ssl_category();
  }

  void AsyncReadSome(asio::mutable_buffer buffer, IoHandler done) override {
    // A unit closes without close_notify: that is the end of the stream, as
    // over plaintext.
    stream_.async_read_some(buffer,
                            [done = std::move(done)](boost::system::error_code ec, size_t n) {
                              if (ec == ssl::error::stream_truncated) ec = asio::error::eof;
                              done(ec, n);
                            });
  }
  void AsyncWrite(asio::const_buffer buffer, IoHandler done) override {
    asio::async_write(stream_, buffer, std::move(done));
  }

 private:
  absl::Status Check(const boost::system::error_code& ec, const std::string& expected,
                     const std::string& prefix) {
    if (ec) {
      ERR_clear_error();
      // Why the unit's certificate was refused, when it was: "certificate
      // has expired", "unable to get local issuer certificate", ...
      const long verify = SSL_get_verify_result(stream_.native_handle());
      const std::string why =
          verify == X509_V_OK ? "" : StrCat(" (", X509_verify_cert_error_string(verify), ")");
      return Error(absl::StatusCode::kUnavailable, reason::kTlsHandshakeFailed,
                   StrCat(prefix, ": TLS handshake failed: ", ec.message(), why,
                          " (is the unit's certificate signed by the fleet CA and within its "
                          "validity period, does the unit accept the fleet's client "
                          "certificate, and does it speak TLS at all? see its log)"));
    }
    peer_unit_id_ = UnitIdOfCertificate(SSL_get0_peer_certificate(stream_.native_handle()));
    if (!expected.empty() && peer_unit_id_ != expected) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kUnitCertIdMismatch,
                   StrCat(prefix, ": the unit's TLS certificate names unit id ",
                          peer_unit_id_.empty() ? "(none)" : ToHex(peer_unit_id_),
                          ", but fleet.json pins unit id ", ToHex(expected),
                          " for it; nothing was sent. Give the unit the certificate of its own "
                          "unit id, or fix its address in fleet.json"));
    }
    return absl::OkStatus();
  }

  ssl::stream<asio::ip::tcp::socket> stream_;
  std::string peer_unit_id_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const TlsClientConfig>> LoadTlsClientConfig(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file) {
  auto config = std::make_shared<TlsClientConfig>();
  ssl::context& ctx = config->context();
  boost::system::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::no_tlsv1_2,
                  ec);
  if (ec || SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_3_VERSION) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed,
                 "cannot restrict hsmctl's TLS context to TLS 1.3");
  }
  ctx.load_verify_file(ca_file, ec);
  if (ec) return BadFile("CA certificate", ca_file, ec);
  ctx.use_certificate_chain_file(cert_file, ec);
  if (ec) return BadFile("client certificate", cert_file, ec);
  ctx.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) return BadFile("client key", key_file, ec);
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    ERR_clear_error();
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 StrCat("the fleet's client key ", key_file, " is not the key of ", cert_file));
  }
  ctx.set_verify_mode(ssl::verify_peer, ec);
  if (ec) return BadFile("CA certificate", ca_file, ec);
  return std::shared_ptr<const TlsClientConfig>(std::move(config));
}

absl::StatusOr<std::shared_ptr<const TlsClientConfig>> LoadFleetTls(const std::string& fleet_dir,
                                                                    const FleetTlsFiles& files) {
  if (files.empty()) return std::shared_ptr<const TlsClientConfig>();
  const std::filesystem::path dir(fleet_dir);
  return LoadTlsClientConfig((dir / files.ca).string(), (dir / files.client_cert).string(),
                             (dir / files.client_key).string());
}

std::unique_ptr<TlsClientStream> TlsClientStream::Create(asio::io_context& io,
                                                         const TlsClientConfig& config) {
  return std::make_unique<StreamImpl>(io, config.context());
}

}  // namespace hsmsim::host

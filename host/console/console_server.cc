#include "host/console/console_server.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <deque>
#include <optional>
#include <vector>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::console {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr size_t kHeaderLimit = 8 * 1024;
constexpr size_t kBodyLimit = 16 * 1024;
constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr size_t kEventQueueLimit = 64;
constexpr auto kHeartbeatPeriod = std::chrono::seconds(15);
// A comment line: keeps the stream busy so a closed client is noticed.
constexpr char kHeartbeat[] = ": keep-alive\n\n";

// EventSink is an open event stream (a Session over plain TCP or TLS).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Send(const std::string& event) = 0;
};

}  // namespace

struct ConsoleServer::Impl {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  asio::steady_timer heartbeat{ioc};
  RequestHandler handler;
  std::optional<ssl::context> tls;                  // set: HTTPS only
  std::string https_url;                            // named to a plain HTTP client
  std::string last_event;                           // the io thread's
  std::vector<std::shared_ptr<EventSink>> streams;  // the io thread's
  int signal = 0;

  void Accept();
  void Broadcast(const std::string& event);
  void ScheduleHeartbeat();
};

namespace {

// Session is one connection over `Stream` (beast::tcp_stream, or an
// asio::ssl::stream over one, whose buffered handshake takes the bytes the
// Detector read): requests read and answered one at a time (keep-alive),
// until one opens an event stream, which it stays.
template <class Stream>
class Session : public EventSink, public std::enable_shared_from_this<Session<Stream>> {
 public:
  // `args` make the stream; `buffer` holds bytes already read from it.
  template <class... Args>
  Session(ConsoleServer::Impl& server, beast::flat_buffer buffer, Args&&... args)
      : stream_(std::forward<Args>(args)...), server_(server), buffer_(std::move(buffer)) {}

  // Start reads the first request (after the TLS handshake, over TLS).
  void Start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      ReadRequest();
    } else {
      beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
      // The bytes the detector read are the start of the handshake.
      stream_.async_handshake(ssl::stream_base::server, buffer_.data(),
                              [self = this->shared_from_this()](beast::error_code ec, size_t used) {
                                // A handshake that fails (a client that does not trust the
                                // fleet CA, or timed out) has no one to answer.
                                if (ec) return self->Close();
                                self->buffer_.consume(used);
                                self->ReadRequest();
                              });
    }
  }

  // Send queues `event` on this event stream (closing a stream whose
  // client has stopped reading).
  void Send(const std::string& event) override {
    if (closed_) return;
    if (queue_.size() >= kEventQueueLimit) {
      Close();
      return;
    }
    queue_.push_back(event);
    if (queue_.size() == 1 && streaming_) WriteNextEvent();
  }

 private:
  // WipeReadBuffer zeroes the whole storage of the read buffer when it
  // holds no unread byte.
  void WipeReadBuffer() {
    if (buffer_.size() != 0) return;
    buffer_.clear();
    const auto storage = buffer_.prepare(buffer_.capacity());
    OPENSSL_cleanse(storage.data(), storage.size());
  }

  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnRequest(beast::error_code ec) {
    // The client closed, timed out or sent what is not HTTP within the
    // limits: there is no one to answer.
    if (ec) return Close();
    http::request<http::string_body> req = parser_->release();
    HttpRequest request{std::string(req.method_string()), std::string(req.target()),
                        std::string(req[http::field::authorization]),
                        std::string(req[http::field::content_type]), std::move(req.body())};
    HttpResponse answer = server_.handler(request);
    // An action's body holds passwords: gone once answered, from the
    // parsed copy and from the read buffer it was parsed from (when no
    // pipelined request waits in it; a body of up to kBodyLimit is read
    // with its size known, so the body string never grew by copying).
    WipeString(&request.body);
    WipeReadBuffer();
    if (answer.event_stream && answer.status == 200) return StartEvents(answer);
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(answer.status), req.version());
    res->set(http::field::server, "hsmctl-console");
    if (!answer.content_type.empty()) res->set(http::field::content_type, answer.content_type);
    for (const auto& [name, value] : answer.headers) res->set(name, value);
    res->body() = std::move(answer.body);
    res->keep_alive(req.keep_alive());
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](beast::error_code write_ec, size_t) {
                        if (write_ec || !res->keep_alive()) return self->Close();
                        self->ReadRequest();
                      });
  }

  // StartEvents answers with the header of a text/event-stream without a
  // length (the body ends when the connection does), then the last event.
  void StartEvents(const HttpResponse& answer) {
    beast::get_lowest_layer(stream_).expires_never();
    auto res = std::make_shared<http::response<http::empty_body>>(http::status::ok, 11);
    res->set(http::field::server, "hsmctl-console");
    res->set(http::field::content_type, answer.content_type);
    for (const auto& [name, value] : answer.headers) res->set(name, value);
    res->keep_alive(false);
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    server_.streams.push_back(this->shared_from_this());
    if (!server_.last_event.empty()) Send(server_.last_event);
    http::async_write_header(
        stream_, *serializer,
        [self = this->shared_from_this(), res, serializer](beast::error_code ec, size_t) {
          if (ec) return self->Close();
          self->streaming_ = true;
          if (!self->queue_.empty()) self->WriteNextEvent();
        });
  }

  void WriteNextEvent() {
    asio::async_write(stream_, asio::buffer(queue_.front()),
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->Close();
                        self->queue_.pop_front();
                        if (!self->queue_.empty()) self->WriteNextEvent();
                      });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream_);
    tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp_layer.close();
    std::erase_if(server_.streams,
                  [this](const std::shared_ptr<EventSink>& s) { return s.get() == this; });
  }

  Stream stream_;
  ConsoleServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::deque<std::string> queue_;  // events not yet written, front first
  bool streaming_ = false;         // the header is written
  bool closed_ = false;
};

}  // namespace

// Detector reads the first bytes of a connection to a TLS console: a TLS
// ClientHello goes on to the handshake; anything else (plain HTTP) is
// answered, in plain HTTP, 400 and the https:// URL to use, then closed.
class Detector : public std::enable_shared_from_this<Detector> {
 public:
  Detector(tcp::socket socket, ConsoleServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {}

  void Start() {
    stream_.expires_after(kReadTimeout);
    beast::async_detect_ssl(stream_, buffer_,
                            [self = shared_from_this()](beast::error_code ec, bool is_tls) {
                              if (ec) return self->Close();
                              if (is_tls) {
                                std::make_shared<Session<ssl::stream<beast::tcp_stream>>>(
                                    self->server_, std::move(self->buffer_),
                                    std::move(self->stream_), *self->server_.tls)
                                    ->Start();
                                return;
                              }
                              self->RefusePlaintext();
                            });
  }

 private:
  void RefusePlaintext() {
    auto res = std::make_shared<http::response<http::string_body>>(http::status::bad_request, 11);
    res->set(http::field::server, "hsmctl-console");
    res->set(http::field::content_type, "text/plain; charset=utf-8");
    res->set(http::field::cache_control, "no-store");
    res->body() = StrCat("This hsmctl console speaks HTTPS only (the fleet has TLS): open ",
                         server_.https_url, " instead, with the token it printed.\n");
    res->keep_alive(false);
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec) return self->Close();
                        // The 400 sent, our side ends; the rest of the request
                        // is read and dropped before closing, so the client
                        // reads the 400 instead of a reset (closing with
                        // unread data sends RST).
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                        self->stream_.expires_after(kDrainTimeout);
                        self->Drain();
                      });
  }

  // Drain reads and discards what the client still sends, until it closes,
  // kDrainLimit bytes or kDrainTimeout (set by the caller), then closes.
  void Drain() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ >= kDrainLimit) return self->Close();
                              self->Drain();
                            });
  }

  static constexpr std::chrono::seconds kDrainTimeout{1};
  static constexpr size_t kDrainLimit = 64 * 1024;

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  ConsoleServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::array<char, 4096> drain_{};
  size_t drained_ = 0;
};

void ConsoleServer::Impl::Accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec && tls.has_value()) {
      std::make_shared<Detector>(std::move(socket), *this)->Start();
    } else if (!ec) {
      std::make_shared<Session<beast::tcp_stream>>(*this, beast::flat_buffer(), std::move(socket))
          ->Start();
    }
    Accept();
  });
}

void ConsoleServer::Impl::Broadcast(const std::string& event) {
  // Send may close a stream, which leaves `streams`: walk a copy.
  const std::vector<std::shared_ptr<EventSink>> open = streams;
  for (const std::shared_ptr<EventSink>& s : open) s->Send(event);
}

void ConsoleServer::Impl::ScheduleHeartbeat() {
  heartbeat.expires_after(kHeartbeatPeriod);
  heartbeat.async_wait([this](beast::error_code ec) {
    if (ec) return;
    Broadcast(kHeartbeat);
    ScheduleHeartbeat();
  });
}

namespace {

// SetUpTls makes `impl`'s TLS context: TLS 1.2 or later, `tls`'s
// certificate chain and key. OpenSSL wipes the plaintext it decrypted (a
// request body's PINs and passwords) from its own buffers once delivered
// (SSL_OP_CLEANSE_PLAINTEXT, OpenSSL 3) and frees idle connections' buffers
// (SSL_MODE_RELEASE_BUFFERS).
absl::Status SetUpTls(const ServerTls& tls, ConsoleServer::Impl& impl) {
  impl.tls.emplace(ssl::context::tls_server);
  ssl::context& ctx = *impl.tls;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_CLEANSE_PLAINTEXT);
  SSL_CTX_set_mode(ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  beast::error_code ec;
  ctx.use_certificate_chain(asio::buffer(tls.cert_chain_pem), ec);
  const char* what = "certificate";
  if (!ec) {
    what = "private key";
    ctx.use_private_key(asio::buffer(tls.key_pem.data(), tls.key_pem.size()), ssl::context::pem,
                        ec);
  }
  if (!ec && SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    what = "private key (it does not match the certificate)";
    ec = beast::error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
  }
  ERR_clear_error();
  if (ec) {
    impl.tls.reset();
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 StrCat("the console's TLS ", what, " is unusable: ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text, bool allow_remote) {
  auto bad = [&](std::string_view why) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadListenAddress,
                 StrCat("--listen '", text, "': ", why,
                        "; give IPV4:PORT or [IPV6]:PORT, e.g. 127.0.0.1:8080 (port 0: any "
                        "free port)"));
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port_text)) > 65535) {
    return bad("the port is not a number from 0 to 65535");
  }
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  if (host.find('%') != std::string_view::npos) {
    return bad("an IPv6 zone (%...) is not supported: give a global or loopback address");
  }
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(std::string(host), ec);
  if (ec || address.is_v6() != bracketed) {
    return bad("the address is not an IPv4 address or a bracketed IPv6 address");
  }
  if (!address.is_loopback() && !allow_remote) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kListenNotLoopback,
                 StrCat("--listen '", text,
                        "' is not a loopback address: the console would be open to other "
                        "hosts (which, on a fleet without TLS, see its access token in "
                        "clear). Listen on 127.0.0.1, or add --allow-remote if that is what "
                        "you want"));
  }
  return ListenAddress{address.to_string(),
                       static_cast<uint16_t>(std::stoul(std::string(port_text)))};
}

std::string UrlHost(const std::string& ip) {
  return ip.find(':') == std::string::npos ? ip : StrCat("[", ip, "]");
}

absl::StatusOr<std::unique_ptr<ConsoleServer>> ConsoleServer::Listen(const std::string& ip,
                                                                     uint16_t port,
                                                                     RequestHandler handler,
                                                                     const ServerTls* tls) {
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(ip, ec);
  if (ec) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadListenAddress,
                 StrCat("--listen: '", ip, "' is not an IPv4 or IPv6 address"));
  }
  auto impl = std::make_unique<Impl>();
  impl->handler = std::move(handler);
  if (tls != nullptr) HSMSIM_RETURN_IF_ERROR(SetUpTls(*tls, *impl));
  const tcp::endpoint endpoint(address, port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kConsoleListenFailed,
                 StrCat("cannot listen on ", ip, " port ", port, ": ", ec.message()));
  }
  impl->https_url =
      StrCat("https://", UrlHost(ip), ":", impl->acceptor.local_endpoint().port(), "/");
  return std::unique_ptr<ConsoleServer>(new ConsoleServer(std::move(impl)));
}

ConsoleServer::ConsoleServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ConsoleServer::~ConsoleServer() = default;

uint16_t ConsoleServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void ConsoleServer::Publish(std::string event) {
  asio::post(impl_->ioc, [impl = impl_.get(), event = std::move(event)] {
    impl->last_event = event;
    impl->Broadcast(event);
  });
}

int ConsoleServer::Run() {
  impl_->signals.async_wait([impl = impl_.get()](beast::error_code ec, int signal) {
    if (ec) return;
    impl->signal = signal;
    impl->ioc.stop();
  });
  impl_->Accept();
  impl_->ScheduleHeartbeat();
  impl_->ioc.run();
  return impl_->signal;
}

void ConsoleServer::Stop() { impl_->ioc.stop(); }

}  // namespace hsmsim::console

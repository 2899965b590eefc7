// ConsoleServer: the HTTP server of hsmctl console (Boost.Beast, one
// thread). It reads each request, has a handler answer it (ConsoleApi), and
// keeps event streams open to push every published snapshot.
#ifndef HSMSIM_HOST_CONSOLE_CONSOLE_SERVER_H_
#define HSMSIM_HOST_CONSOLE_CONSOLE_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "host/console/console_api.h"

namespace hsmsim::console {

// ListenAddress is where the console listens: an IP literal and a port
// (0: a free port the system picks).
struct ListenAddress {
  std::string ip;
  uint16_t port = 0;
};

// ParseListenAddress reads --listen: IPV4:PORT or [IPV6]:PORT, PORT in
// 0..65535. Returns INVALID_ARGUMENT (BAD_LISTEN_ADDRESS) for anything
// else (a host name included: the address is the operator's choice, not a
// resolver's), and INVALID_ARGUMENT (LISTEN_NOT_LOOPBACK) for an address
// other than loopback (127.0.0.0/8, ::1) unless `allow_remote`.
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text, bool allow_remote);

// UrlHost returns `ip` as the host part of a URL ("[::1]" for IPv6).
std::string UrlHost(const std::string& ip);

// ServerTls makes the console serve HTTPS only: its certificate chain (PEM:
// the server's certificate first, then any intermediates) and the
// certificate's private key (PEM; copied into the TLS context by Listen,
// which the caller may wipe afterwards). TLS 1.2 or 1.3.
struct ServerTls {
  std::string cert_chain_pem;
  SecretBytes key_pem;
};

// The request handler: called on the server's thread, once per request.
using RequestHandler = std::function<HttpResponse(const HttpRequest&)>;

// ConsoleServer owns its listening socket, its connections and an
// io_context run by Run(). Limits: a request's header and body are at most
// 8 KiB and 16 KiB, and must arrive within 30 s; an event stream that has 64
// events queued unsent (a client that stopped reading) is closed.
// Publish and Stop are thread-safe; the rest belongs to one thread.
class ConsoleServer {
 public:
  // Listen binds `ip` (an IPv4 or IPv6 literal) and `port` (0: a free port
  // the system picks). With `tls` (may be null: plain HTTP) every
  // connection must start a TLS handshake; one that starts with anything
  // else (plain HTTP) is answered in plain HTTP, 400 and a text naming the
  // https:// URL to use, and closed; a handshake must end within the read
  // timeout (30 s). Returns INVALID_ARGUMENT (BAD_LISTEN_ADDRESS) for an
  // address that is not an IP literal, INVALID_ARGUMENT (BAD_TLS_FILES)
  // when `tls`'s certificate or key is not PEM or they do not match,
  // FAILED_PRECONDITION (CONSOLE_LISTEN_FAILED) when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<ConsoleServer>> Listen(const std::string& ip, uint16_t port,
                                                               RequestHandler handler,
                                                               const ServerTls* tls = nullptr);
  ~ConsoleServer();
  ConsoleServer(const ConsoleServer&) = delete;
  ConsoleServer& operator=(const ConsoleServer&) = delete;

  // port returns the bound port.
  uint16_t port() const;

  // Publish sends `event` (one whole server-sent event) on every open
  // event stream; a stream opened later starts with the last event
  // published.
  void Publish(std::string event);

  // Run serves until Stop() is called or SIGINT or SIGTERM arrives (caught
  // from Listen until the server is destroyed), and returns the signal's
  // number, or 0 after Stop.
  int Run();

  // Stop makes Run return.
  void Stop();

  // Impl is the server's state, defined in console_server.cc (where its
  // connections need to name it).
  struct Impl;

 private:
  explicit ConsoleServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsmsim::console

#endif  // HSMSIM_HOST_CONSOLE_CONSOLE_SERVER_H_

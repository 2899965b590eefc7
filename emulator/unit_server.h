// UnitServer: accepts connections and gives each its own UnitSession.
//
// Thread-safety: Listen() and Start() are called once before the io_context
// runs; Stop() may be called from any handler of that io_context.
#ifndef HSMSIM_EMULATOR_UNIT_SERVER_H_
#define HSMSIM_EMULATOR_UNIT_SERVER_H_

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "emulator/frame_budget.h"
#include "emulator/request_dispatcher.h"
#include "emulator/unit_session.h"
#include "emulator/unit_tls.h"

namespace hsmsim::emulator {

class UnitServer {
 public:
  // `io`, `pool`, `dispatcher` and `budget` must outlive the server; every
  // session shares `budget` (see UnitSession for how it is used). `tls`
  // null: plaintext sessions; otherwise every connection must complete a
  // mutual TLS handshake with it (emulator/unit_tls.h) first.
  UnitServer(boost::asio::io_context& io, boost::asio::thread_pool& pool,
             RequestDispatcher& dispatcher, FrameBudget& budget, SessionConfig config,
             std::shared_ptr<ServerTls> tls = nullptr);

  UnitServer(const UnitServer&) = delete;
  UnitServer& operator=(const UnitServer&) = delete;

  // Listen binds `host`:`port` (port 0: the system chooses) and listens.
  // Returns the bound endpoint, or UNAVAILABLE (LISTEN_FAILED) naming the
  // address and the OS error.
  absl::StatusOr<boost::asio::ip::tcp::endpoint> Listen(const std::string& host, uint16_t port);

  // Start begins accepting. REQUIRES: Listen() succeeded.
  void Start();

  // Stop stops accepting and closes every open connection. Once the requests
  // in flight finish, the io_context runs out of work.
  void Stop();

 private:
  boost::asio::awaitable<void> AcceptLoop();

  boost::asio::io_context& io_;
  boost::asio::thread_pool& pool_;
  RequestDispatcher& dispatcher_;
  FrameBudget& budget_;
  const SessionConfig config_;
  const std::shared_ptr<ServerTls> tls_;
  boost::asio::ip::tcp::acceptor acceptor_;

  std::mutex mu_;
  bool stopped_ = false;                              // guarded by mu_
  std::vector<std::weak_ptr<UnitSession>> sessions_;  // guarded by mu_
};

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_UNIT_SERVER_H_

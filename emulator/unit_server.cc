#include "emulator/unit_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <utility>

#include "common/check.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::emulator {

namespace asio = boost::asio;
using asio::ip::tcp;

UnitServer::UnitServer(asio::io_context& io, asio::thread_pool& pool, RequestDispatcher& dispatcher,
                       FrameBudget& budget, SessionConfig config, std::shared_ptr<ServerTls> tls)
    : io_(io),
      pool_(pool),
      dispatcher_(dispatcher),
      budget_(budget),
      config_(config),
      tls_(std::move(tls)),
      acceptor_(io) {}

absl::StatusOr<tcp::endpoint> UnitServer::Listen(const std::string& host, uint16_t port) {
  auto fail = [&](std::string_view step, const boost::system::error_code& ec) {
    return Error(absl::StatusCode::kUnavailable, reason::kListenFailed,
                 StrCat("listening on ", host, ":", port, ": ", step, ": ", ec.message()));
  };
  boost::system::error_code ec;
  tcp::resolver resolver(io_);
  auto results = resolver.resolve(host, std::to_string(port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) return fail("resolve", ec);
  if (results.empty()) return fail("resolve", asio::error::host_not_found);
  tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) return fail("socket", ec);
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return fail("setsockopt", ec);
  acceptor_.bind(endpoint, ec);
  if (ec) return fail("bind", ec);
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen", ec);
  tcp::endpoint bound = acceptor_.local_endpoint(ec);
  if (ec) return fail("getsockname", ec);
  return bound;
}

void UnitServer::Start() {
  HSMSIM_CHECK(acceptor_.is_open());
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
}

void UnitServer::Stop() {
  std::vector<std::shared_ptr<UnitSession>> live;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    for (auto& weak : sessions_) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    sessions_.clear();
  }
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  for (auto& session : live) session->Close();
}

asio::awaitable<void> UnitServer::AcceptLoop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(io_),
                                                        asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      spdlog::warn("accept failed: {}", ec.message());
      // E.g. out of file descriptors: back off instead of spinning.
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::shared_ptr<UnitSession> session =
        tls_ ? MakeTlsSession(std::move(socket), tls_, pool_, dispatcher_, budget_, config_)
             : std::make_shared<PlainUnitSession>(std::move(socket), pool_, dispatcher_, budget_,
                                                  config_);
    {
      std::lock_guard lock(mu_);
      if (stopped_) co_return;  // the socket closes with `session`
      std::erase_if(sessions_, [](const std::weak_ptr<UnitSession>& w) { return w.expired(); });
      sessions_.push_back(session);
    }
    session->Start();
  }
}

}  // namespace hsmsim::emulator

#include "host/unit_client.h"

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <deque>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/read_buffer.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/tls_client_stream.h"
#include "proto/wire/frame_codec.h"

namespace hsmsim::host {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Asio's messages start with a capital ("Connection refused"); ours follow
// "unit u2 at HOST:PORT: " and read better in lower case.
std::string LowerFirst(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

// One request from CallAsync until its callback runs. Retries reuse it with a
// fresh request id, so a late answer to an abandoned attempt is ignored.
struct PendingCall {
  v1::Request request;
  UnitClient::Callback done;
  int attempts_left = 1;
  bool idempotent = false;
  bool sent = false;   // written to the current connection
  uint64_t epoch = 0;  // bumped whenever the timer is re-armed or cancelled
  std::unique_ptr<asio::steady_timer> timer;
};

}  // namespace

class UnitClient::Impl {
 public:
  Impl(std::string name, std::string endpoint, std::string host, std::string port,
       UnitClientOptions options)
      : name_(std::move(name)),
        endpoint_(std::move(endpoint)),
        host_(std::move(host)),
        port_(std::move(port)),
        options_(options),
        work_(asio::make_work_guard(io_)),
        socket_(io_),
        resolver_(io_),
        connect_timer_(io_) {
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Impl() {
    asio::post(io_, [this] { Shutdown(); });
    work_.reset();
    thread_.join();
  }

  const std::string& name() const { return name_; }
  const std::string& endpoint() const { return endpoint_; }

  void CallAsync(v1::Request request, Callback done) {
    auto call = std::make_shared<PendingCall>();
    call->idempotent = IsIdempotent(request);
    call->attempts_left = call->idempotent ? std::max(1, options_.idempotent_attempts) : 1;
    call->request = std::move(request);
    call->done = std::move(done);
    asio::post(io_, [this, call] {
      call->timer = std::make_unique<asio::steady_timer>(io_);
      Submit(call);
    });
  }

  std::string Prefix() const { return StrCat("unit ", name_, " at ", endpoint_); }

 private:
  enum class ConnState { kDisconnected, kConnecting, kConnected };

  // The TCP socket of the current connection: the TLS stream's, or the
  // plaintext one.
  tcp::socket& Tcp() { return tls_stream_ ? tls_stream_->tcp() : socket_; }

  // WriteBytes and ReadSome go through TLS when the fleet speaks it; the
  // plaintext path is Asio's own, unchanged.
  template <class Handler>
  void WriteBytes(asio::const_buffer buffer, Handler&& handler) {
    if (tls_stream_) {
      tls_stream_->AsyncWrite(buffer, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket_, buffer, std::forward<Handler>(handler));
    }
  }
  template <class Handler>
  void ReadSome(asio::mutable_buffer buffer, Handler&& handler) {
    if (tls_stream_) {
      tls_stream_->AsyncReadSome(buffer, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffer, std::forward<Handler>(handler));
    }
  }

  // --- everything below runs on thread_ ---

  void Submit(const std::shared_ptr<PendingCall>& call) {
    if (shutting_down_) {
      call->done(Error(absl::StatusCode::kCancelled, reason::kClientClosed,
                       StrCat(Prefix(), ": the client is closing")));
      return;
    }
    call->request.set_id(next_id_++);
    call->sent = false;
    pending_[call->request.id()] = call;
    ArmTimeout(call);
    if (state_ == ConnState::kConnected) {
      Write(call);
      return;
    }
    waiting_.push_back(call);
    if (state_ == ConnState::kDisconnected) StartConnect();
  }

  bool IsPending(const std::shared_ptr<PendingCall>& call) const {
    auto it = pending_.find(call->request.id());
    return it != pending_.end() && it->second == call;
  }

  void ArmTimeout(const std::shared_ptr<PendingCall>& call) {
    uint64_t epoch = ++call->epoch;
    call->timer->expires_after(options_.timeout);
    call->timer->async_wait([this, call, epoch](boost::system::error_code ec) {
      if (ec || shutting_down_ || epoch != call->epoch || !IsPending(call)) return;
      const bool signed_command = call->request.has_signed_command();
      Finish(call, Error(absl::StatusCode::kDeadlineExceeded, kUnitTimeout,
                         StrCat(Prefix(), ": no response within ", options_.timeout.count(), " ms",
                                signed_command ? "; the command may or may not have been applied: "
                                                 "read the unit's state before signing it again"
                                               : "")));
    });
  }

  // Finish removes `call` from the table and either retries it (idempotent,
  // attempts left, transport error) or delivers `result`.
  void Finish(const std::shared_ptr<PendingCall>& call, absl::StatusOr<v1::Response> result) {
    pending_.erase(call->request.id());
    ++call->epoch;
    call->timer->cancel();
    const bool transport_error = !result.ok();
    if (transport_error && call->idempotent && --call->attempts_left > 0 && !shutting_down_) {
      uint64_t epoch = ++call->epoch;
      call->timer->expires_after(options_.retry_backoff);
      call->timer->async_wait([this, call, epoch](boost::system::error_code ec) {
        if (ec || epoch != call->epoch) return;
        Submit(call);
      });
      return;
    }
    call->done(std::move(result));
  }

  absl::Status Lost(std::string_view reason, std::string_view what) const {
    return Error(absl::StatusCode::kUnavailable, reason, StrCat(Prefix(), ": ", what));
  }

  // AnsweredWithTlsAlert is true when what the unit sent before closing is
  // a TLS alert record: a TLS unit refused this plaintext client.
  bool AnsweredWithTlsAlert() const {
    return !tls_stream_ && read_buf_.size() >= 2 && read_buf_[0] == 0x15 && read_buf_[1] == 0x03;
  }

  absl::Status Unreachable(std::string_view what) const {
    return Error(absl::StatusCode::kUnavailable, kUnitUnreachable, StrCat(Prefix(), ": ", what));
  }

  void StartConnect() {
    state_ = ConnState::kConnecting;
    connect_timer_.expires_after(options_.timeout);
    connect_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || state_ != ConnState::kConnecting) return;
      connect_timed_out_ = true;
      resolver_.cancel();
      boost::system::error_code ignored;
      Tcp().close(ignored);
    });
    connect_timed_out_ = false;
    if (options_.tls) {
      // A fresh TLS stream per connection; the last one is released once
      // its aborted operations have run.
      if (tls_stream_) {
        asio::post(io_, [this, old = std::shared_ptr<TlsClientStream>(std::move(tls_stream_))] {
          asio::post(io_, [old] {});
        });
      }
      tls_stream_ = TlsClientStream::Create(io_, *options_.tls);
    }
    resolver_.async_resolve(
        host_, port_, [this](boost::system::error_code ec, tcp::resolver::results_type results) {
          if (shutting_down_) return;
          if (ec) {
            OnConnectFailed(ec);
            return;
          }
          asio::async_connect(Tcp(), results,
                              [this](boost::system::error_code ec2, const tcp::endpoint&) {
                                if (shutting_down_) return;
                                if (ec2) {
                                  OnConnectFailed(ec2);
                                } else if (tls_stream_) {
                                  StartHandshake();
                                } else {
                                  OnConnected();
                                }
                              });
        });
  }

  void OnConnectFailed(boost::system::error_code ec) {
    const std::string what =
        connect_timed_out_ ? StrCat("connect timed out after ", options_.timeout.count(), " ms")
                           : LowerFirst(ec.message());
    FailWaiting([this, &what] { return Unreachable(what); });
  }

  // FailWaiting drops the connection being made and fails every call
  // waiting for it with a status of `make_error`.
  void FailWaiting(const std::function<absl::Status()>& make_error) {
    connect_timer_.cancel();
    state_ = ConnState::kDisconnected;
    boost::system::error_code ignored;
    Tcp().close(ignored);
    std::vector<std::shared_ptr<PendingCall>> waiting(waiting_.begin(), waiting_.end());
    waiting_.clear();
    // Each caller gets a Status of its own: absl's reference counts live in
    // an uninstrumented shared library, so a Status shared across threads
    // reads as a data race to TSan.
    for (auto& call : waiting) {
      if (IsPending(call)) Finish(call, make_error());
    }
  }

  // StartHandshake runs the TLS handshake on the connected socket, still
  // under the connect timer, and checks the unit id of its certificate.
  void StartHandshake() {
    tls_stream_->AsyncHandshake(options_.tls_unit_id, Prefix(), [this](absl::Status status) {
      if (shutting_down_) return;
      if (status.ok()) {
        OnConnected();
        return;
      }
      if (connect_timed_out_) {
        OnConnectFailed(asio::error::timed_out);
        return;
      }
      FailWaiting([&status] {
        return Error(status.code(), ReasonOf(status), std::string(status.message()));
      });
    });
  }

  void OnConnected() {
    connect_timer_.cancel();
    state_ = ConnState::kConnected;
    boost::system::error_code ignored;
    Tcp().set_option(tcp::no_delay(true), ignored);
    read_buf_.clear();
    write_error_.clear();
    connection_refusal_.reset();
    StartRead();
    std::vector<std::shared_ptr<PendingCall>> waiting(waiting_.begin(), waiting_.end());
    waiting_.clear();
    for (auto& call : waiting) {
      if (IsPending(call)) Write(call);
    }
  }

  // OnConnectionLost fails the calls sent on the lost connection with
  // `reason` (UNIT_UNREACHABLE unless the unit turned out to speak TLS).
  void OnConnectionLost(std::string_view what, std::string_view reason = kUnitUnreachable) {
    if (state_ != ConnState::kConnected) return;
    state_ = ConnState::kDisconnected;
    ++generation_;
    boost::system::error_code ignored;
    Tcp().close(ignored);
    write_queue_.clear();
    writing_ = false;
    std::vector<std::shared_ptr<PendingCall>> sent;
    for (auto& [id, call] : pending_) {
      if (call->sent) sent.push_back(call);
    }
    // The unit answered a frame it could not take (MALFORMED_FRAME,
    // FRAME_TOO_LARGE: request id 0) and then closed: every call still
    // waiting on this connection gets the unit's own answer, with its reason
    // and exit class, never retried (a resend would be refused again).
    std::optional<v1::Response> refusal = std::move(connection_refusal_);
    connection_refusal_.reset();
    for (auto& call : sent) {
      if (refusal.has_value()) {
        Finish(call, RefusalFor(*call, *refusal));
      } else if (call->request.has_signed_command()) {
        Finish(call, Lost(reason, StrCat("connection lost: ", what,
                                         "; the command may or may not have been applied: read "
                                         "the unit's state before signing it again")));
      } else {
        Finish(call, Lost(reason, StrCat("connection lost: ", what)));  // one Status per caller
      }
    }
    if (!waiting_.empty() && state_ == ConnState::kDisconnected) StartConnect();
  }

  void Write(const std::shared_ptr<PendingCall>& call) {
    call->sent = true;
    if (!write_error_.empty()) return;  // the reader reports the lost connection
    write_queue_.push_back(wire::EncodeFrame(call->request));
    if (!writing_) DoWrite();
  }

  void DoWrite() {
    writing_ = true;
    uint64_t generation = generation_;
    WriteBytes(asio::buffer(write_queue_.front()),
               [this, generation](boost::system::error_code ec, size_t) {
                 if (shutting_down_ || generation != generation_) return;
                 if (ec) {
                   // The unit may have answered why it closed (an
                   // id-0 answer still in the socket): let the
                   // reader, which sees the close too, report it.
                   write_error_ = LowerFirst(ec.message());
                   write_queue_.clear();
                   writing_ = false;
                   boost::system::error_code ignored;
                   Tcp().shutdown(tcp::socket::shutdown_send, ignored);
                   return;
                 }
                 write_queue_.pop_front();
                 if (write_queue_.empty()) {
                   writing_ = false;
                 } else {
                   DoWrite();
                 }
               });
  }

  void StartRead() {
    uint64_t generation = generation_;
    // Read straight onto the end of read_buf_ (grown without zeros, shrunk
    // to what came): no copy through a chunk.
    const size_t had = read_buf_.size();
    read_buf_.resize(had + kReadChunk);
    ReadSome(asio::buffer(read_buf_.data() + had, kReadChunk),
             [this, generation, had](boost::system::error_code ec, size_t n) {
               if (shutting_down_ || generation != generation_) return;
               read_buf_.resize(had + n);
               if (ec && tls_stream_ && tls_stream_->IsTlsError(ec)) {
                 OnConnectionLost(StrCat("TLS error: ", LowerFirst(ec.message()),
                                         " (did the unit refuse hsmctl's client certificate? "
                                         "see its log)"),
                                  reason::kTlsHandshakeFailed);
                 return;
               }
               if (ec && AnsweredWithTlsAlert()) {
                 OnConnectionLost(
                     "the unit answered with a TLS alert: it speaks TLS and "
                     "fleet.json says this unit is plaintext (see docs/tls.md)",
                     reason::kTlsHandshakeFailed);
                 return;
               }
               if (ec) {
                 OnConnectionLost(!write_error_.empty() ? write_error_
                                  : ec == asio::error::eof
                                      ? std::string("the unit closed the connection")
                                      : LowerFirst(ec.message()));
                 return;
               }
               if (!ParseFrames()) return;
               StartRead();
             });
  }

  // ParseFrames dispatches every whole frame in read_buf_. Returns false
  // after dropping the connection on a malformed or oversized frame.
  bool ParseFrames() {
    size_t offset = 0;
    while (offset < read_buf_.size()) {
      absl::Span<const uint8_t> rest(read_buf_.data() + offset, read_buf_.size() - offset);
      auto header = wire::DecodeFrameHeader(rest, options_.max_frame_bytes);
      if (!header.ok()) {
        OnConnectionLost(StrCat("bad frame from the unit: ", header.status().message()));
        return false;
      }
      if (!header->has_value()) break;
      const size_t total = (*header)->prefix_size + (*header)->body_size;
      if (rest.size() < total) break;
      v1::Response response;
      absl::Status parsed = wire::ParseFrameBody(
          rest.subspan((*header)->prefix_size, (*header)->body_size), &response);
      if (!parsed.ok()) {
        OnConnectionLost(StrCat("bad response from the unit: ", parsed.message()));
        return false;
      }
      offset += total;
      Dispatch(std::move(response));
    }
    read_buf_.erase(read_buf_.begin(), read_buf_.begin() + static_cast<std::ptrdiff_t>(offset));
    return true;
  }

  // RefusalFor returns the unit's connection-level answer `refusal` as the
  // answer to `call` (its id, the unit's code and reason, and a message that
  // says what happened to the connection).
  v1::Response RefusalFor(const PendingCall& call, const v1::Response& refusal) const {
    v1::Response r = refusal;
    r.set_id(call.request.id());
    r.mutable_status()->set_message(
        StrCat("refused a frame on this connection and closed it: ", refusal.status().message(),
               call.request.has_signed_command()
                   ? "; the command may or may not have been applied: read the unit's state "
                     "before signing it again"
                   : ""));
    return r;
  }

  void Dispatch(v1::Response response) {
    if (response.id() == 0 && response.status().code() != 0) {
      // A connection-level answer; the unit closes the connection next.
      if (!connection_refusal_.has_value()) connection_refusal_ = std::move(response);
      return;
    }
    auto it = pending_.find(response.id());
    if (it == pending_.end()) return;  // an abandoned attempt
    std::shared_ptr<PendingCall> call = it->second;
    Finish(call, std::move(response));
  }

  void Shutdown() {
    shutting_down_ = true;
    boost::system::error_code ignored;
    connect_timer_.cancel();
    resolver_.cancel();
    Tcp().close(ignored);
    std::vector<std::shared_ptr<PendingCall>> all;
    for (auto& [id, call] : pending_) all.push_back(call);
    pending_.clear();
    waiting_.clear();
    for (auto& call : all) {
      ++call->epoch;
      call->timer->cancel();
      call->done(Error(absl::StatusCode::kCancelled, reason::kClientClosed,
                       StrCat(Prefix(), ": the client closed before the unit answered")));
    }
  }

  const std::string name_;
  const std::string endpoint_;
  const std::string host_;
  const std::string port_;
  const UnitClientOptions options_;

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::socket socket_;
  std::unique_ptr<TlsClientStream> tls_stream_;  // with options_.tls: this connection's
  tcp::resolver resolver_;
  asio::steady_timer connect_timer_;

  // Owned by thread_.
  ConnState state_ = ConnState::kDisconnected;
  bool shutting_down_ = false;
  bool connect_timed_out_ = false;
  bool writing_ = false;
  uint64_t generation_ = 0;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<PendingCall>> pending_;
  std::deque<std::shared_ptr<PendingCall>> waiting_;  // submitted while not connected
  std::deque<std::string> write_queue_;
  // The unit's id-0 answer on the current connection, until it closes.
  std::optional<v1::Response> connection_refusal_;
  std::string write_error_;  // set when a write failed on the current connection
  static constexpr size_t kReadChunk = 64 * 1024;
  ReadBuffer read_buf_;

  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<UnitClient>> UnitClient::Create(std::string name,
                                                               std::string endpoint,
                                                               UnitClientOptions options) {
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadEndpoint,
                 StrCat("unit ", name, ": endpoint '", endpoint, "' is not HOST:PORT"));
  }
  std::string host = endpoint.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port = endpoint.substr(colon + 1);
  auto impl = std::make_unique<Impl>(std::move(name), std::move(endpoint), std::move(host),
                                     std::move(port), options);
  return std::unique_ptr<UnitClient>(new UnitClient(std::move(impl)));
}

UnitClient::UnitClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UnitClient::~UnitClient() = default;

const std::string& UnitClient::name() const { return impl_->name(); }
const std::string& UnitClient::endpoint() const { return impl_->endpoint(); }

void UnitClient::CallAsync(v1::Request request, Callback done) {
  impl_->CallAsync(std::move(request), std::move(done));
}

}  // namespace hsmsim::host

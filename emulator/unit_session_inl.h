// The definitions of BasicUnitSession<Stream> (emulator/unit_session.h).
// Included only by unit_session.cc (plaintext) and unit_session_tls.cc (TLS),
// which instantiate it; nothing else includes it.
#ifndef HSMSIM_EMULATOR_UNIT_SESSION_INL_H_
#define HSMSIM_EMULATOR_UNIT_SESSION_INL_H_

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "common/check.h"
#include "common/read_buffer.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "emulator/unit_session.h"
#include "firmware/crypto_unit.h"
#include "proto/wire/frame_codec.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::emulator {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace session_internal {

// Bytes asked of the socket per read when no frame size is known yet, and
// the most asked at once while a large body arrives (the buffer grows as
// data comes, within the capacity reserved for the frame).
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxReadChunk = 1024 * 1024;
// A read buffer above this capacity is given back once its frame is cut, so
// an idle connection does not keep a large frame's buffer.
constexpr size_t kKeptBufferCapacity = 2 * kMaxReadChunk;
// Frames gathered into one write.
constexpr size_t kMaxWriteBatch = 64;
// How often a reader waiting for memory budget looks again.
constexpr std::chrono::milliseconds kBudgetPoll{5};

// A response frame, or no frame and what to do instead.
struct Answer {
  Disposition disposition = Disposition::kReply;
  std::string frame;
};

// IsPlaintextPeer is true when a TLS handshake failed because the peer's
// first bytes are not TLS (defined in unit_session_tls.cc).
bool IsPlaintextPeer(const boost::system::error_code& ec);

inline asio::awaitable<Answer> RunOnPool(RequestDispatcher* dispatcher, v1::Request request) {
  DispatchOutcome outcome = dispatcher->Serve(request);
  if (outcome.disposition != Disposition::kReply) co_return Answer{outcome.disposition, {}};
  co_return Answer{Disposition::kReply, wire::EncodeFrame(outcome.response)};
}

}  // namespace session_internal

using namespace session_internal;  // NOLINT

template <class Stream>
BasicUnitSession<Stream>::BasicUnitSession(Stream socket, asio::thread_pool& pool,
                                           RequestDispatcher& dispatcher, FrameBudget& budget,
                                           SessionConfig config)
    : socket_(std::move(socket)),
      read_timer_(socket_.get_executor()),
      write_timer_(socket_.get_executor()),
      room_timer_(socket_.get_executor()),
      pool_(pool),
      dispatcher_(dispatcher),
      budget_(budget),
      config_(config) {
  boost::system::error_code ec;
  tcp::endpoint remote = socket_.lowest_layer().remote_endpoint(ec);
  peer_ = ec ? std::string("unknown peer")
             : remote.address().to_string() + ":" + std::to_string(remote.port());
}

template <class Stream>
BasicUnitSession<Stream>::~BasicUnitSession() {
  // Every path drops what it held; this only covers coroutines destroyed
  // without resuming (the io_context stopped under them).
  if (held_bytes_ > 0) budget_.Release(held_bytes_);
}

template <class Stream>
void BasicUnitSession<Stream>::Start() {
  spdlog::debug("connection from {} opened", peer_);
  asio::co_spawn(socket_.get_executor(), ReadLoop(this->shared_from_this()), asio::detached);
}

template <class Stream>
void BasicUnitSession<Stream>::Close() {
  asio::post(socket_.get_executor(),
             [self = this->shared_from_this()] { self->CloseNow("the unit is shutting down"); });
}

template <class Stream>
struct BasicUnitSession<Stream>::ReadState {
  // Grown before each read without zero-filling (ReadBuffer), shrunk to what
  // the read brought.
  ReadBuffer buf;
  size_t begin = 0;  // bytes of `buf` already consumed
  // A frame must arrive whole within read_timeout of its first byte: a
  // deadline per frame, not per read, so a client that trickles a byte at a
  // time cannot hold a connection (and its buffer) forever.
  std::optional<std::chrono::steady_clock::time_point> frame_deadline;

  absl::Span<const uint8_t> Available() const {
    return absl::Span<const uint8_t>(buf.data() + begin, buf.size() - begin);
  }

  // Compact drops the consumed bytes.
  void Compact() {
    if (begin == 0) return;
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(begin));
    begin = 0;
  }

  // Consume cuts a frame of `frame_size` bytes off the front, and gives a
  // large buffer back (the request holds its own copy now).
  void Consume(size_t frame_size) {
    begin += frame_size;
    if (buf.capacity() > kKeptBufferCapacity) {
      ReadBuffer rest(buf.begin() + static_cast<std::ptrdiff_t>(begin), buf.end());
      buf.swap(rest);
      begin = 0;
    }
    frame_deadline.reset();
  }
};

template <class Stream>
asio::awaitable<absl::Status> BasicUnitSession<Stream>::HoldFrame(
    std::shared_ptr<BasicUnitSession> self, ReadState& state, size_t frame_size) {
  if (!state.frame_deadline.has_value()) {
    state.frame_deadline = std::chrono::steady_clock::now() + self->config_.read_timeout;
  }
  absl::Status got = co_await ReserveFrame(self, frame_size, *state.frame_deadline);
  if (!got.ok()) co_return got;
  // The peer could not send while the unit had no memory for it: the
  // frame's deadline counts from when it may.
  state.frame_deadline = std::chrono::steady_clock::now() + self->config_.read_timeout;
  if (frame_size > kReadChunk && state.buf.capacity() - state.begin < frame_size + kReadChunk) {
    // The budget allows the whole frame: size the buffer once, with room for
    // the next frame's first chunk, instead of letting it double on the way
    // (which would use up to twice the frame).
    state.Compact();
    state.buf.reserve(frame_size + kReadChunk);
  }
  co_return absl::OkStatus();
}

template <class Stream>
asio::awaitable<bool> BasicUnitSession<Stream>::ReadMore(std::shared_ptr<BasicUnitSession> self,
                                                         ReadState& state, size_t frame_size) {
  ReadBuffer& buf = state.buf;
  state.Compact();
  const bool mid_frame = !buf.empty();
  size_t want = kReadChunk;
  if (frame_size > buf.size()) {
    want = std::clamp(frame_size - buf.size(), kReadChunk, kMaxReadChunk);
  }
  const size_t old_size = buf.size();
  buf.resize(old_size + want);
  auto target = asio::buffer(buf.data() + old_size, want);

  boost::system::error_code ec;
  size_t n = 0;
  if (mid_frame) {
    if (!state.frame_deadline.has_value()) {
      state.frame_deadline = std::chrono::steady_clock::now() + self->config_.read_timeout;
    }
    self->read_timer_.expires_at(*state.frame_deadline);
    auto [order, read_ec, read_n, timer_ec] =
        co_await asio::experimental::make_parallel_group(
            self->socket_.async_read_some(target, asio::deferred),
            self->read_timer_.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_ec;
    if (order[0] == 1) {
      if (self->closed_) co_return false;  // the timer was cancelled by CloseNow()
      spdlog::warn("connection from {}: no complete frame within {} ms, closing", self->peer_,
                   self->config_.read_timeout.count());
      self->CloseNow("read timeout");
      co_return false;
    }
    ec = read_ec;
    n = read_n;
  } else {
    std::tie(ec, n) =
        co_await self->socket_.async_read_some(target, asio::as_tuple(asio::use_awaitable));
  }
  buf.resize(old_size + n);
  if (!ec) co_return true;
  if (self->closed_) co_return false;
  if (ec == asio::error::eof) {
    if (!buf.empty()) {
      spdlog::debug("connection from {}: closed by the peer inside a frame ({} bytes)", self->peer_,
                    buf.size());
    }
    self->reader_done_ = true;
    self->MaybeFinish();
  } else {
    spdlog::debug("connection from {}: read failed: {}", self->peer_, ec.message());
    self->CloseNow("read error");
  }
  co_return false;
}

template <class Stream>
asio::awaitable<void> BasicUnitSession<Stream>::ReadLoop(std::shared_ptr<BasicUnitSession> self) {
  ReadState state;
  // Budget held for the frame at the front of the buffer: 0 until its
  // header is decoded, then handed to Serve with the parsed request.
  size_t reserved = 0;
  absl::Cleanup release_reserved = [&self, &reserved] { self->Drop(reserved); };
  if constexpr (kTls) {
    if (!co_await Handshake(self)) co_return;
  }
  for (;;) {
    if (self->closed_) co_return;
    if (reserved == 0 && self->Unanswered() >= kMaxUnansweredPerConnection) {
      if (!co_await WaitForRoom(self)) co_return;
      // The peer's next frame waited for us, not the other way round.
      state.frame_deadline.reset();
    }
    auto header = wire::DecodeFrameHeader(state.Available(), self->config_.max_frame_bytes);
    if (!header.ok()) {
      // Refused before the body is read or allocated.
      self->FailConnection(header.status());
      co_return;
    }
    size_t frame_size = 0;
    if (header->has_value()) {
      frame_size = (*header)->prefix_size + (*header)->body_size;
      if (reserved == 0) {
        absl::Status got = co_await HoldFrame(self, state, frame_size);
        if (!got.ok()) {
          if (!self->closed_) self->FailConnection(got);
          co_return;
        }
        reserved = frame_size;
      }
      const absl::Span<const uint8_t> avail = state.Available();
      if (avail.size() >= frame_size) {
        v1::Request request;
        absl::Status parsed = wire::ParseFrameBody(
            avail.subspan((*header)->prefix_size, (*header)->body_size), &request);
        if (!parsed.ok()) {
          self->FailConnection(parsed);
          co_return;
        }
        state.Consume(frame_size);
        ++self->in_flight_;
        asio::co_spawn(self->socket_.get_executor(),
                       Serve(self, std::move(request), std::exchange(reserved, 0)), asio::detached);
        continue;
      }
    }
    if (!co_await ReadMore(self, state, frame_size)) co_return;
  }
}

template <class Stream>
template <class S>
asio::awaitable<bool> BasicUnitSession<Stream>::Handshake(std::shared_ptr<BasicUnitSession> self) {
  // A client that opens TCP and never completes the handshake is closed
  // like one that never completes a frame.
  self->read_timer_.expires_after(self->config_.read_timeout);
  auto [order, ec, timer_ec] =
      co_await asio::experimental::make_parallel_group(
          self->socket_.async_handshake(S::server, asio::deferred),
          self->read_timer_.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  (void)timer_ec;
  if (self->closed_) co_return false;
  if (order[0] == 1) {
    spdlog::warn("connection from {}: no TLS handshake within {} ms, closing", self->peer_,
                 self->config_.read_timeout.count());
    self->CloseNow("TLS handshake timeout");
    co_return false;
  }
  if (ec) {
    spdlog::warn("connection from {}: TLS handshake failed: {}", self->peer_, ec.message());
    if (IsPlaintextPeer(ec)) {
      // Not TLS at all: most likely a plaintext hsmsim client. Tell it in
      // its own framing, so the operator reads why instead of a closed
      // connection.
      v1::Response response;
      response.set_id(0);
      *response.mutable_status() = wire::ToWireStatus(
          Error(absl::StatusCode::kUnavailable, reason::kTlsHandshakeFailed,
                "this unit speaks mutual TLS only, and the client sent plaintext: connect with "
                "the fleet's TLS files (fleet.json \"tls\"; docs/tls.md)"));
      const std::string frame = wire::EncodeFrame(response);
      co_await asio::async_write(self->socket_.next_layer(), asio::buffer(frame),
                                 asio::as_tuple(asio::use_awaitable));
    }
    self->CloseNow("TLS handshake failed");
    co_return false;
  }
  spdlog::debug("connection from {}: TLS handshake done", self->peer_);
  co_return true;
}

template <class Stream>
asio::awaitable<absl::Status> BasicUnitSession<Stream>::ReserveFrame(
    std::shared_ptr<BasicUnitSession> self, size_t frame_bytes,
    std::chrono::steady_clock::time_point deadline) {
  bool logged = false;
  for (;;) {
    if (self->closed_) {
      co_return Error(absl::StatusCode::kCancelled, reason::kConnectionClosed, "connection closed");
    }
    if (self->TryHold(frame_bytes)) co_return absl::OkStatus();
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      co_return Error(
          absl::StatusCode::kResourceExhausted, reason::kMemoryBudgetExhausted,
          StrCat("frame of ", frame_bytes, " bytes got no memory within ",
                 self->config_.read_timeout.count(), " ms: this connection holds ",
                 self->held_bytes_, " bytes (its share is ", self->budget_.connection_share(),
                 ") and the unit has ", self->budget_.used(), " of its ", self->budget_.limit(),
                 " budget bytes in use (--memory-budget-bytes)"));
    }
    if (!logged) {
      spdlog::debug(
          "connection from {}: frame of {} bytes waits for memory (connection holds {}, unit {} "
          "of {})",
          self->peer_, frame_bytes, self->held_bytes_, self->budget_.used(), self->budget_.limit());
      logged = true;
    }
    self->read_timer_.expires_after(
        std::min<std::chrono::steady_clock::duration>(kBudgetPoll, deadline - now));
    co_await self->read_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

template <class Stream>
asio::awaitable<bool> BasicUnitSession<Stream>::WaitForRoom(
    std::shared_ptr<BasicUnitSession> self) {
  spdlog::debug("connection from {}: {} requests unanswered, reading paused", self->peer_,
                self->Unanswered());
  while (!self->closed_ && self->Unanswered() >= kMaxUnansweredPerConnection) {
    self->waiting_for_room_ = true;
    self->room_timer_.expires_at(asio::steady_timer::time_point::max());
    co_await self->room_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    self->waiting_for_room_ = false;
  }
  co_return !self->closed_;
}

template <class Stream>
void BasicUnitSession<Stream>::WakeReader() {
  if (waiting_for_room_ && Unanswered() < kMaxUnansweredPerConnection) room_timer_.cancel();
}

template <class Stream>
bool BasicUnitSession<Stream>::TryHold(size_t bytes) {
  // A connection holding nothing may always ask for one frame; otherwise it
  // must stay within its share.
  if (held_bytes_ > 0 && held_bytes_ + bytes > budget_.connection_share()) return false;
  if (!budget_.TryReserve(bytes)) return false;
  held_bytes_ += bytes;
  return true;
}

template <class Stream>
void BasicUnitSession<Stream>::Hold(size_t bytes) {
  budget_.Add(bytes);
  held_bytes_ += bytes;
}

template <class Stream>
void BasicUnitSession<Stream>::Drop(size_t bytes) {
  if (bytes == 0) return;
  HSMSIM_CHECK(bytes <= held_bytes_);
  held_bytes_ -= bytes;
  budget_.Release(bytes);
}

template <class Stream>
asio::awaitable<void> BasicUnitSession<Stream>::Serve(std::shared_ptr<BasicUnitSession> self,
                                                      v1::Request request, size_t request_bytes) {
  const uint64_t id = request.id();
  Answer answer = co_await asio::co_spawn(self->pool_.get_executor(),
                                          RunOnPool(&self->dispatcher_, std::move(request)),
                                          asio::use_awaitable);
  --self->in_flight_;
  self->Drop(request_bytes);
  switch (answer.disposition) {
    case Disposition::kReply:
      self->Enqueue(std::move(answer.frame));
      break;
    case Disposition::kHang:
      spdlog::warn("connection from {}: request {} will never be answered (injected hang)",
                   self->peer_, id);
      self->WakeReader();
      break;
    case Disposition::kDropConnection:
      self->CloseNow("injected fault: connection dropped");
      co_return;
  }
  self->MaybeFinish();
}

template <class Stream>
void BasicUnitSession<Stream>::Enqueue(std::string frame) {
  if (closed_) {
    WipeString(&frame);
    return;
  }
  Hold(frame.size());
  ++unwritten_replies_;
  write_queue_.push_back(std::move(frame));
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(socket_.get_executor(), WriteLoop(this->shared_from_this()), asio::detached);
  }
}

template <class Stream>
asio::awaitable<void> BasicUnitSession<Stream>::WriteLoop(std::shared_ptr<BasicUnitSession> self) {
  std::vector<std::string> batch;
  std::vector<asio::const_buffer> buffers;
  while (!self->closed_ && !self->write_queue_.empty()) {
    batch.clear();
    buffers.clear();
    size_t batch_bytes = 0;
    while (!self->write_queue_.empty() && batch.size() < kMaxWriteBatch) {
      batch_bytes += self->write_queue_.front().size();
      batch.push_back(std::move(self->write_queue_.front()));
      self->write_queue_.pop_front();
    }
    for (const std::string& frame : batch) buffers.push_back(asio::buffer(frame));
    // A peer that does not take its replies would hold their memory (and
    // its share of the budget) forever: the write has the read timeout too.
    self->write_timer_.expires_after(self->config_.read_timeout);
    auto [order, ec, n, timer_ec] =
        co_await asio::experimental::make_parallel_group(
            asio::async_write(self->socket_, buffers, asio::deferred),
            self->write_timer_.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)n;
    (void)timer_ec;
    // Responses may hold unwrapped data keys.
    for (std::string& frame : batch) WipeString(&frame);
    self->Drop(batch_bytes);
    self->unwritten_replies_ -= batch.size();
    self->WakeReader();
    if (order[0] == 1) {
      if (!self->closed_) {
        spdlog::warn("connection from {}: {} bytes of replies not taken within {} ms, closing",
                     self->peer_, batch_bytes, self->config_.read_timeout.count());
      }
      self->CloseNow("write timeout");
      break;
    }
    if (ec) {
      if (!self->closed_) {
        spdlog::debug("connection from {}: write failed: {}", self->peer_, ec.message());
      }
      self->CloseNow("write error");
      break;
    }
  }
  self->writing_ = false;
  self->MaybeFinish();
}

template <class Stream>
void BasicUnitSession<Stream>::FailConnection(const absl::Status& status) {
  spdlog::warn("connection from {}: {}; answering and closing", peer_,
               std::string(status.message()));
  v1::Response response;
  response.set_id(0);
  *response.mutable_status() = wire::ToWireStatus(status);
  reader_done_ = true;
  close_after_flush_ = true;
  Enqueue(wire::EncodeFrame(response));
}

template <class Stream>
void BasicUnitSession<Stream>::MaybeFinish() {
  if (closed_ || writing_ || !write_queue_.empty()) return;
  if (close_after_flush_) {
    CloseNow("protocol error");
  } else if (reader_done_ && in_flight_ == 0) {
    CloseNow("closed by the peer");
  }
}

template <class Stream>
void BasicUnitSession<Stream>::CloseNow(const char* why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
  socket_.lowest_layer().close(ignored);
  read_timer_.cancel();
  write_timer_.cancel();
  room_timer_.cancel();
  size_t queued_bytes = 0;
  for (std::string& frame : write_queue_) {
    queued_bytes += frame.size();
    WipeString(&frame);
  }
  unwritten_replies_ -= write_queue_.size();
  write_queue_.clear();
  Drop(queued_bytes);
  spdlog::debug("connection from {} closed: {}", peer_, why);
}

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_UNIT_SESSION_INL_H_

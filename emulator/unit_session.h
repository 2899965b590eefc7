// UnitSession: one client connection of hsmsim-unit. Owns the socket.
//
// BasicUnitSession<Stream> is the session over a plaintext TCP socket
// (PlainUnitSession, unit_session.cc) or over a TLS stream
// (emulator/unit_tls.h, unit_session_tls.cc), with the same frames: a TLS
// session first completes the server handshake, within the read timeout,
// then reads frames as a plaintext one does.
//
// The reader decodes frames (wire::DecodeFrameHeader / ParseFrameBody) and
// hands every request to the worker pool at once, without waiting for the
// previous one: many requests are in flight per connection. Responses are
// written in completion order by a single writer, so two writes never overlap.
// A length prefix above the maximum, or a body that is not a Request, is
// answered with a Response of id 0 carrying the error, then the connection is
// closed; other connections are never affected.
//
// Memory: every frame is reserved in the unit's FrameBudget as soon as its
// length prefix is decoded and held until the request is answered; every
// reply from when it is queued until it is written. The reader waits (polling
// every few ms) while the budget is full, or while this connection already
// holds more than its share (FrameBudget::connection_share) and the new frame
// would go past it, so a client that never reads its replies stops being
// read. A frame that gets no budget before its read deadline is answered
// with id 0, RESOURCE_EXHAUSTED (MEMORY_BUDGET_EXHAUSTED), then the
// connection is closed. A batch of replies not taken by the peer within the
// read timeout closes the connection, so its memory is given back.
//
// Count: a connection has at most kMaxUnansweredPerConnection requests
// unanswered (being served, or answered and the reply not yet written). At
// the cap the reader stops reading, the bytes stay in the peer's socket, and
// it resumes as soon as replies are written. Tiny requests therefore cannot
// pile up work and replies whose memory the byte budget does not see (a
// 5-byte GetInfo frame costs a coroutine, a worker task and a reply).
//
// Thread-safety: all state lives on the socket's strand; Close() may be
// called from any thread.
#ifndef HSMSIM_EMULATOR_UNIT_SESSION_H_
#define HSMSIM_EMULATOR_UNIT_SESSION_H_

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "emulator/frame_budget.h"
#include "emulator/request_dispatcher.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::emulator {

// The most requests one connection may have unanswered before the session
// stops reading from it (Beast's queue_limit). Hosts keep a few batches in
// flight per unit; 256 is far above that.
inline constexpr size_t kMaxUnansweredPerConnection = 256;

struct SessionConfig {
  size_t max_frame_bytes = 0;
  // How long a frame may take to arrive once its first byte came (a
  // deadline per frame, not per read). A connection idle between frames is
  // kept open: a host holds one connection per unit for its whole life.
  // Also bounds the wait for memory budget and each write of replies.
  std::chrono::milliseconds read_timeout{30000};
};

// UnitSession is what the server holds of a session, whatever its stream.
class UnitSession {
 public:
  virtual ~UnitSession() = default;
  // Start begins reading (after the TLS handshake, for TLS). Call once.
  virtual void Start() = 0;
  // Close closes the connection now; responses still in flight are dropped.
  virtual void Close() = 0;
};

template <class Stream>
class BasicUnitSession final : public UnitSession,
                               public std::enable_shared_from_this<BasicUnitSession<Stream>> {
 public:
  // `socket` must use a strand executor. `pool`, `dispatcher` and `budget`
  // must outlive the session (the server joins the pool after the sessions
  // end).
  BasicUnitSession(Stream socket, boost::asio::thread_pool& pool, RequestDispatcher& dispatcher,
                   FrameBudget& budget, SessionConfig config);
  // Gives back to the budget whatever this session still holds.
  ~BasicUnitSession() override;

  BasicUnitSession(const BasicUnitSession&) = delete;
  BasicUnitSession& operator=(const BasicUnitSession&) = delete;

  void Start() override;
  void Close() override;

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, boost::asio::ip::tcp::socket>;
  // The reader's buffer and the deadline of the frame being read.
  struct ReadState;

  // Handshake completes the TLS server handshake within the read timeout.
  // Returns false (the connection closed) when it fails or times out. A
  // member template, so the plaintext instantiation never compiles it.
  template <class S = Stream>
  static boost::asio::awaitable<bool> Handshake(std::shared_ptr<BasicUnitSession> self);
  // ReadLoop cuts frames from the socket and spawns Serve for each, until
  // the peer closes, an error, or Close.
  static boost::asio::awaitable<void> ReadLoop(std::shared_ptr<BasicUnitSession> self);
  // HoldFrame reserves the budget for a frame of `frame_size` bytes whose
  // header was just decoded (ReserveFrame) and sizes the buffer for it.
  // Returns ReserveFrame's error.
  static boost::asio::awaitable<absl::Status> HoldFrame(std::shared_ptr<BasicUnitSession> self,
                                                        ReadState& state, size_t frame_size);
  // ReadMore reads the next bytes into the buffer (`frame_size` > 0: of a
  // frame that size), under the frame's deadline once a frame has begun.
  // Returns false when reading is over: the peer closed, a read failed or
  // timed out (the session is then closed or finishing).
  static boost::asio::awaitable<bool> ReadMore(std::shared_ptr<BasicUnitSession> self,
                                               ReadState& state, size_t frame_size);
  // ReserveFrame waits until `frame_bytes` fit both this connection's share
  // and the unit's budget, then holds them. Returns RESOURCE_EXHAUSTED
  // (MEMORY_BUDGET_EXHAUSTED) naming the numbers at `deadline`, CANCELLED
  // when the connection closes meanwhile.
  static boost::asio::awaitable<absl::Status> ReserveFrame(
      std::shared_ptr<BasicUnitSession> self, size_t frame_bytes,
      std::chrono::steady_clock::time_point deadline);
  // WaitForRoom waits while this connection has kMaxUnansweredPerConnection
  // requests unanswered. Returns false when the connection closed meanwhile.
  static boost::asio::awaitable<bool> WaitForRoom(std::shared_ptr<BasicUnitSession> self);
  static boost::asio::awaitable<void> Serve(std::shared_ptr<BasicUnitSession> self,
                                            v1::Request request, size_t request_bytes);
  static boost::asio::awaitable<void> WriteLoop(std::shared_ptr<BasicUnitSession> self);

  // The rest run on the strand only.
  void Enqueue(std::string frame);
  void FailConnection(const absl::Status& status);
  void MaybeFinish();
  void CloseNow(const char* why);
  // TryHold takes `bytes` from the budget if this connection may hold them.
  bool TryHold(size_t bytes);
  // Hold takes `bytes` even past the budget (a reply that exists already).
  void Hold(size_t bytes);
  // Drop gives back `bytes` held by this connection.
  void Drop(size_t bytes);
  // Unanswered is the count WaitForRoom compares with the cap.
  size_t Unanswered() const { return in_flight_ + unwritten_replies_; }
  // WakeReader resumes a reader waiting in WaitForRoom.
  void WakeReader();

  Stream socket_;
  boost::asio::steady_timer read_timer_;
  boost::asio::steady_timer write_timer_;
  boost::asio::steady_timer room_timer_;  // WaitForRoom sleeps on it
  boost::asio::thread_pool& pool_;
  RequestDispatcher& dispatcher_;
  FrameBudget& budget_;
  const SessionConfig config_;
  std::string peer_;

  std::deque<std::string> write_queue_;
  bool writing_ = false;
  bool reader_done_ = false;        // no more requests will be read
  bool close_after_flush_ = false;  // a protocol error was queued
  bool closed_ = false;
  size_t in_flight_ = 0;
  size_t unwritten_replies_ = 0;  // queued or being written
  bool waiting_for_room_ = false;
  size_t held_bytes_ = 0;  // of budget_: requests in flight, replies unwritten
};

// The plaintext session, instantiated in unit_session.cc.
using PlainUnitSession = BasicUnitSession<boost::asio::ip::tcp::socket>;
extern template class BasicUnitSession<boost::asio::ip::tcp::socket>;

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_UNIT_SESSION_H_

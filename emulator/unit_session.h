// UnitSession: one client connection of hsmsim-unit. Owns the socket.
//
// The reader decodes frames (wire::DecodeFrameHeader / ParseFrameBody) and
// hands every request to the worker pool at once, without waiting for the
// previous one: many requests are in flight per connection. Responses are
// written in completion order by a single writer, so two writes never overlap.
// A length prefix above the maximum, or a body that is not a Request, is
// answered with a Response of id 0 carrying the error, then the connection is
// closed; other connections are never affected.
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

#include "absl/status/status.h"
#include "emulator/request_dispatcher.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::emulator {

struct SessionConfig {
  size_t max_frame_bytes = 0;
  // How long a frame may take to arrive once its first byte came (a
  // deadline per frame, not per read). A connection idle between frames is
  // kept open: a host holds one connection per unit for its whole life.
  std::chrono::milliseconds read_timeout{30000};
};

class UnitSession : public std::enable_shared_from_this<UnitSession> {
 public:
  // `socket` must use a strand executor. `pool` and `dispatcher` must
  // outlive the session (the server joins the pool after the sessions end).
  UnitSession(boost::asio::ip::tcp::socket socket, boost::asio::thread_pool& pool,
              RequestDispatcher& dispatcher, SessionConfig config);

  UnitSession(const UnitSession&) = delete;
  UnitSession& operator=(const UnitSession&) = delete;

  // Start begins reading. Call once.
  void Start();

  // Close closes the connection now; responses still in flight are dropped.
  void Close();

 private:
  static boost::asio::awaitable<void> ReadLoop(std::shared_ptr<UnitSession> self);
  static boost::asio::awaitable<void> Serve(std::shared_ptr<UnitSession> self, v1::Request request);
  static boost::asio::awaitable<void> WriteLoop(std::shared_ptr<UnitSession> self);

  // The rest run on the strand only.
  void Enqueue(std::string frame);
  void FailConnection(const absl::Status& status);
  void MaybeFinish();
  void CloseNow(const char* why);

  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer read_timer_;
  boost::asio::thread_pool& pool_;
  RequestDispatcher& dispatcher_;
  const SessionConfig config_;
  std::string peer_;

  std::deque<std::string> write_queue_;
  bool writing_ = false;
  bool reader_done_ = false;        // no more requests will be read
  bool close_after_flush_ = false;  // a protocol error was queued
  bool closed_ = false;
  size_t in_flight_ = 0;
};

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_UNIT_SESSION_H_

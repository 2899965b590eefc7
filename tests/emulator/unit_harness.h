// Helpers of the tests that run the real hsmsim-unit process: UnitProcess
// (tests/support/unit_process.h with the tests' flags),
// Connection (a blocking loopback client speaking frames) and GetInfo.
#ifndef HSMSIM_TESTS_EMULATOR_UNIT_HARNESS_H_
#define HSMSIM_TESTS_EMULATOR_UNIT_HARNESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "hsmsim/v1/unit.pb.h"
#include "proto/wire/frame_codec.h"
#include "tests/support/unit_process.h"

#ifndef HSMSIM_UNIT_BINARY
#error "HSMSIM_UNIT_BINARY must name the hsmsim-unit binary"
#endif

namespace hsmsim::emulator::testing {

using namespace std::chrono_literals;  // NOLINT

inline std::string ReadAll(const std::string& path) { return test_support::ReadWholeFile(path); }

inline constexpr auto kWaitLimit = test_support::kUnitWaitLimit;

// UnitProcess is the emulator tests' hsmsim-unit: debug logs, two workers,
// `extra_args` after those; SIGKILLed and reaped on destruction.
class UnitProcess : public test_support::UnitProcess {
 public:
  UnitProcess(const std::string& state_dir, const std::string& work_dir,
              std::vector<std::string> extra_args = {})
      : test_support::UnitProcess(Options(state_dir, work_dir, std::move(extra_args))) {}

 private:
  static test_support::UnitProcessOptions Options(const std::string& state_dir,
                                                  const std::string& work_dir,
                                                  std::vector<std::string> extra_args) {
    test_support::UnitProcessOptions options;
    options.binary = HSMSIM_UNIT_BINARY;
    options.state_dir = state_dir;
    options.work_dir = work_dir;
    options.args = {"--log-level", "debug", "--workers", "2"};
    options.args.insert(options.args.end(), extra_args.begin(), extra_args.end());
    return options;
  }
};

// Connection is a blocking loopback socket with a receive timeout.
class Connection {
 public:
  explicit Connection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{};
    tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kWaitLimit).count();
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }

  // SetReceiveTimeout bounds each later receive; timed_out() then tells a
  // silent peer from a closed one.
  void SetReceiveTimeout(std::chrono::milliseconds limit) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(limit.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((limit.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  bool timed_out() const { return timed_out_; }

  // SetSendTimeout bounds each later send: a peer that stops reading makes
  // SendBytes return false instead of blocking forever.
  void SetSendTimeout(std::chrono::milliseconds limit) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(limit.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((limit.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }

  bool SendBytes(std::string_view bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }
  bool Send(const v1::Request& request) { return SendBytes(wire::EncodeFrame(request)); }

  // Receive returns the next Response, or nullopt when the peer closed the
  // connection (or the wait limit passed).
  std::optional<v1::Response> Receive() {
    for (;;) {
      auto header = wire::DecodeFrameHeader(
          absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size()),
          wire::kDefaultMaxFrameBytes);
      if (!header.ok()) return std::nullopt;
      if (header->has_value()) {
        size_t total = (*header)->prefix_size + (*header)->body_size;
        if (buf_.size() >= total) {
          v1::Response response;
          if (!response.ParseFromArray(buf_.data() + (*header)->prefix_size,
                                       static_cast<int>((*header)->body_size))) {
            return std::nullopt;
          }
          buf_.erase(0, total);
          return response;
        }
      }
      if (!ReadMore()) return std::nullopt;
    }
  }

  // WaitForClose is true when the peer closes the connection (EOF or reset)
  // without sending anything more.
  bool WaitForClose() {
    char c;
    ssize_t n;
    do {
      n = ::recv(fd_, &c, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0) return true;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) timed_out_ = true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
  }

  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

 private:
  bool ReadMore() {
    char chunk[4096];
    ssize_t n;
    do {
      n = ::recv(fd_, chunk, sizeof(chunk), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) timed_out_ = true;
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool timed_out_ = false;
  std::string buf_;
};

inline v1::Request GetInfoRequest(uint64_t id) {
  v1::Request request;
  request.set_id(id);
  request.mutable_get_info();
  return request;
}

// PaddedGetInfoFrame returns a GetInfo request frame of `frame_bytes` bytes
// (or a byte or two more when a length varint grows), padded with an unknown field (field 1000,
// bytes) that the unit keeps while the request is in flight.
inline std::string PaddedGetInfoFrame(uint64_t id, size_t frame_bytes) {
  auto varint = [](size_t v) {
    std::string out;
    for (;; v >>= 7) {
      out += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      if (v < 0x80) return out;
    }
  };
  // Field 1000, length-delimited: unknown to every message of hsmsim.v1.
  const std::string head = GetInfoRequest(id).SerializeAsString() + "\xc2\x3e";
  size_t pad = frame_bytes > head.size() + 10 ? frame_bytes - head.size() - 10 : 0;
  for (;;) {
    std::string body = head + varint(pad) + std::string(pad, 'p');
    std::string frame = varint(body.size()) + body;
    if (frame.size() >= frame_bytes || pad == 0) return frame;
    pad += frame_bytes - frame.size();
  }
}

// GetInfo asks for the unit's info on a new connection.
inline std::optional<v1::GetInfoResponse> GetInfo(uint16_t port) {
  Connection conn(port);
  if (!conn.connected() || !conn.Send(GetInfoRequest(1))) return std::nullopt;
  auto response = conn.Receive();
  if (!response || response->id() != 1 || response->status().code() != 0 ||
      !response->has_get_info()) {
    return std::nullopt;
  }
  return response->get_info();
}

}  // namespace hsmsim::emulator::testing

#endif  // HSMSIM_TESTS_EMULATOR_UNIT_HARNESS_H_

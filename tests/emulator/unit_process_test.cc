// Integration tests of the real hsmsim-unit process over loopback.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hsmsim/v1/unit.pb.h"
#include "proto/wire/frame_codec.h"
#include "tests/emulator/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::emulator::testing::TempDir;
using ::testing::HasSubstr;
using namespace std::chrono_literals;  // NOLINT

// Generous: waiting ends as soon as the condition holds.
constexpr auto kWaitLimit = 20s;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// UnitProcess runs hsmsim-unit; its destructor SIGKILLs and reaps it if it is
// still running, so no test leaks a process.
class UnitProcess {
 public:
  UnitProcess(const std::string& state_dir, const std::string& work_dir,
              std::vector<std::string> extra_args = {})
      : port_file_(work_dir + "/port-" + std::to_string(++counter_)),
        stderr_file_(work_dir + "/stderr-" + std::to_string(counter_)) {
    std::vector<std::string> args = {
        HSMSIM_UNIT_BINARY, "--listen",    "127.0.0.1:0", "--port-file", port_file_, "--state-dir",
        state_dir,          "--log-level", "debug",       "--workers",   "2"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(stderr_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);  // --help prints to stdout
        ::dup2(fd, STDERR_FILENO);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  UnitProcess(const UnitProcess&) = delete;
  UnitProcess& operator=(const UnitProcess&) = delete;
  ~UnitProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }

  // WaitForPort returns the port once the port file appears, or nullopt if
  // the process exits first or the wait limit passes.
  std::optional<uint16_t> WaitForPort() {
    auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string text = ReadAll(port_file_);
      if (!text.empty()) return static_cast<uint16_t>(std::stoi(text));
      if (TryReap()) return std::nullopt;
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }

  void Signal(int sig) { ::kill(pid_, sig); }

  // WaitForExit returns the wait status, or nullopt if still running at the
  // wait limit.
  std::optional<int> WaitForExit() {
    auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (TryReap()) return wait_status_;
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }

  // Stderr returns what the process wrote to stderr and stdout.
  std::string Stderr() const { return ReadAll(stderr_file_); }

 private:
  bool TryReap() {
    if (exited_) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      wait_status_ = status;
    }
    return exited_;
  }

  static inline int counter_ = 0;
  std::string port_file_;
  std::string stderr_file_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int wait_status_ = 0;
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
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

v1::Request GetInfoRequest(uint64_t id) {
  v1::Request request;
  request.set_id(id);
  request.mutable_get_info();
  return request;
}

// GetInfo asks for the unit's info on a new connection.
std::optional<v1::GetInfoResponse> GetInfo(uint16_t port) {
  Connection conn(port);
  if (!conn.connected() || !conn.Send(GetInfoRequest(1))) return std::nullopt;
  auto response = conn.Receive();
  if (!response || response->id() != 1 || response->status().code() != 0 ||
      !response->has_get_info()) {
    return std::nullopt;
  }
  return response->get_info();
}

class UnitProcessTest : public ::testing::Test {
 protected:
  std::string StateDir() const { return dir_.Join("state"); }
  TempDir dir_;
};

TEST_F(UnitProcessTest, GetInfoAnswersWithUnitIdInImprintMode) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  auto info = GetInfo(*port);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->unit_id().size(), 16u);
  EXPECT_EQ(info->mode(), v1::MODE_IMPRINT);
  EXPECT_TRUE(std::filesystem::exists(StateDir() + "/unit.state"));
}

TEST_F(UnitProcessTest, PipelinedRequestsAreAllAnswered) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  Connection conn(*port);
  ASSERT_TRUE(conn.connected());
  constexpr uint64_t kRequests = 50;
  std::string frames;
  for (uint64_t id = 100; id < 100 + kRequests; ++id) {
    frames += wire::EncodeFrame(GetInfoRequest(id));
  }
  ASSERT_TRUE(conn.SendBytes(frames));  // all in one go, before any answer
  std::set<uint64_t> ids;
  for (uint64_t i = 0; i < kRequests; ++i) {
    auto response = conn.Receive();
    ASSERT_TRUE(response.has_value()) << "after " << i << " responses";
    EXPECT_EQ(response->status().code(), 0);
    EXPECT_TRUE(response->has_get_info());
    ids.insert(response->id());
  }
  std::set<uint64_t> expected;
  for (uint64_t id = 100; id < 100 + kRequests; ++id) expected.insert(id);
  EXPECT_EQ(ids, expected);
}

TEST_F(UnitProcessTest, OversizedFrameIsRefusedAndOthersKeepWorking) {
  UnitProcess unit(StateDir(), dir_.path(), {"--max-frame-bytes", "1024"});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  Connection other(*port);  // opened before the bad one
  ASSERT_TRUE(other.connected());

  Connection bad(*port);
  ASSERT_TRUE(bad.connected());
  // Prefix announcing 1 GiB; no body follows.
  ASSERT_TRUE(bad.SendBytes(std::string("\x80\x80\x80\x80\x04", 5)));
  auto response = bad.Receive();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->id(), 0u);
  EXPECT_EQ(response->status().code(), 8);  // RESOURCE_EXHAUSTED
  EXPECT_EQ(response->status().reason(), "FRAME_TOO_LARGE");
  EXPECT_TRUE(bad.WaitForClose());

  ASSERT_TRUE(other.Send(GetInfoRequest(5)));
  auto ok = other.Receive();
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->id(), 5u);
  EXPECT_TRUE(GetInfo(*port).has_value());
}

TEST_F(UnitProcessTest, TruncatedFrameThenCloseLeavesUnitServing) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  {
    Connection conn(*port);
    ASSERT_TRUE(conn.connected());
    std::string frame = wire::EncodeFrame(GetInfoRequest(9));
    frame += std::string("\x20", 1) + "only part of a body";  // announces 32 bytes
    ASSERT_TRUE(conn.SendBytes(frame));
    auto first = conn.Receive();  // the complete frame is still answered
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->id(), 9u);
  }  // closed by the client mid-frame
  EXPECT_TRUE(GetInfo(*port).has_value());
}

TEST_F(UnitProcessTest, ZeroLengthFrameIsAnsweredAndConnectionStaysUsable) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  Connection conn(*port);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.SendBytes(std::string("\x00", 1)));
  auto response = conn.Receive();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->id(), 0u);
  EXPECT_NE(response->status().code(), 0);
  EXPECT_EQ(response->status().reason(), "UNKNOWN_REQUEST");

  ASSERT_TRUE(conn.Send(GetInfoRequest(2)));
  auto info = conn.Receive();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->id(), 2u);
  EXPECT_EQ(info->status().code(), 0);
}

TEST_F(UnitProcessTest, GarbageIsRefusedAndUnitKeepsServing) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  for (std::string garbage : {std::string("\x05\xff\xff\xff\xff\xff", 6),  // bad body
                              std::string(16, '\xff'),                     // bad prefix
                              // A whole frame whose body is text.
                              std::string("\x10", 1) + "GET / HTTP/1.1\r\n"}) {
    Connection conn(*port);
    ASSERT_TRUE(conn.connected());
    ASSERT_TRUE(conn.SendBytes(garbage));
    auto response = conn.Receive();
    if (response.has_value()) {
      EXPECT_EQ(response->id(), 0u);
      EXPECT_NE(response->status().code(), 0);
      EXPECT_THAT(response->status().reason(),
                  ::testing::AnyOf("MALFORMED_FRAME", "FRAME_TOO_LARGE"));
      EXPECT_TRUE(conn.WaitForClose());
    }
    EXPECT_TRUE(GetInfo(*port).has_value());
  }
}

TEST_F(UnitProcessTest, StalledPartialFrameIsClosedAfterReadTimeout) {
  UnitProcess unit(StateDir(), dir_.path(), {"--read-timeout-ms", "300"});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  Connection conn(*port);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.SendBytes(std::string("\x20partial", 8)));
  EXPECT_TRUE(conn.WaitForClose());  // the receive timeout is far longer
  EXPECT_TRUE(GetInfo(*port).has_value());
}

TEST_F(UnitProcessTest, StateSurvivesSigkillAfterStateChange) {
  v1::GetInfoResponse before;
  {
    UnitProcess unit(StateDir(), dir_.path());
    auto port = unit.WaitForPort();
    ASSERT_TRUE(port.has_value()) << unit.Stderr();
    auto info = GetInfo(*port);
    ASSERT_TRUE(info.has_value());

    v1::Command command;
    command.set_unit_id(info->unit_id());
    command.set_transaction_counter(info->transaction_counter());
    command.mutable_assign_instance()->set_instance("kms-test-1");
    v1::Request request;
    request.set_id(77);
    request.mutable_signed_command()->set_command(command.SerializeAsString());

    Connection conn(*port);
    ASSERT_TRUE(conn.Send(request));
    auto response = conn.Receive();
    ASSERT_TRUE(response.has_value());
    ASSERT_EQ(response->status().code(), 0) << response->status().message();
    before = response->command().info();
    EXPECT_EQ(before.instance(), "kms-test-1");
    EXPECT_EQ(before.transaction_counter(), info->transaction_counter() + 1);
    unit.Signal(SIGKILL);
    ASSERT_TRUE(unit.WaitForExit().has_value());
  }
  UnitProcess restarted(StateDir(), dir_.path());
  auto port = restarted.WaitForPort();
  ASSERT_TRUE(port.has_value()) << restarted.Stderr();
  auto after = GetInfo(*port);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->unit_id(), before.unit_id());
  EXPECT_EQ(after->instance(), "kms-test-1");
  EXPECT_EQ(after->transaction_counter(), before.transaction_counter());
}

TEST_F(UnitProcessTest, DamagedStateFileStopsTheUnit) {
  {
    UnitProcess unit(StateDir(), dir_.path());
    ASSERT_TRUE(unit.WaitForPort().has_value()) << unit.Stderr();
  }
  const std::string state = StateDir() + "/unit.state";
  std::string bytes = ReadAll(state);
  ASSERT_GT(bytes.size(), 40u);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  {
    std::ofstream out(state, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  UnitProcess unit(StateDir(), dir_.path());
  auto status = unit.WaitForExit();
  ASSERT_TRUE(status.has_value()) << "the unit must not start over a damaged state file";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_THAT(unit.Stderr(), HasSubstr(state));
  EXPECT_THAT(unit.Stderr(), HasSubstr("authentication failed"));
  EXPECT_EQ(ReadAll(state), bytes) << "the damaged file must be left untouched";
}

TEST_F(UnitProcessTest, SigtermExitsCleanly) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  Connection idle(*port);  // an open connection must not block shutdown
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(GetInfo(*port).has_value());
  unit.Signal(SIGTERM);
  auto status = unit.WaitForExit();
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status)) << unit.Stderr();
  EXPECT_EQ(WEXITSTATUS(*status), 0) << unit.Stderr();
}

TEST_F(UnitProcessTest, HelpDocumentsEveryFlag) {
  UnitProcess unit(StateDir(), dir_.path(), {"--help"});
  auto status = unit.WaitForExit();
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  std::string help = unit.Stderr();
  for (const char* flag :
       {"--listen", "--port-file", "--state-dir", "--max-frame-bytes", "--allow-fault-injection",
        "--log-level", "--workers", "--read-timeout-ms"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace hsmsim::emulator

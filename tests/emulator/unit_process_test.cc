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
#include "tests/emulator/unit_harness.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::emulator::testing::Connection;
using ::hsmsim::emulator::testing::GetInfo;
using ::hsmsim::emulator::testing::GetInfoRequest;
using ::hsmsim::emulator::testing::ReadAll;
using ::hsmsim::emulator::testing::UnitProcess;
using ::hsmsim::test_support::TempDir;
using ::testing::HasSubstr;
using namespace std::chrono_literals;  // NOLINT

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

TEST_F(UnitProcessTest, RemovedStateFileIsRefusedNotReplacedByABlankUnit) {
  std::string first_id;
  {
    UnitProcess unit(StateDir(), dir_.path());
    auto port = unit.WaitForPort();
    ASSERT_TRUE(port.has_value()) << unit.Stderr();
    auto info = GetInfo(*port);
    ASSERT_TRUE(info.has_value());
    first_id = info->unit_id();
  }
  const std::string state = StateDir() + "/unit.state";
  ASSERT_TRUE(std::filesystem::remove(state));
  {
    UnitProcess unit(StateDir(), dir_.path());
    auto status = unit.WaitForExit();
    ASSERT_TRUE(status.has_value()) << "the unit must not start blank where a unit was";
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 2);
    EXPECT_THAT(unit.Stderr(), HasSubstr("hsmsim-unit: UNIT_STATE_MISSING: " + state +
                                         " is missing but " + StateDir() + "/device.key exists"));
    EXPECT_FALSE(std::filesystem::exists(state));
  }
  // --new-unit replaces the unit on purpose: a new id, in imprint mode.
  UnitProcess unit(StateDir(), dir_.path(), {"--new-unit"});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  auto info = GetInfo(*port);
  ASSERT_TRUE(info.has_value());
  EXPECT_NE(info->unit_id(), first_id);
  EXPECT_EQ(info->mode(), v1::MODE_IMPRINT);
}

TEST_F(UnitProcessTest, NewUnitNeverReplacesAnExistingState) {
  std::string first_id;
  {
    UnitProcess unit(StateDir(), dir_.path());
    auto port = unit.WaitForPort();
    ASSERT_TRUE(port.has_value()) << unit.Stderr();
    first_id = GetInfo(*port)->unit_id();
  }
  UnitProcess unit(StateDir(), dir_.path(), {"--new-unit"});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  EXPECT_EQ(GetInfo(*port)->unit_id(), first_id);
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
        "--log-level", "--workers", "--read-timeout-ms", "--new-unit"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace hsmsim::emulator

// Hostile input against the real hsmsim-unit process. Each case expects a
// precise error or a closed connection, the unit serving the others
// throughout, and the unit's state (GetInfo: transaction counter, registers,
// everything) unchanged unless a valid command was sent on purpose.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/emulator/prepared_unit.h"
#include "tests/emulator/unit_harness.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::emulator::testing::Connection;
using ::hsmsim::emulator::testing::GetInfo;
using ::hsmsim::emulator::testing::GetInfoRequest;
using ::hsmsim::emulator::testing::PreparedUnit;
using ::hsmsim::emulator::testing::PrepareRotationReadyUnit;
using ::hsmsim::emulator::testing::SignedRequest;
using ::hsmsim::emulator::testing::UnitProcess;
using ::hsmsim::test_support::TempDir;
using namespace std::chrono_literals;  // NOLINT

class HostileInputTest : public ::testing::Test {
 protected:
  void SetUp() override { prepared_ = PrepareRotationReadyUnit(dir_.Join("state"), 3); }

  // Start runs the unit with `args` and records its state.
  void Start(std::vector<std::string> args = {}) {
    unit_ = std::make_unique<UnitProcess>(dir_.Join("state"), dir_.path(), std::move(args));
    auto port = unit_->WaitForPort();
    ASSERT_TRUE(port.has_value()) << unit_->Stderr();
    port_ = *port;
    auto info = GetInfo(port_);
    ASSERT_TRUE(info.has_value());
    before_ = *info;
    bystander_ = std::make_unique<Connection>(port_);
    ASSERT_TRUE(bystander_->connected());
  }

  // ExpectServingAndUnchanged: a connection opened before the attack and a
  // new one are both served, and the state is what it was.
  void ExpectServingAndUnchanged() {
    ASSERT_TRUE(bystander_->Send(GetInfoRequest(++ids_)));
    auto response = bystander_->Receive();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->id(), ids_);
    auto info = GetInfo(port_);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->SerializeAsString(), before_.SerializeAsString())
        << "counter " << info->transaction_counter() << " vs " << before_.transaction_counter();
    EXPECT_TRUE(unit_->Running());
  }

  // ExpectFrameError: the unit answers id 0 with `reason`, then closes.
  static void ExpectFrameError(Connection& conn, const std::string& reason) {
    auto response = conn.Receive();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->id(), 0u);
    EXPECT_EQ(response->status().reason(), reason) << response->status().message();
    EXPECT_TRUE(conn.WaitForClose());
  }

  TempDir dir_;
  PreparedUnit prepared_;
  std::unique_ptr<UnitProcess> unit_;
  std::unique_ptr<Connection> bystander_;
  uint16_t port_ = 0;
  uint64_t ids_ = 1000;
  v1::GetInfoResponse before_;
};

TEST_F(HostileInputTest, TruncatedFramesThenClose) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::string frame = wire::EncodeFrame(GetInfoRequest(5));
  for (size_t cut = 1; cut < frame.size(); ++cut) {
    Connection conn(port_);
    ASSERT_TRUE(conn.SendBytes(frame.substr(0, cut)));
    conn.ShutdownWrite();
    EXPECT_TRUE(conn.WaitForClose()) << "cut at " << cut;
  }
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, ZeroLengthFrameIsUnknownRequest) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Connection conn(port_);
  ASSERT_TRUE(conn.SendBytes(std::string("\x00", 1)));
  auto response = conn.Receive();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status().code(), 3);
  EXPECT_EQ(response->status().reason(), "UNKNOWN_REQUEST");
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, OversizedFramesAreRefusedBeforeTheBody) {
  ASSERT_NO_FATAL_FAILURE(Start({"--max-frame-bytes", "4096"}));
  {
    // A real request one byte over the limit.
    v1::Request big;
    big.set_id(6);
    big.mutable_reencrypt_batch()->add_blobs(std::string(4096, 'x'));
    Connection conn(port_);
    ASSERT_TRUE(conn.Send(big));
    ExpectFrameError(conn, "FRAME_TOO_LARGE");
  }
  {
    // A prefix announcing 4 GiB - 1 with nothing after it.
    Connection conn(port_);
    ASSERT_TRUE(conn.SendBytes(std::string("\xff\xff\xff\xff\x0f", 5)));
    ExpectFrameError(conn, "FRAME_TOO_LARGE");
  }
  {
    // A prefix longer than 5 bytes.
    Connection conn(port_);
    ASSERT_TRUE(conn.SendBytes(std::string(6, '\x80')));
    ExpectFrameError(conn, "MALFORMED_FRAME");
  }
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, GarbageFramesAreRefused) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::mt19937 rng(42);
  for (int i = 0; i < 40; ++i) {
    std::string body(1 + rng() % 127, '\0');  // a one-byte prefix
    for (char& c : body) c = static_cast<char>(rng());
    std::string frame = std::string(1, static_cast<char>(body.size())) + body;
    Connection conn(port_);
    ASSERT_TRUE(conn.SendBytes(frame));
    conn.ShutdownWrite();
    // Either it parsed as some request (answered, then closed after EOF) or
    // it was refused with MALFORMED_FRAME and closed.
    for (;;) {
      auto response = conn.Receive();
      if (!response.has_value()) break;
      if (response->id() == 0 && response->status().code() != 0) {
        EXPECT_THAT(response->status().reason(),
                    ::testing::AnyOf("MALFORMED_FRAME", "UNKNOWN_REQUEST"));
      }
    }
  }
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, WellFormedFramesOfTheWrongType) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // A Response sent as a request: its fields overlap Request's numbers.
  v1::Response as_response;
  as_response.set_id(7);
  as_response.mutable_status()->set_code(0);
  *as_response.mutable_get_info() = before_;
  // A CommandResponse in field 11 reads as a SignedCommand whose command does
  // not parse or is not signed: refused, never applied.
  v1::Response command_response;
  command_response.set_id(8);
  *command_response.mutable_command()->mutable_info() = before_;
  for (const std::string& body :
       {as_response.SerializeAsString(), command_response.SerializeAsString(),
        before_.SerializeAsString(), prepared_.blobs[0]}) {
    Connection conn(port_);
    std::string frame;
    uint8_t prefix[5];
    size_t n = 0;
    for (size_t v = body.size();; v >>= 7) {
      prefix[n++] = static_cast<uint8_t>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      if (v < 0x80) break;
    }
    frame.assign(reinterpret_cast<char*>(prefix), n);
    frame += body;
    ASSERT_TRUE(conn.SendBytes(frame));
    conn.ShutdownWrite();
    for (;;) {
      auto response = conn.Receive();
      if (!response.has_value()) break;
      if (response->id() == 0 && response->status().code() != 0) {
        EXPECT_THAT(response->status().reason(),
                    ::testing::AnyOf("MALFORMED_FRAME", "UNKNOWN_REQUEST"));
      } else if (response->has_command()) {
        ADD_FAILURE() << "a wrong-type frame was applied as a command";
      } else if (response->status().code() != 0) {
        EXPECT_FALSE(response->status().reason().empty());
      }
    }
  }
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, TricklingClientIsClosedAfterTheReadTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start({"--read-timeout-ms", "1000"}));
  Connection slow(port_);
  // Pad the request with an unknown field so the frame is long enough.
  v1::Request padded = GetInfoRequest(9);
  padded.mutable_get_info();
  std::string body = padded.SerializeAsString() + std::string("\x7a\x10", 2) + std::string(16, 'p');
  std::string frame = std::string(1, static_cast<char>(body.size())) + body;
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (size_t i = 0; i < frame.size(); ++i) {
    if (!slow.SendBytes(frame.substr(i, 1))) {
      closed = true;
      break;
    }
    // Others are served while the slow client trickles.
    if (i % 2 == 0) {
      ASSERT_TRUE(GetInfo(port_).has_value());
    }
    std::this_thread::sleep_for(400ms);
    if (std::chrono::steady_clock::now() - start > 5s) break;
  }
  if (!closed) {
    slow.SetReceiveTimeout(3s);
    auto response = slow.Receive();
    EXPECT_FALSE(response.has_value()) << "the trickled frame must not be served";
    closed = !slow.timed_out();
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_THAT(unit_->Stderr(), ::testing::HasSubstr("no complete frame within 1000 ms"));
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, TwoHundredConnectionsAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kConnections = 200;
  std::vector<std::unique_ptr<Connection>> conns;
  for (int i = 0; i < kConnections; ++i) {
    conns.push_back(std::make_unique<Connection>(port_));
    ASSERT_TRUE(conns.back()->connected()) << i;
  }
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(conns[i]->Send(GetInfoRequest(static_cast<uint64_t>(i + 1))));
  }
  for (int i = 0; i < kConnections; ++i) {
    auto response = conns[i]->Receive();
    ASSERT_TRUE(response.has_value()) << i;
    EXPECT_EQ(response->id(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(response->status().code(), 0);
    EXPECT_EQ(response->get_info().unit_id(), before_.unit_id());
  }
  ExpectServingAndUnchanged();
}

TEST_F(HostileInputTest, WrongSignaturesAndReplayedCounters) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::vector<const testing::TestAdmin*> signer = {&prepared_.admin};
  v1::Command assign;
  assign.mutable_assign_instance()->set_instance("kms-x");
  auto send = [&](const v1::Request& request) {
    Connection conn(port_);
    EXPECT_TRUE(conn.Send(request));
    auto response = conn.Receive();
    EXPECT_TRUE(response.has_value());
    return response.value_or(v1::Response());
  };
  {
    // A signature over other bytes.
    v1::Request request = SignedRequest(before_, assign, signer, 20);
    auto* sc = request.mutable_signed_command();
    v1::Command changed;
    changed.ParseFromString(sc->command());
    changed.mutable_assign_instance()->set_instance("kms-y");
    sc->set_command(changed.SerializeAsString());
    EXPECT_EQ(send(request).status().reason(), "BAD_SIGNATURE");
  }
  {
    // A signer the unit does not know.
    crypto::SeededEntropy entropy(99);
    testing::TestAdmin stranger = firmware::testing::MakeAdmin("mallory", entropy);
    EXPECT_EQ(send(SignedRequest(before_, assign, {&stranger}, 21)).status().reason(),
              "UNKNOWN_SIGNER");
  }
  {
    // No signature at all.
    EXPECT_EQ(send(SignedRequest(before_, assign, {}, 22)).status().reason(),
              "INSUFFICIENT_SIGNATURES");
  }
  {
    // A stale counter.
    v1::GetInfoResponse stale = before_;
    stale.set_transaction_counter(before_.transaction_counter() - 1);
    EXPECT_EQ(send(SignedRequest(stale, assign, signer, 23)).status().reason(), "COUNTER_MISMATCH");
  }
  ExpectServingAndUnchanged();

  // A valid command is applied once; the same bytes replayed are refused.
  v1::Request valid = SignedRequest(before_, assign, signer, 24);
  v1::Response applied = send(valid);
  ASSERT_EQ(applied.status().code(), 0) << applied.status().message();
  v1::Response replayed = send(valid);
  EXPECT_EQ(replayed.status().code(), 10);  // ABORTED
  EXPECT_EQ(replayed.status().reason(), "COUNTER_MISMATCH");
  auto after = GetInfo(port_);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->transaction_counter(), before_.transaction_counter() + 1);
  EXPECT_EQ(after->instance(), "kms-x");
}

TEST_F(HostileInputTest, BatchOverTheLimitIsRefusedWhole) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::Request request;
  request.set_id(30);
  for (int i = 0; i < 100'001; ++i) request.mutable_reencrypt_batch()->add_blobs("b");
  Connection conn(port_);
  ASSERT_TRUE(conn.Send(request));
  auto response = conn.Receive();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->id(), 30u);
  EXPECT_EQ(response->status().code(), 3);
  EXPECT_EQ(response->status().reason(), "BATCH_TOO_LARGE");
  EXPECT_FALSE(response->has_reencrypt_batch());
  // The connection stays usable.
  ASSERT_TRUE(conn.Send(GetInfoRequest(31)));
  auto next = conn.Receive();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->id(), 31u);
  ExpectServingAndUnchanged();
}

}  // namespace
}  // namespace hsmsim::emulator

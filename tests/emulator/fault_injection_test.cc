// Fault injection in the real hsmsim-unit process: every point with every
// action, what survives a crash at each point, and a unit without
// --allow-fault-injection refusing all of it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "emulator/fault_injector.h"
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
using ::testing::HasSubstr;
using namespace std::chrono_literals;  // NOLINT

constexpr char kAllow[] = "--allow-fault-injection";

v1::Request AssignInstance(const v1::GetInfoResponse& info, const std::string& instance,
                           uint64_t id) {
  v1::Command command;
  command.set_unit_id(info.unit_id());
  command.set_transaction_counter(info.transaction_counter());
  command.mutable_assign_instance()->set_instance(instance);
  v1::Request request;
  request.set_id(id);
  request.mutable_signed_command()->set_command(command.SerializeAsString());
  return request;
}

v1::Request Inject(const std::string& spec, uint64_t id = 50) {
  v1::Request request;
  request.set_id(id);
  *request.mutable_inject_fault()->mutable_fault() = *ParseFaultSpec(spec);
  return request;
}

v1::Request Batch(const std::vector<std::string>& blobs, size_t from, size_t count, uint64_t id) {
  v1::Request request;
  request.set_id(id);
  for (size_t i = from; i < from + count; ++i)
    request.mutable_reencrypt_batch()->add_blobs(blobs[i]);
  return request;
}

std::optional<v1::Response> Call(uint16_t port, const v1::Request& request) {
  Connection conn(port);
  if (!conn.connected() || !conn.Send(request)) return std::nullopt;
  return conn.Receive();
}

// ExpectFired checks what the host sees of `action` on `conn`, where request
// `id` was sent. After it returns the unit still runs, except after a crash.
void ExpectFired(v1::FaultAction action, Connection& conn, UnitProcess& unit, uint64_t id) {
  switch (action) {
    case v1::FAULT_CRASH: {
      EXPECT_FALSE(conn.Receive().has_value()) << "a crash sends no reply";
      auto status = unit.WaitForExit();
      ASSERT_TRUE(status.has_value()) << "the unit must exit";
      ASSERT_TRUE(WIFEXITED(*status));
      EXPECT_EQ(WEXITSTATUS(*status), kExitInjectedCrash);
      break;
    }
    case v1::FAULT_HANG: {
      conn.SetReceiveTimeout(400ms);
      EXPECT_FALSE(conn.Receive().has_value());
      EXPECT_TRUE(conn.timed_out()) << "a hang keeps the connection open";
      conn.SetReceiveTimeout(10s);
      // The connection still serves other requests; the hung one never comes.
      ASSERT_TRUE(conn.Send(GetInfoRequest(id + 1000)));
      auto next = conn.Receive();
      ASSERT_TRUE(next.has_value());
      EXPECT_EQ(next->id(), id + 1000);
      break;
    }
    case v1::FAULT_DROP_CONNECTION:
      EXPECT_TRUE(conn.WaitForClose());
      EXPECT_TRUE(unit.Running());
      break;
    default: {
      auto response = conn.Receive();
      ASSERT_TRUE(response.has_value());
      EXPECT_EQ(response->id(), id);
      EXPECT_EQ(response->status().code(), 13);  // INTERNAL
      EXPECT_EQ(response->status().reason(), "INJECTED_FAULT");
      EXPECT_FALSE(response->has_command());
      break;
    }
  }
}

class FaultTest : public ::testing::Test {
 protected:
  std::string StateDir() const { return dir_.Join("state"); }
  TempDir dir_;
};

TEST_F(FaultTest, UnitWithoutFlagRefusesFaultRequests) {
  UnitProcess unit(StateDir(), dir_.path());
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  auto before = GetInfo(*port);
  ASSERT_TRUE(before.has_value());
  v1::Request clear;
  clear.set_id(51);
  clear.mutable_clear_faults();
  v1::Request list;
  list.set_id(52);
  list.mutable_inject_fault();
  for (const v1::Request& request : {Inject("before-persist:crash"), clear, list}) {
    auto response = Call(*port, request);
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->id(), request.id());
    EXPECT_EQ(response->status().code(), 9);  // FAILED_PRECONDITION
    EXPECT_EQ(response->status().reason(), "FAULT_INJECTION_DISABLED");
    EXPECT_FALSE(response->has_faults());
  }
  // Nothing was armed: a state change goes through.
  auto changed = Call(*port, AssignInstance(*before, "kms-1", 53));
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(changed->status().code(), 0);
}

TEST_F(FaultTest, FaultFlagWithoutAllowIsUsageError) {
  UnitProcess unit(StateDir(), dir_.path(), {"--fault", "before-persist:crash"});
  auto status = unit.WaitForExit();
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_THAT(unit.Stderr(), HasSubstr("--allow-fault-injection"));
}

TEST_F(FaultTest, BadFaultFlagIsUsageError) {
  for (const char* spec : {"nowhere:crash", "before-persist:explode", "before-persist:crash:3",
                           "reencrypt-after-blobs:crash", "reencrypt-after-blobs:crash:x"}) {
    UnitProcess unit(StateDir(), dir_.path(), {kAllow, "--fault", spec});
    auto status = unit.WaitForExit();
    ASSERT_TRUE(status.has_value()) << spec;
    ASSERT_TRUE(WIFEXITED(*status)) << spec;
    EXPECT_EQ(WEXITSTATUS(*status), 2) << spec;
    EXPECT_THAT(unit.Stderr(), HasSubstr("--fault")) << spec;
  }
}

TEST_F(FaultTest, InjectListAndClearOverTheWire) {
  UnitProcess unit(StateDir(), dir_.path(), {kAllow, "--fault", "in-set-immediate:crash"});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  auto armed = Call(*port, Inject("reencrypt-after-blobs:hang:5000"));
  ASSERT_TRUE(armed.has_value());
  ASSERT_EQ(armed->status().code(), 0) << armed->status().message();
  ASSERT_EQ(armed->faults().armed_size(), 2);
  EXPECT_EQ(FaultSpec(armed->faults().armed(0)), "in-set-immediate:crash");
  EXPECT_EQ(FaultSpec(armed->faults().armed(1)), "reencrypt-after-blobs:hang:5000");

  v1::Request bad;
  bad.set_id(60);
  bad.mutable_inject_fault()->mutable_fault()->set_point(v1::FAULT_BEFORE_PERSIST);
  auto refused = Call(*port, bad);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status().code(), 3);
  EXPECT_EQ(refused->status().reason(), "BAD_FAULT");

  v1::Request list;
  list.set_id(61);
  list.mutable_inject_fault();
  auto listed = Call(*port, list);
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->faults().armed_size(), 2);

  v1::Request clear;
  clear.set_id(62);
  clear.mutable_clear_faults();
  auto cleared = Call(*port, clear);
  ASSERT_TRUE(cleared.has_value());
  EXPECT_EQ(cleared->status().code(), 0);
  EXPECT_EQ(cleared->faults().armed_size(), 0);
}

// --- BEFORE_PERSIST and AFTER_PERSIST, on a unit in imprint mode -----------

class PersistFaultTest : public FaultTest, public ::testing::WithParamInterface<v1::FaultAction> {
 protected:
  // Arms `point` with the parameter's action, sends a state change, checks
  // what the host sees, and returns the unit's state afterwards (after a
  // restart when the unit crashed) together with the state before.
  void Run(const std::string& point, v1::GetInfoResponse* before, v1::GetInfoResponse* after) {
    v1::Fault fault = *ParseFaultSpec(point + ":crash");
    fault.set_action(GetParam());
    {
      UnitProcess unit(StateDir(), dir_.path(), {kAllow, "--fault", FaultSpec(fault)});
      auto port = unit.WaitForPort();
      ASSERT_TRUE(port.has_value()) << unit.Stderr();
      auto info = GetInfo(*port);
      ASSERT_TRUE(info.has_value());
      *before = *info;
      Connection conn(*port);
      ASSERT_TRUE(conn.Send(AssignInstance(*info, "kms-new", 70)));
      ExpectFired(GetParam(), conn, unit, 70);
      if (GetParam() != v1::FAULT_CRASH) {
        auto live = GetInfo(*port);
        ASSERT_TRUE(live.has_value());
        *after = *live;
        // The fault fired once: the same kind of change now goes through.
        auto again = Call(*port, AssignInstance(*live, "kms-again", 71));
        ASSERT_TRUE(again.has_value());
        EXPECT_EQ(again->status().code(), 0) << again->status().message();
        unit.Signal(SIGKILL);
        ASSERT_TRUE(unit.WaitForExit().has_value());
        return;
      }
    }
    UnitProcess restarted(StateDir(), dir_.path());
    auto port = restarted.WaitForPort();
    ASSERT_TRUE(port.has_value()) << restarted.Stderr();
    auto info = GetInfo(*port);
    ASSERT_TRUE(info.has_value());
    *after = *info;
  }
};

TEST_P(PersistFaultTest, BeforePersistLosesTheChange) {
  v1::GetInfoResponse before, after;
  ASSERT_NO_FATAL_FAILURE(Run("before-persist", &before, &after));
  EXPECT_EQ(after.unit_id(), before.unit_id()) << "never a blank unit";
  EXPECT_EQ(after.instance(), "");
  EXPECT_EQ(after.transaction_counter(), before.transaction_counter());
}

TEST_P(PersistFaultTest, AfterPersistKeepsTheChange) {
  v1::GetInfoResponse before, after;
  ASSERT_NO_FATAL_FAILURE(Run("after-persist", &before, &after));
  EXPECT_EQ(after.unit_id(), before.unit_id()) << "never a blank unit";
  EXPECT_EQ(after.instance(), "kms-new");
  EXPECT_EQ(after.transaction_counter(), before.transaction_counter() + 1);
}

std::string ActionName(const ::testing::TestParamInfo<v1::FaultAction>& info) {
  return v1::FaultAction_Name(info.param).substr(6);  // without "FAULT_"
}

INSTANTIATE_TEST_SUITE_P(EveryAction, PersistFaultTest,
                         ::testing::Values(v1::FAULT_CRASH, v1::FAULT_HANG,
                                           v1::FAULT_DROP_CONNECTION, v1::FAULT_RETURN_ERROR),
                         ActionName);

// --- REENCRYPT_AFTER_BLOBS and IN_SET_IMMEDIATE, on a rotation-ready unit --

class RotationFaultTest : public FaultTest, public ::testing::WithParamInterface<v1::FaultAction> {
 protected:
  void SetUp() override { prepared_ = PrepareRotationReadyUnit(StateDir(), 12); }

  // RestartedInfo returns the unit's state, restarting it first when it
  // crashed.
  std::optional<v1::GetInfoResponse> StateAfter(UnitProcess& unit, std::optional<uint16_t> port) {
    if (GetParam() != v1::FAULT_CRASH) return GetInfo(*port);
    UnitProcess restarted(StateDir(), dir_.path());
    auto new_port = restarted.WaitForPort();
    if (!new_port.has_value()) return std::nullopt;
    (void)unit;
    return GetInfo(*new_port);
  }

  PreparedUnit prepared_;
};

TEST_P(RotationFaultTest, ReencryptAfterBlobsFiresInsideTheBatch) {
  v1::Fault fault;
  fault.set_point(v1::FAULT_REENCRYPT_AFTER_BLOBS);
  fault.set_action(GetParam());
  fault.set_after_blobs(7);
  UnitProcess unit(StateDir(), dir_.path(), {kAllow});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  auto before = GetInfo(*port);
  ASSERT_TRUE(before.has_value());
  v1::Request arm;
  arm.set_id(80);
  *arm.mutable_inject_fault()->mutable_fault() = fault;
  auto armed = Call(*port, arm);
  ASSERT_TRUE(armed.has_value());
  ASSERT_EQ(armed->status().code(), 0);

  Connection conn(*port);
  // 5 blobs: below the count, answered in full.
  ASSERT_TRUE(conn.Send(Batch(prepared_.blobs, 0, 5, 81)));
  auto first = conn.Receive();
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->status().code(), 0) << first->status().message();
  ASSERT_EQ(first->reencrypt_batch().results_size(), 5);
  EXPECT_EQ(first->reencrypt_batch().results(0).outcome(), v1::BLOB_REENCRYPTED);
  // 5 more: the fault fires after the 2nd of them (7 in total).
  ASSERT_TRUE(conn.Send(Batch(prepared_.blobs, 5, 5, 82)));
  ExpectFired(GetParam(), conn, unit, 82);
  EXPECT_THAT(unit.Stderr(), HasSubstr("2 of 5 blobs re-encrypted before the fault"));

  auto after = StateAfter(unit, port);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->SerializeAsString(), before->SerializeAsString())
      << "re-encryption never changes the unit's state";
  if (GetParam() != v1::FAULT_CRASH) {
    // Fired once: the same batch now goes through.
    auto again = Call(*port, Batch(prepared_.blobs, 5, 7, 83));
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->status().code(), 0);
    EXPECT_EQ(again->reencrypt_batch().results_size(), 7);
  }
}

TEST_P(RotationFaultTest, InSetImmediateFiresAfterThePromotionIsPersisted) {
  v1::Fault fault;
  fault.set_point(v1::FAULT_IN_SET_IMMEDIATE);
  fault.set_action(GetParam());
  UnitProcess unit(StateDir(), dir_.path(), {kAllow, "--fault", FaultSpec(fault)});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  auto info = GetInfo(*port);
  ASSERT_TRUE(info.has_value());
  const std::vector<const testing::TestAdmin*> signer = {&prepared_.admin};

  // Another state change does not fire it.
  v1::Command assign;
  assign.mutable_assign_instance()->set_instance("kms-2");
  auto assigned = Call(*port, SignedRequest(*info, assign, signer, 90));
  ASSERT_TRUE(assigned.has_value());
  ASSERT_EQ(assigned->status().code(), 0) << assigned->status().message();
  info = assigned->command().info();

  v1::Command set_immediate;
  set_immediate.mutable_set_immediate();
  Connection conn(*port);
  ASSERT_TRUE(conn.Send(SignedRequest(*info, set_immediate, signer, 91)));
  ExpectFired(GetParam(), conn, unit, 91);

  auto after = StateAfter(unit, port);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->current_register().state(), v1::REGISTER_VALID);
  EXPECT_EQ(after->current_register().verification_pattern(), prepared_.new_vp);
  EXPECT_EQ(after->old_register().verification_pattern(), prepared_.current_vp);
  EXPECT_EQ(after->new_register().state(), v1::REGISTER_EMPTY);
  EXPECT_EQ(after->transaction_counter(), info->transaction_counter() + 1);
  EXPECT_EQ(after->instance(), "kms-2");
}

INSTANTIATE_TEST_SUITE_P(EveryAction, RotationFaultTest,
                         ::testing::Values(v1::FAULT_CRASH, v1::FAULT_HANG,
                                           v1::FAULT_DROP_CONNECTION, v1::FAULT_RETURN_ERROR),
                         ActionName);

TEST_F(FaultTest, ReencryptAfterBlobsArmedAtStartCrashesMidBatch) {
  PreparedUnit prepared = PrepareRotationReadyUnit(StateDir(), 12);
  UnitProcess unit(StateDir(), dir_.path(), {kAllow, "--fault", "reencrypt-after-blobs:crash:10"});
  auto port = unit.WaitForPort();
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  Connection conn(*port);
  ASSERT_TRUE(conn.Send(Batch(prepared.blobs, 0, 12, 100)));
  ExpectFired(v1::FAULT_CRASH, conn, unit, 100);
  EXPECT_THAT(unit.Stderr(), HasSubstr("10 of 12 blobs re-encrypted before the fault"));
}

}  // namespace
}  // namespace hsmsim::emulator

// The wire status codec and the enum names people read.
#include "proto/wire/status_codec.h"

#include <gtest/gtest.h>

#include <string>

#include "common/status.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::wire {
namespace {

TEST(WireStatusTest, RoundTripKeepsCodeReasonAndMessage) {
  absl::Status s = Error(absl::StatusCode::kFailedPrecondition, "SOME_REASON", "what happened");
  v1::Status on_wire = ToWireStatus(s);
  EXPECT_EQ(on_wire.code(), 9);
  EXPECT_EQ(on_wire.reason(), "SOME_REASON");
  absl::Status back = FromWireStatus(on_wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(back), "SOME_REASON");
  EXPECT_EQ(std::string(back.message()), "what happened");
  EXPECT_EQ(ToWireStatus(absl::OkStatus()).code(), 0);
  v1::Status weird;
  weird.set_code(99);
  EXPECT_EQ(FromWireStatus(weird).code(), absl::StatusCode::kUnknown);
  v1::Status no_reason;
  no_reason.set_code(3);
  EXPECT_EQ(ReasonOf(FromWireStatus(no_reason)), "UNSPECIFIED");
}

TEST(EnumNamesTest, RegisterStatesAsPrinted) {
  EXPECT_EQ(RegisterStateName(v1::REGISTER_EMPTY), "EMPTY");
  EXPECT_EQ(RegisterStateName(v1::REGISTER_PARTIALLY_LOADED), "PARTIALLY_LOADED");
  EXPECT_EQ(RegisterStateName(v1::REGISTER_FULL_UNCOMMITTED), "FULL_UNCOMMITTED");
  EXPECT_EQ(RegisterStateName(v1::REGISTER_FULL_COMMITTED), "FULL_COMMITTED");
  EXPECT_EQ(RegisterStateName(v1::REGISTER_VALID), "VALID");
  EXPECT_EQ(RegisterStateName(v1::REGISTER_STATE_UNSPECIFIED), "UNSPECIFIED");
  EXPECT_EQ(RegisterStateName(static_cast<v1::RegisterState>(77)), "UNSPECIFIED");
}

TEST(EnumNamesTest, ModesAsPrinted) {
  EXPECT_EQ(ModeName(v1::MODE_IMPRINT), "IMPRINT");
  EXPECT_EQ(ModeName(v1::MODE_NORMAL), "NORMAL");
  EXPECT_EQ(ModeName(v1::MODE_UNSPECIFIED), "UNSPECIFIED");
  EXPECT_EQ(ModeName(static_cast<v1::Mode>(9)), "UNSPECIFIED");
}

}  // namespace
}  // namespace hsmsim::wire

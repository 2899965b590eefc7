// The signatures each command needs (docs/protocol.md section 6.4), and the
// imprint-mode gate, checked on the authorization functions directly for
// every operation.
#include "firmware/internal/authorization.h"

#include <gtest/gtest.h>

#include <iterator>
#include <optional>
#include <string>

#include "common/status.h"
#include "firmware/internal/argument_validation.h"

namespace hsmsim::firmware::internal {
namespace {

constexpr uint32_t kSig = 3;
constexpr uint32_t kRev = 2;

// One row of the table in section 6.4: the signatures needed in imprint mode
// (nullopt: refused) and in normal mode with thresholds 3/2.
struct Needed {
  v1::Command::OpCase op;
  std::optional<uint32_t> imprint;
  uint32_t normal;
};

constexpr Needed kTable[] = {
    {v1::Command::kAddAdmin, 0, kSig},
    {v1::Command::kRemoveAdmin, 0, kRev},
    {v1::Command::kSetThresholds, 5, kSig},  // imprint: the new threshold (5 below)
    {v1::Command::kZeroize, 0, 1},
    {v1::Command::kAssignInstance, 0, 1},
    {v1::Command::kGenerateImporter, std::nullopt, 1},
    {v1::Command::kLoadKeyParts, std::nullopt, 1},
    {v1::Command::kCommitNewMasterKey, std::nullopt, kSig},
    {v1::Command::kSetImmediate, std::nullopt, 1},
    {v1::Command::kClearNewMasterKey, std::nullopt, 1},
    {v1::Command::kClearCurrentMasterKey, std::nullopt, 1},
    {v1::Command::kClearOldMasterKey, std::nullopt, 1},
};

// CommandWith returns a command whose operation is `op`.
v1::Command CommandWith(v1::Command::OpCase op) {
  v1::Command c;
  const google::protobuf::FieldDescriptor* field = c.GetDescriptor()->FindFieldByNumber(op);
  c.GetReflection()->MutableMessage(&c, field);
  if (op == v1::Command::kSetThresholds) {
    c.mutable_set_thresholds()->set_signature_threshold(5);
    c.mutable_set_thresholds()->set_revocation_threshold(1);
  }
  return c;
}

UnitState StateIn(v1::Mode mode) {
  UnitState state;
  state.mode = mode;
  if (mode == v1::MODE_NORMAL) {
    state.signature_threshold = kSig;
    state.revocation_threshold = kRev;
  }
  return state;
}

Signers DistinctSigners(uint32_t n) {
  Signers signers;
  for (uint32_t i = 0; i < n; ++i) {
    crypto::KeyId id{};
    id[0] = static_cast<uint8_t>(i + 1);
    signers.insert(id);
  }
  return signers;
}

TEST(AuthorizationTest, EveryOperationIsInTheTable) {
  EXPECT_EQ(std::size(kTable),
            static_cast<size_t>(v1::Command::kClearOldMasterKey - v1::Command::kAddAdmin + 1));
  for (const Needed& row : kTable) {
    EXPECT_EQ(CommandWith(row.op).op_case(), row.op) << OpName(row.op);
  }
}

TEST(AuthorizationTest, SignaturesNeededInImprintMode) {
  const UnitState state = StateIn(v1::MODE_IMPRINT);
  for (const Needed& row : kTable) {
    const v1::Command command = CommandWith(row.op);
    SCOPED_TRACE(std::string(OpName(row.op)));
    EXPECT_EQ(AllowedInImprint(row.op), row.imprint.has_value());
    if (!row.imprint.has_value()) {
      EXPECT_EQ(ReasonOf(CheckModeAllows(command, state)), "IMPRINT_MODE");
      continue;
    }
    EXPECT_TRUE(CheckModeAllows(command, state).ok());
    EXPECT_EQ(RequiredSignatures(command, state), *row.imprint);
    EXPECT_TRUE(CheckEnoughSigners(command, state, DistinctSigners(*row.imprint)).ok());
    if (*row.imprint > 0) {
      EXPECT_EQ(ReasonOf(CheckEnoughSigners(command, state, DistinctSigners(*row.imprint - 1))),
                "INSUFFICIENT_SIGNATURES");
    }
  }
}

TEST(AuthorizationTest, SignaturesNeededInNormalMode) {
  const UnitState state = StateIn(v1::MODE_NORMAL);
  for (const Needed& row : kTable) {
    const v1::Command command = CommandWith(row.op);
    SCOPED_TRACE(std::string(OpName(row.op)));
    EXPECT_TRUE(CheckModeAllows(command, state).ok());
    EXPECT_EQ(RequiredSignatures(command, state), row.normal);
    EXPECT_TRUE(CheckEnoughSigners(command, state, DistinctSigners(row.normal)).ok());
    const absl::Status short_one =
        CheckEnoughSigners(command, state, DistinctSigners(row.normal - 1));
    EXPECT_EQ(short_one.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(ReasonOf(short_one), "INSUFFICIENT_SIGNATURES");
    EXPECT_NE(std::string(short_one.message())
                  .find(std::string(OpName(row.op)) + " needs " + std::to_string(row.normal)),
              std::string::npos)
        << short_one;
  }
}

}  // namespace
}  // namespace hsmsim::firmware::internal

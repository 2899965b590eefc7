// Death tests for the firmware's checked invariants: every HSMSIM_CHECK in
// firmware/ is here. A CHECK guards a bug in the firmware's own code, never
// input from outside (which gets a Status), so these reach the internals
// directly to break the invariant on purpose.
#include <gtest/gtest.h>

#include <string>

#include "crypto/entropy.h"
#include "firmware/internal/reencryption.h"
#include "firmware/internal/snapshot_codec.h"
#include "firmware/master_key_register.h"
#include "firmware/unit_state.h"
#include "tests/firmware/test_support.h"

namespace hsmsim::firmware {
namespace {

MasterKeyRegister ValidRegister() {
  auto reg = MasterKeyRegister::Holding(testing::Part(1), v1::REGISTER_VALID);
  HSMSIM_CHECK(reg.ok());
  return *std::move(reg);
}

// master_key_register.cc, set_state: only a register holding a key changes
// state that way.
TEST(CheckDeathTest, SetStateOnEmptyRegisterDies) {
  MasterKeyRegister reg;
  EXPECT_DEATH(reg.set_state(v1::REGISTER_VALID), "CHECK failed: kek_ != nullptr");
}

TEST(CheckDeathTest, SetStateOnPartiallyLoadedRegisterDies) {
  MasterKeyRegister reg = MasterKeyRegister::Partial(testing::Part(1), 3, {});
  EXPECT_DEATH(reg.set_state(v1::REGISTER_FULL_UNCOMMITTED), "CHECK failed: kek_ != nullptr");
}

// master_key_register.cc, set_state: and only to a state that holds a key.
TEST(CheckDeathTest, SetStateToEmptyDies) {
  MasterKeyRegister reg = ValidRegister();
  EXPECT_DEATH(reg.set_state(v1::REGISTER_EMPTY), "CHECK failed: state == ");
}

TEST(CheckDeathTest, SetStateToPartiallyLoadedDies) {
  MasterKeyRegister reg = ValidRegister();
  EXPECT_DEATH(reg.set_state(v1::REGISTER_PARTIALLY_LOADED), "CHECK failed: state == ");
}

TEST(CheckDeathTest, HoldingStatesAreAllowed) {
  // The CHECKs above do not fire for the three states that hold a key.
  MasterKeyRegister reg = ValidRegister();
  for (v1::RegisterState state :
       {v1::REGISTER_FULL_UNCOMMITTED, v1::REGISTER_FULL_COMMITTED, v1::REGISTER_VALID}) {
    reg.set_state(state);
    EXPECT_EQ(reg.state(), state);
  }
}

// snapshot_codec.cc, EncodeSnapshot: the unit builds its importer keys
// itself, so one without a private scalar to persist is a bug.
TEST(CheckDeathTest, SnapshotOfImporterKeyWithoutPrivateScalarDies) {
  crypto::SeededEntropy entropy(5);
  const testing::TestAdmin admin = testing::MakeAdmin("alice", entropy);
  auto public_only = crypto::ParseP521PublicKeyDer(AsBytes(admin.public_key_der));
  ASSERT_TRUE(public_only.ok()) << public_only.status();
  UnitState state;
  ASSERT_TRUE(InstallImporterKey(std::move(*public_only), state).ok());
  EXPECT_DEATH(internal::EncodeSnapshot(state), "CHECK failed: scalar.ok\\(\\)");
}

// reencryption.cc, Reencrypt: the façade passes one of the two directions.
TEST(CheckDeathTest, ReencryptInAnUnknownDirectionDies) {
  crypto::SeededEntropy entropy(6);
  UnitState state;
  google::protobuf::RepeatedPtrField<std::string> blobs;
  EXPECT_DEATH((void)internal::Reencrypt(static_cast<internal::ReencryptDirection>(7), blobs,
                                         /*packed=*/nullptr, state, entropy),
               "CHECK failed: direction == ReencryptDirection::kOldToCurrent");
}

}  // namespace
}  // namespace hsmsim::firmware

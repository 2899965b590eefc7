// Snapshot and restore of the unit's nonvolatile state.
#include <gtest/gtest.h>

#include <string>

#include "hsmsim/v1/state.pb.h"
#include "tests/firmware/unit_fixture.h"

namespace hsmsim::firmware {
namespace {

using testing::LoadCommand;

class SnapshotTest : public testing::UnitFixture {
 protected:
  v1::UnitSnapshot Parse(const SecretBytes& bytes) {
    v1::UnitSnapshot s;
    HSMSIM_CHECK(s.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    return s;
  }
  absl::Status RestoreStatus(const v1::UnitSnapshot& s) {
    std::string bytes = s.SerializeAsString();
    return CryptoUnit::Restore(AsBytes(bytes), entropy_).status();
  }
};

TEST_F(SnapshotTest, RoundTripIsByteForByte) {
  LoadAndCommit(*unit_, k1_);
  Promote(*unit_);
  LoadAndCommit(*unit_, k2_);
  Promote(*unit_);
  ASSERT_TRUE(Do(LoadCommand(*unit_, {k3_[0]}, 3, entropy_)).ok());
  SecretBytes snapshot = unit_->Snapshot();
  auto restored = CryptoUnit::Restore(snapshot, entropy_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE((*restored)->Snapshot() == snapshot);
  EXPECT_EQ((*restored)->Info().SerializeAsString(), unit_->Info().SerializeAsString());
}

TEST_F(SnapshotTest, RestoredUnitKeepsWorking) {
  LoadAndCommit(*unit_, k1_);
  Promote(*unit_);
  std::string blob = GenerateKey("persisted");
  auto restored = *CryptoUnit::Restore(unit_->Snapshot(), entropy_);
  v1::Request wrap;
  wrap.mutable_wrap_key()->set_blob(blob);
  wrap.mutable_wrap_key()->set_plaintext("dk");
  v1::Response r = restored->Handle(wrap).response;
  ASSERT_EQ(r.status().code(), 0) << r.status().message();
  // The importer key survived: a part encrypted before the restore loads after it.
  v1::Command load = LoadCommand(*unit_, k2_, 2, entropy_);
  EXPECT_TRUE(Do(*restored, load).ok());
  // And the counter: a command signed for the restored unit's counter works.
  EXPECT_EQ(restored->Info().transaction_counter(), unit_->Info().transaction_counter() + 1);
}

TEST_F(SnapshotTest, NewerFormatVersionRefusedClearly) {
  v1::UnitSnapshot s = Parse(unit_->Snapshot());
  s.set_format_version(kStateFormatVersion + 1);
  absl::Status status = RestoreStatus(s);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(status), "UNSUPPORTED_STATE_VERSION");
  EXPECT_NE(std::string(status.message()).find("version 2 is newer"), std::string::npos) << status;
}

TEST_F(SnapshotTest, ReportsTheRunningFirmwareVersion) {
  v1::UnitSnapshot s = Parse(unit_->Snapshot());
  s.set_firmware_version("hsmsim-fw 0.0.1");
  std::string bytes = s.SerializeAsString();
  auto restored = CryptoUnit::Restore(AsBytes(bytes), entropy_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->Info().firmware_version(), kFirmwareVersion);
}

TEST_F(SnapshotTest, GarbageRefused) {
  std::string garbage = "\xff\xfe\xfd not a snapshot";
  absl::Status status = CryptoUnit::Restore(AsBytes(garbage), entropy_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReasonOf(status), "BAD_STATE");
  EXPECT_EQ(ReasonOf(CryptoUnit::Restore({}, entropy_).status()), "BAD_STATE");
}

TEST_F(SnapshotTest, InconsistentStatesRefused) {
  LoadAndCommit(*unit_, k1_);
  Promote(*unit_);
  const v1::UnitSnapshot good = Parse(unit_->Snapshot());
  auto expect_bad = [&](auto mutate, const char* what) {
    v1::UnitSnapshot s = good;
    mutate(s);
    absl::Status status = RestoreStatus(s);
    EXPECT_EQ(ReasonOf(status), "BAD_STATE") << what << ": " << status;
  };
  expect_bad([](v1::UnitSnapshot& s) { s.set_unit_id("short"); }, "unit id");
  expect_bad([](v1::UnitSnapshot& s) { s.mutable_current_register()->set_key("short"); },
             "key size");
  expect_bad(
      [](v1::UnitSnapshot& s) {
        s.mutable_current_register()->set_state(v1::REGISTER_FULL_COMMITTED);
      },
      "CURRENT cannot be committed");
  expect_bad([](v1::UnitSnapshot& s) { s.mutable_new_register()->set_state(v1::REGISTER_VALID); },
             "NEW cannot be valid");
  expect_bad([](v1::UnitSnapshot& s) { s.set_signature_threshold(5); }, "threshold");
  expect_bad([](v1::UnitSnapshot& s) { s.set_mode(static_cast<v1::Mode>(7)); }, "mode");
  expect_bad([](v1::UnitSnapshot& s) { s.mutable_administrators(0)->set_public_key("x"); },
             "admin key");
  expect_bad([](v1::UnitSnapshot& s) { s.set_importer_private_key(std::string(66, '\xff')); },
             "importer");
  expect_bad([](v1::UnitSnapshot& s) { s.set_format_version(0); }, "version 0");
}

}  // namespace
}  // namespace hsmsim::firmware

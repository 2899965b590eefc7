// Key part loading, verification patterns of loaded keys, and workload
// requests in the wrong state.
#include "firmware/crypto_unit.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <string>

#include "common/hex.h"
#include "tests/firmware/unit_fixture.h"

namespace hsmsim::firmware {
namespace {

using testing::CommitCommand;
using testing::LoadCommand;
using testing::Op;
using testing::Part;
using testing::Xor;

// Computed here, not with the code under test: SHA-256(0x01 || key) with
// the last 4 bytes zeroed.
std::string IndependentVp(const SecretBytes& key) {
  std::string input = "\x01" + std::string(key.begin(), key.end());
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  for (int i = 28; i < 32; ++i) digest[i] = 0;
  return ToHex(absl::Span<const uint8_t>(digest, sizeof(digest)));
}

class CryptoUnitTest : public testing::UnitFixture {};

TEST_F(CryptoUnitTest, NewUnitIsInImprintModeWithEmptyRegisters) {
  crypto::SeededEntropy entropy(1);
  auto unit = *CryptoUnit::Create(entropy);
  v1::GetInfoResponse info = unit->Info();
  EXPECT_EQ(info.mode(), v1::MODE_IMPRINT);
  EXPECT_EQ(info.unit_id().size(), kUnitIdSize);
  EXPECT_EQ(info.firmware_version(), kFirmwareVersion);
  EXPECT_EQ(info.new_register().state(), v1::REGISTER_EMPTY);
  EXPECT_EQ(info.current_register().state(), v1::REGISTER_EMPTY);
  EXPECT_EQ(info.old_register().state(), v1::REGISTER_EMPTY);
  EXPECT_EQ(info.transaction_counter(), 0u);
  EXPECT_EQ(info.signature_threshold(), 0u);
}

TEST_F(CryptoUnitTest, UnitIdsDiffer) {
  crypto::OpenSslEntropy entropy;
  auto a = *CryptoUnit::Create(entropy);
  auto b = *CryptoUnit::Create(entropy);
  EXPECT_NE(crypto::AsString(a->unit_id()), crypto::AsString(b->unit_id()));
}

TEST_F(CryptoUnitTest, LoadedNewVpEqualsVpOfXorOfParts) {
  ASSERT_TRUE(Do(LoadCommand(*unit_, k1_, 3, entropy_)).ok());
  v1::GetInfoResponse info = unit_->Info();
  EXPECT_EQ(info.new_register().state(), v1::REGISTER_FULL_UNCOMMITTED);
  EXPECT_EQ(ToHex(info.new_register().verification_pattern()), IndependentVp(Xor(k1_)));
}

TEST_F(CryptoUnitTest, PartsMayArriveInSeveralCommands) {
  ASSERT_TRUE(Do(LoadCommand(*unit_, {k1_[0]}, 3, entropy_)).ok());
  EXPECT_EQ(unit_->Info().new_register().state(), v1::REGISTER_PARTIALLY_LOADED);
  EXPECT_EQ(unit_->Info().new_register().parts_loaded(), 1u);
  EXPECT_TRUE(unit_->Info().new_register().verification_pattern().empty());
  ASSERT_TRUE(Do(LoadCommand(*unit_, {k1_[1], k1_[2]}, 3, entropy_)).ok());
  EXPECT_EQ(ToHex(unit_->Info().new_register().verification_pattern()), IndependentVp(Xor(k1_)));
}

TEST_F(CryptoUnitTest, SinglePartRefused) {
  absl::Status s = Do(LoadCommand(*unit_, {k1_[0]}, 1, entropy_));
  EXPECT_EQ(ReasonOf(s), "SINGLE_KEY_PART") << s;
  EXPECT_EQ(unit_->Info().new_register().state(), v1::REGISTER_EMPTY);
}

TEST_F(CryptoUnitTest, PartCountLimits) {
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, {k1_[0]}, 21, entropy_))), "BAD_PART_COUNT");
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, {k1_[0]}, 0, entropy_))), "BAD_PART_COUNT");
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, {}, 2, entropy_))), "NO_KEY_PARTS");
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, k1_, 2, entropy_))), "TOO_MANY_PARTS");
  ASSERT_TRUE(Do(LoadCommand(*unit_, {k1_[0]}, 3, entropy_)).ok());
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, {k1_[1]}, 2, entropy_))), "PART_COUNT_MISMATCH");
}

TEST_F(CryptoUnitTest, TwentyPartsAccepted) {
  std::vector<SecretBytes> parts;
  for (int i = 0; i < 20; ++i) parts.push_back(Part(static_cast<uint8_t>(100 + i)));
  ASSERT_TRUE(Do(LoadCommand(*unit_, parts, 20, entropy_)).ok());
  EXPECT_EQ(ToHex(unit_->Info().new_register().verification_pattern()), IndependentVp(Xor(parts)));
}

TEST_F(CryptoUnitTest, DuplicatePartRefused) {
  ASSERT_TRUE(Do(LoadCommand(*unit_, {k1_[0]}, 3, entropy_)).ok());
  SecretBytes before = unit_->Snapshot();
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, {k1_[0]}, 3, entropy_))), "DUPLICATE_KEY_PART");
  EXPECT_TRUE(unit_->Snapshot() == before);
}

TEST_F(CryptoUnitTest, PartsCombiningToZeroRefused) {
  SecretBytes a = Part(1), b = Part(2);
  SecretBytes c = Xor({a, b});
  EXPECT_EQ(ReasonOf(Do(LoadCommand(*unit_, {a, b, c}, 3, entropy_))), "WEAK_MASTER_KEY");
}

TEST_F(CryptoUnitTest, PartEncryptedToAnotherUnitRefused) {
  auto other = NewUnit();
  v1::Command for_other = LoadCommand(*other, k1_, 3, entropy_);
  SecretBytes before = unit_->Snapshot();
  absl::Status s = Do(for_other);
  EXPECT_EQ(ReasonOf(s), "WRONG_IMPORTER_KEY") << s;
  EXPECT_TRUE(unit_->Snapshot() == before);
  // Even with the importer key id forged, the part does not decrypt.
  std::string my_id =
      crypto::AsString(crypto::KeyIdOfPublicKeyDer(AsBytes(unit_->Info().importer_public_key())));
  for (auto& p : *for_other.mutable_load_key_parts()->mutable_parts()) p.set_importer_key_id(my_id);
  EXPECT_EQ(ReasonOf(Do(for_other)), "AUTHENTICATION_FAILED");
  EXPECT_TRUE(unit_->Snapshot() == before);
}

TEST_F(CryptoUnitTest, LoadWithoutImporterRefused) {
  crypto::SeededEntropy entropy(3);
  auto unit = *CryptoUnit::Create(entropy);
  ASSERT_TRUE(testing::Send(*unit, testing::AddAdminCommand(admin_), {}).ok());
  ASSERT_TRUE(testing::Send(*unit, testing::ThresholdsCommand(1, 1), {&admin_}).ok());
  v1::Command load = LoadCommand(*unit_, k1_, 3, entropy_);
  EXPECT_EQ(ReasonOf(testing::Send(*unit, load, {&admin_})), "NO_IMPORTER_KEY");
}

TEST_F(CryptoUnitTest, ReplacedImporterInvalidatesOldEncryptions) {
  v1::Command load = LoadCommand(*unit_, k1_, 3, entropy_);
  ASSERT_TRUE(Do(Op([](v1::Command& c) { c.mutable_generate_importer(); })).ok());
  EXPECT_EQ(ReasonOf(Do(load)), "WRONG_IMPORTER_KEY");
}

TEST_F(CryptoUnitTest, CommitWithWrongVpRefused) {
  ASSERT_TRUE(Do(LoadCommand(*unit_, k1_, 3, entropy_)).ok());
  SecretBytes before = unit_->Snapshot();
  absl::Status s = Do(CommitCommand(Xor(k2_)));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), "VERIFICATION_PATTERN_MISMATCH");
  EXPECT_TRUE(unit_->Snapshot() == before);
  v1::Command short_vp;
  short_vp.mutable_commit_new_master_key()->set_expected_verification_pattern("abc");
  EXPECT_EQ(ReasonOf(Do(short_vp)), "BAD_VERIFICATION_PATTERN");
}

TEST_F(CryptoUnitTest, FullRotationMovesCurrentToOld) {
  LoadAndCommit(*unit_, k1_);
  Promote(*unit_);
  std::string vp1 = unit_->Info().current_register().verification_pattern();
  LoadAndCommit(*unit_, k2_);
  Promote(*unit_);
  v1::GetInfoResponse info = unit_->Info();
  EXPECT_EQ(info.new_register().state(), v1::REGISTER_EMPTY);
  EXPECT_EQ(info.current_register().state(), v1::REGISTER_VALID);
  EXPECT_EQ(ToHex(info.current_register().verification_pattern()), IndependentVp(Xor(k2_)));
  EXPECT_EQ(info.old_register().state(), v1::REGISTER_VALID);
  EXPECT_EQ(info.old_register().verification_pattern(), vp1);
}

TEST_F(CryptoUnitTest, UnknownRequestRefused) {
  v1::Request r;
  r.set_id(5);
  v1::Response resp = Call(r);
  EXPECT_EQ(resp.id(), 5u);
  EXPECT_EQ(resp.status().reason(), "UNKNOWN_REQUEST");
}

TEST_F(CryptoUnitTest, ReadOnlyClassification) {
  v1::Request r;
  r.mutable_get_info();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_reencrypt_batch();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_signed_command();
  EXPECT_FALSE(CryptoUnit::IsReadOnly(r));
  EXPECT_FALSE(CryptoUnit::IsReadOnly(v1::Request()));
}

TEST_F(CryptoUnitTest, UnsupportedAlgorithmRefused) {
  LoadAndCommit(*unit_, k1_);
  Promote(*unit_);
  v1::Request r;
  r.mutable_generate_key()->set_key_id("k");
  r.mutable_generate_key()->set_algorithm(static_cast<v1::KeyAlgorithm>(9));
  EXPECT_EQ(Call(r).status().reason(), "UNSUPPORTED_ALGORITHM");
}

TEST_F(CryptoUnitTest, InstanceNameValidated) {
  v1::Command c;
  c.mutable_assign_instance()->set_instance("bad name!");
  EXPECT_EQ(ReasonOf(Do(c)), "BAD_INSTANCE_NAME");
  c.mutable_assign_instance()->set_instance(std::string(65, 'a'));
  EXPECT_EQ(ReasonOf(Do(c)), "BAD_INSTANCE_NAME");
  c.mutable_assign_instance()->set_instance("kms-prod_eu-1.a");
  EXPECT_TRUE(Do(c).ok());
  EXPECT_EQ(unit_->Info().instance(), "kms-prod_eu-1.a");
}

}  // namespace
}  // namespace hsmsim::firmware

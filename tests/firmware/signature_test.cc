// Signatures, counters and administrator limits.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <string>
#include <vector>

#include "firmware/crypto_unit.h"
#include "tests/crypto/key_encodings.h"
#include "tests/firmware/test_support.h"

namespace hsmsim::firmware {
namespace {

using testing::AddAdminCommand;
using testing::MakeAdmin;
using testing::Op;
using testing::Send;
using testing::SignCommand;
using testing::StatusOf;
using testing::TestAdmin;
using testing::ThresholdsCommand;

class SignatureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 9; ++i) admins_.push_back(MakeAdmin("admin" + std::to_string(i), entropy_));
    unit_ = *CryptoUnit::Create(entropy_);
  }

  // Installs admins [0, n) in imprint mode and sets thresholds sig/rev.
  void Imprint(int n, uint32_t sig, uint32_t rev) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[i]), {}).ok());
    ASSERT_TRUE(Send(*unit_, ThresholdsCommand(sig, rev), Signers(0, n)).ok());
  }

  std::vector<const TestAdmin*> Signers(int from, int to) {
    std::vector<const TestAdmin*> out;
    for (int i = from; i < to; ++i) out.push_back(&admins_[i]);
    return out;
  }

  void ExpectRefused(const absl::Status& status, absl::StatusCode code, const std::string& reason) {
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_EQ(ReasonOf(status), reason) << status;
  }

  crypto::SeededEntropy entropy_{99};
  std::vector<TestAdmin> admins_;
  std::unique_ptr<CryptoUnit> unit_;
};

v1::Command AssignCommand() {
  return Op([](v1::Command& c) { c.mutable_assign_instance()->set_instance("prod"); });
}

TEST_F(SignatureTest, TooFewSignaturesRefused) {
  Imprint(3, 2, 2);
  SecretBytes before = unit_->Snapshot();
  ExpectRefused(Send(*unit_, AddAdminCommand(admins_[3]), Signers(0, 1)),
                absl::StatusCode::kPermissionDenied, "INSUFFICIENT_SIGNATURES");
  EXPECT_TRUE(unit_->Snapshot() == before);
  EXPECT_TRUE(Send(*unit_, AddAdminCommand(admins_[3]), Signers(0, 2)).ok());
}

TEST_F(SignatureTest, SameAdministratorTwiceCountsOnce) {
  Imprint(3, 2, 2);
  ExpectRefused(Send(*unit_, AddAdminCommand(admins_[3]), {&admins_[0], &admins_[0]}),
                absl::StatusCode::kPermissionDenied, "INSUFFICIENT_SIGNATURES");
}

TEST_F(SignatureTest, UnknownSignerRefused) {
  Imprint(2, 1, 1);
  ExpectRefused(Send(*unit_, AssignCommand(), {&admins_[5]}), absl::StatusCode::kUnauthenticated,
                "UNKNOWN_SIGNER");
}

TEST_F(SignatureTest, SignatureOverOtherBytesRefused) {
  Imprint(2, 1, 1);
  v1::Request request = SignCommand(*unit_, AssignCommand(), {&admins_[0]});
  // Sign different bytes with a real administrator and splice the signature in.
  std::string other = request.signed_command().command() + "x";
  request.mutable_signed_command()->mutable_signatures(0)->set_signature(
      *crypto::SignSha512(*admins_[0].key, AsBytes(other)));
  ExpectRefused(StatusOf(unit_->Handle(request).response), absl::StatusCode::kUnauthenticated,
                "BAD_SIGNATURE");
}

TEST_F(SignatureTest, GarbageSignatureRefused) {
  Imprint(2, 1, 1);
  v1::Request request = SignCommand(*unit_, AssignCommand(), {&admins_[0]});
  request.mutable_signed_command()->mutable_signatures(0)->set_signature("not DER");
  ExpectRefused(StatusOf(unit_->Handle(request).response), absl::StatusCode::kUnauthenticated,
                "BAD_SIGNATURE");
}

TEST_F(SignatureTest, CommandForAnotherUnitRefused) {
  Imprint(2, 1, 1);
  auto other = *CryptoUnit::Create(entropy_);
  v1::Request request = SignCommand(*other, AssignCommand(), {&admins_[0]});
  SecretBytes before = unit_->Snapshot();
  ExpectRefused(StatusOf(unit_->Handle(request).response), absl::StatusCode::kPermissionDenied,
                "WRONG_UNIT");
  EXPECT_TRUE(unit_->Snapshot() == before);
}

TEST_F(SignatureTest, ReplayedCommandRefused) {
  Imprint(2, 1, 1);
  v1::Request request = SignCommand(*unit_, AssignCommand(), {&admins_[0]});
  ASSERT_TRUE(StatusOf(unit_->Handle(request).response).ok());
  SecretBytes before = unit_->Snapshot();
  ExpectRefused(StatusOf(unit_->Handle(request).response), absl::StatusCode::kAborted,
                "COUNTER_MISMATCH");
  EXPECT_TRUE(unit_->Snapshot() == before);
}

TEST_F(SignatureTest, StaleCounterRefused) {
  Imprint(2, 1, 1);
  v1::Request stale = SignCommand(*unit_, AssignCommand(), {&admins_[0]});
  ASSERT_TRUE(Send(*unit_, AssignCommand(), {&admins_[0]}).ok());
  ExpectRefused(StatusOf(unit_->Handle(stale).response), absl::StatusCode::kAborted,
                "COUNTER_MISMATCH");
}

TEST_F(SignatureTest, FutureCounterRefused) {
  Imprint(2, 1, 1);
  v1::Command c = AssignCommand();
  v1::Request request = SignCommand(*unit_, c, {&admins_[0]});
  v1::Command parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.signed_command().command()));
  parsed.set_transaction_counter(parsed.transaction_counter() + 1);
  request.mutable_signed_command()->set_command(parsed.SerializeAsString());
  request.mutable_signed_command()->mutable_signatures(0)->set_signature(
      *crypto::SignSha512(*admins_[0].key, AsBytes(request.signed_command().command())));
  ExpectRefused(StatusOf(unit_->Handle(request).response), absl::StatusCode::kAborted,
                "COUNTER_MISMATCH");
}

TEST_F(SignatureTest, ReplayAfterZeroizeRefused) {
  Imprint(2, 1, 1);
  v1::Request old = SignCommand(*unit_, AssignCommand(), {&admins_[0]});
  ASSERT_TRUE(Send(*unit_, Op([](v1::Command& c) { c.mutable_zeroize(); }), {&admins_[0]}).ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[i]), {}).ok());
  ExpectRefused(StatusOf(unit_->Handle(old).response), absl::StatusCode::kAborted,
                "COUNTER_MISMATCH");
}

TEST_F(SignatureTest, ThresholdAboveAdministratorsRefused) {
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[i]), {}).ok());
  // Three signatures cannot exist with two admins; ask for 2 of 3 revocation.
  ExpectRefused(Send(*unit_, ThresholdsCommand(2, 3), Signers(0, 2)),
                absl::StatusCode::kFailedPrecondition, "THRESHOLD_ABOVE_ADMINS");
  EXPECT_EQ(unit_->Info().mode(), v1::MODE_IMPRINT);
}

TEST_F(SignatureTest, ThresholdOutOfRangeRefused) {
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[i]), {}).ok());
  ExpectRefused(Send(*unit_, ThresholdsCommand(0, 1), Signers(0, 2)),
                absl::StatusCode::kInvalidArgument, "BAD_THRESHOLD");
  ExpectRefused(Send(*unit_, ThresholdsCommand(9, 1), Signers(0, 2)),
                absl::StatusCode::kInvalidArgument, "BAD_THRESHOLD");
}

TEST_F(SignatureTest, RemovalBelowThresholdRefused) {
  Imprint(2, 2, 1);
  v1::Command rm = Op([&](v1::Command& c) {
    c.mutable_remove_admin()->set_key_id(crypto::AsString(admins_[1].key_id));
  });
  SecretBytes before = unit_->Snapshot();
  ExpectRefused(Send(*unit_, rm, Signers(0, 2)), absl::StatusCode::kFailedPrecondition,
                "BELOW_THRESHOLD");
  EXPECT_TRUE(unit_->Snapshot() == before);
}

TEST_F(SignatureTest, RemovalBelowRevocationThresholdRefused) {
  Imprint(3, 1, 3);
  v1::Command rm = Op([&](v1::Command& c) {
    c.mutable_remove_admin()->set_key_id(crypto::AsString(admins_[2].key_id));
  });
  ExpectRefused(Send(*unit_, rm, Signers(0, 3)), absl::StatusCode::kFailedPrecondition,
                "BELOW_THRESHOLD");
}

TEST_F(SignatureTest, RemovalNeedsRevocationThreshold) {
  Imprint(4, 1, 2);
  v1::Command rm = Op([&](v1::Command& c) {
    c.mutable_remove_admin()->set_key_id(crypto::AsString(admins_[3].key_id));
  });
  ExpectRefused(Send(*unit_, rm, Signers(0, 1)), absl::StatusCode::kPermissionDenied,
                "INSUFFICIENT_SIGNATURES");
  EXPECT_TRUE(Send(*unit_, rm, Signers(0, 2)).ok());
  EXPECT_EQ(unit_->Info().administrators_size(), 3);
}

TEST_F(SignatureTest, NinthAdministratorRefused) {
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[i]), {}).ok());
  ExpectRefused(Send(*unit_, AddAdminCommand(admins_[8]), {}), absl::StatusCode::kResourceExhausted,
                "TOO_MANY_ADMINS");
  EXPECT_EQ(unit_->Info().administrators_size(), 8);
}

TEST_F(SignatureTest, NameOverThirtyCharactersRefused) {
  TestAdmin long_name = test_support::CopyAdmin(admins_[0]);
  long_name.name = std::string(31, 'x');
  ExpectRefused(Send(*unit_, AddAdminCommand(long_name), {}), absl::StatusCode::kInvalidArgument,
                "BAD_ADMIN_NAME");
  long_name.name = std::string(30, 'x');
  EXPECT_TRUE(Send(*unit_, AddAdminCommand(long_name), {}).ok());
}

TEST_F(SignatureTest, EmptyNameRefused) {
  TestAdmin nameless = test_support::CopyAdmin(admins_[0]);
  nameless.name = "";
  ExpectRefused(Send(*unit_, AddAdminCommand(nameless), {}), absl::StatusCode::kInvalidArgument,
                "BAD_ADMIN_NAME");
}

TEST_F(SignatureTest, DuplicateAdministratorRefused) {
  ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[0]), {}).ok());
  ExpectRefused(Send(*unit_, AddAdminCommand(admins_[0]), {}), absl::StatusCode::kAlreadyExists,
                "ADMIN_EXISTS");
  TestAdmin same_name = test_support::CopyAdmin(admins_[1]);
  same_name.name = admins_[0].name;
  ExpectRefused(Send(*unit_, AddAdminCommand(same_name), {}), absl::StatusCode::kAlreadyExists,
                "ADMIN_NAME_TAKEN");
}

TEST_F(SignatureTest, NonP521KeyRefused) {
  TestAdmin bad = test_support::CopyAdmin(admins_[0]);
  bad.public_key_der = "\x30\x03\x02\x01\x01";
  ExpectRefused(Send(*unit_, AddAdminCommand(bad), {}), absl::StatusCode::kInvalidArgument,
                "BAD_PUBLIC_KEY");
}

TEST_F(SignatureTest, LeavingImprintWithTooFewSignaturesRefused) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[i]), {}).ok());
  SecretBytes before = unit_->Snapshot();
  ExpectRefused(Send(*unit_, ThresholdsCommand(3, 1), Signers(0, 2)),
                absl::StatusCode::kPermissionDenied, "INSUFFICIENT_SIGNATURES");
  EXPECT_TRUE(unit_->Snapshot() == before);
  EXPECT_EQ(unit_->Info().mode(), v1::MODE_IMPRINT);
  EXPECT_TRUE(Send(*unit_, ThresholdsCommand(3, 1), Signers(0, 3)).ok());
  EXPECT_EQ(unit_->Info().mode(), v1::MODE_NORMAL);
}

TEST_F(SignatureTest, NormalModeCommandsNeedASignature) {
  Imprint(2, 1, 1);
  ExpectRefused(Send(*unit_, AssignCommand(), {}), absl::StatusCode::kPermissionDenied,
                "INSUFFICIENT_SIGNATURES");
  ExpectRefused(Send(*unit_, Op([](v1::Command& c) { c.mutable_zeroize(); }), {}),
                absl::StatusCode::kPermissionDenied, "INSUFFICIENT_SIGNATURES");
}

// One person is one administrator: every other encoding of an installed
// administrator's point (explicit curve parameters, compressed or hybrid
// point, non-minimal DER lengths, trailing bytes) is refused by add admin,
// before and after the canonical form is installed, and a signature naming
// the variant's key id does not count as a second signer.
class AdminKeyEncodingTest : public SignatureTest, public ::testing::WithParamInterface<int> {
 protected:
  crypto::encodings::KeyEncoding Variant() {
    return crypto::encodings::NonCanonicalEncodings(*admins_[0].key)[GetParam()];
  }
};

TEST_P(AdminKeyEncodingTest, VariantIsNeverASecondAdministrator) {
  const crypto::encodings::KeyEncoding variant = Variant();
  ASSERT_FALSE(variant.der.empty());
  TestAdmin alias = test_support::CopyAdmin(admins_[0]);
  alias.name = "alias";
  alias.public_key_der = variant.der;
  alias.key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(variant.der));
  ASSERT_NE(alias.key_id, admins_[0].key_id);

  // In imprint mode, as the only administrator and beside the original.
  SecretBytes before = unit_->Snapshot();
  ExpectRefused(Send(*unit_, AddAdminCommand(alias), {}), absl::StatusCode::kInvalidArgument,
                "BAD_PUBLIC_KEY");
  EXPECT_TRUE(unit_->Snapshot() == before);
  ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[0]), {}).ok());
  ASSERT_TRUE(Send(*unit_, AddAdminCommand(admins_[1]), {}).ok());
  before = unit_->Snapshot();
  ExpectRefused(Send(*unit_, AddAdminCommand(alias), {}), absl::StatusCode::kInvalidArgument,
                "BAD_PUBLIC_KEY");
  EXPECT_TRUE(unit_->Snapshot() == before);
  EXPECT_EQ(unit_->Info().administrators_size(), 2);

  // Threshold 2 cannot be met by admin0 signing under two key ids.
  ExpectRefused(Send(*unit_, ThresholdsCommand(2, 2), {&admins_[0], &alias}),
                absl::StatusCode::kUnauthenticated, "UNKNOWN_SIGNER");
  EXPECT_TRUE(unit_->Snapshot() == before);
  EXPECT_EQ(unit_->Info().mode(), v1::MODE_IMPRINT);
  ASSERT_TRUE(Send(*unit_, ThresholdsCommand(2, 2), Signers(0, 2)).ok());
  ExpectRefused(Send(*unit_, AssignCommand(), {&admins_[0], &alias}),
                absl::StatusCode::kUnauthenticated, "UNKNOWN_SIGNER");
}

INSTANTIATE_TEST_SUITE_P(EveryVariant, AdminKeyEncodingTest,
                         ::testing::Range(0, crypto::encodings::kVariantCount),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return std::string(crypto::encodings::kVariantNames[param_info.param]);
                         });

TEST_F(SignatureTest, MoreSignaturesThanAdministratorsCanExistRefused) {
  Imprint(1, 1, 1);
  ExpectRefused(Send(*unit_, AssignCommand(), std::vector<const TestAdmin*>(9, &admins_[0])),
                absl::StatusCode::kInvalidArgument, "TOO_MANY_SIGNATURES");
}

TEST_F(SignatureTest, MalformedCommandBytesRefused) {
  v1::Request request;
  request.mutable_signed_command()->set_command("\xff\xff\xff");
  ExpectRefused(StatusOf(unit_->Handle(request).response), absl::StatusCode::kInvalidArgument,
                "MALFORMED_COMMAND");
}

TEST_F(SignatureTest, CommandWithoutOperationRefused) {
  ExpectRefused(Send(*unit_, v1::Command(), {}), absl::StatusCode::kInvalidArgument,
                "MISSING_OPERATION");
}

TEST_F(SignatureTest, ResponseEchoesRequestId) {
  v1::Request request = SignCommand(*unit_, AssignCommand(), {});
  request.set_id(123456789);
  EXPECT_EQ(unit_->Handle(request).response.id(), 123456789u);
}

}  // namespace
}  // namespace hsmsim::firmware

// The order in which the unit checks a signed command (docs/protocol.md
// section 6.2). Each case breaks every later check as well, then repairs the
// earliest broken one, so the reason proves which check runs first; none
// changes the state.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "firmware/crypto_unit.h"
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

class CheckOrderTest : public ::testing::Test {
 protected:
  // An imprint-mode unit with alice and bob installed; carol is a stranger.
  void SetUp() override {
    unit_ = *CryptoUnit::Create(entropy_);
    ASSERT_TRUE(Send(*unit_, AddAdminCommand(alice_), {}).ok());
    ASSERT_TRUE(Send(*unit_, AddAdminCommand(bob_), {}).ok());
    before_ = unit_->Snapshot();
  }

  // Refusal sends `request` and returns its reason, checking that the
  // refusal changed nothing.
  std::string Refusal(const v1::Request& request) {
    HandleResult result = unit_->Handle(request);
    EXPECT_FALSE(result.state_changed);
    EXPECT_TRUE(unit_->Snapshot() == before_) << "a refused command changed the state";
    return ReasonOf(StatusOf(result.response));
  }

  // Signed returns `command` for this unit and counter, with `signers`.
  v1::Request Signed(const v1::Command& command, const std::vector<const TestAdmin*>& signers) {
    return SignCommand(*unit_, command, signers);
  }

  // Readdressed returns `command` for `unit_id` and `counter`, signed by
  // `signers`.
  v1::Request Readdressed(v1::Command command, const std::string& unit_id, uint64_t counter,
                          const std::vector<const TestAdmin*>& signers) {
    v1::Request request;
    command.set_unit_id(unit_id);
    command.set_transaction_counter(counter);
    request.mutable_signed_command()->set_command(command.SerializeAsString());
    for (const TestAdmin* admin : signers) {
      auto* sig = request.mutable_signed_command()->add_signatures();
      sig->set_admin_key_id(crypto::AsString(admin->key_id));
      sig->set_signature(
          *crypto::SignSha512(*admin->key, AsBytes(request.signed_command().command())));
    }
    return request;
  }

  crypto::SeededEntropy entropy_{31};
  TestAdmin alice_ = MakeAdmin("alice", entropy_);
  TestAdmin bob_ = MakeAdmin("bob", entropy_);
  TestAdmin carol_ = MakeAdmin("carol", entropy_);
  std::unique_ptr<CryptoUnit> unit_;
  SecretBytes before_;
};

v1::Command GenerateImporter() {
  return Op([](v1::Command& c) { c.mutable_generate_importer(); });
}

TEST_F(CheckOrderTest, EachCheckRunsBeforeTheNext) {
  const std::vector<const TestAdmin*> nine_strangers(9, &carol_);
  const std::string wrong_unit(kUnitIdSize, '\x5a');
  const uint64_t counter = unit_->Info().transaction_counter();

  // 1. Bytes that do not parse, before the signature count.
  v1::Request garbage = Readdressed(GenerateImporter(), wrong_unit, counter + 1, nine_strangers);
  garbage.mutable_signed_command()->set_command("\xff\xff\xff");
  EXPECT_EQ(Refusal(garbage), "MALFORMED_COMMAND");
  // A command without an operation, before the signature count and the unit id.
  EXPECT_EQ(Refusal(Readdressed(v1::Command(), wrong_unit, counter + 1, nine_strangers)),
            "MISSING_OPERATION");
  // Too many signatures, before the unit id.
  EXPECT_EQ(Refusal(Readdressed(GenerateImporter(), wrong_unit, counter + 1, nine_strangers)),
            "TOO_MANY_SIGNATURES");
  // 2. The unit id, before the counter.
  EXPECT_EQ(Refusal(Readdressed(GenerateImporter(), wrong_unit, counter + 1, {&carol_})),
            "WRONG_UNIT");
  // 3. The counter, before the signatures.
  const std::string unit_id = unit_->Info().unit_id();
  EXPECT_EQ(Refusal(Readdressed(GenerateImporter(), unit_id, counter + 1, {&carol_})),
            "COUNTER_MISMATCH");
  // 4. Signatures in the order given, before the imprint-mode gate.
  EXPECT_EQ(Refusal(Signed(GenerateImporter(), {&carol_})), "UNKNOWN_SIGNER");
  v1::Request bad_then_unknown = Signed(GenerateImporter(), {&alice_, &carol_});
  bad_then_unknown.mutable_signed_command()->mutable_signatures(0)->set_signature("not DER");
  EXPECT_EQ(Refusal(bad_then_unknown), "BAD_SIGNATURE");
  v1::Request unknown_then_bad = Signed(GenerateImporter(), {&carol_, &alice_});
  unknown_then_bad.mutable_signed_command()->mutable_signatures(1)->set_signature("not DER");
  EXPECT_EQ(Refusal(unknown_then_bad), "UNKNOWN_SIGNER");
  // 5. The imprint-mode gate, before argument validation.
  v1::Command single_part;
  single_part.mutable_load_key_parts()->set_total_parts(1);
  EXPECT_EQ(Refusal(Signed(single_part, {&alice_})), "IMPRINT_MODE");
  // 6. Argument validation, before the signature count (9 would be needed).
  EXPECT_EQ(Refusal(Signed(testing::ThresholdsCommand(9, 1), {&alice_})), "BAD_THRESHOLD");
  // 7. The signature count (3 needed, 2 distinct), before the state, which
  // refuses a threshold of 3 with 2 administrators.
  EXPECT_EQ(Refusal(Signed(testing::ThresholdsCommand(3, 1), {&alice_, &bob_, &bob_})),
            "INSUFFICIENT_SIGNATURES");
  // 8. The state preconditions last.
  v1::Command remove_stranger;
  remove_stranger.mutable_remove_admin()->set_key_id(crypto::AsString(carol_.key_id));
  EXPECT_EQ(Refusal(Signed(remove_stranger, {})), "UNKNOWN_ADMIN");
  // And the counter never moved.
  EXPECT_EQ(unit_->Info().transaction_counter(), counter);
}

}  // namespace
}  // namespace hsmsim::firmware

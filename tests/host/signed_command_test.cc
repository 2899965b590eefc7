#include "host/signed_command.h"

#include <gtest/gtest.h>

#include "common/secret_bytes.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/verification_pattern.h"

namespace hsmsim::host {
namespace {

AdminKey MakeKey(const char* name, uint64_t seed) {
  crypto::SeededEntropy entropy(seed);
  auto key = crypto::GenerateP521(entropy);
  EXPECT_TRUE(key.ok());
  auto admin = MakeAdminKey(name, std::move(*key));
  EXPECT_TRUE(admin.ok()) << admin.status();
  return std::move(*admin);
}

v1::Command SampleCommand() {
  v1::Command command;
  command.set_unit_id(std::string(16, '\x5a'));
  command.set_transaction_counter(42);
  command.mutable_set_thresholds()->set_signature_threshold(2);
  command.mutable_set_thresholds()->set_revocation_threshold(2);
  return command;
}

TEST(SignedCommandTest, EverySignatureVerifiesOverTheExactBytes) {
  AdminKey alice = MakeKey("alice", 1);
  AdminKey bob = MakeKey("bob", 2);
  auto signed_command = SignCommand(SampleCommand(), {&alice, &bob});
  ASSERT_TRUE(signed_command.ok()) << signed_command.status();

  v1::Command parsed;
  ASSERT_TRUE(parsed.ParseFromString(signed_command->command()));
  EXPECT_EQ(parsed.transaction_counter(), 42u);
  EXPECT_EQ(parsed.unit_id(), std::string(16, '\x5a'));
  EXPECT_EQ(parsed.set_thresholds().signature_threshold(), 2u);

  ASSERT_EQ(signed_command->signatures_size(), 2);
  const AdminKey* keys[] = {&alice, &bob};
  for (int i = 0; i < 2; ++i) {
    const v1::Signature& sig = signed_command->signatures(i);
    crypto::KeyId expected_id = crypto::KeyIdOfPublicKeyDer(AsBytes(keys[i]->public_key_der));
    EXPECT_EQ(sig.admin_key_id(), crypto::AsString(expected_id));
    auto public_key = crypto::ParseP521PublicKeyDer(AsBytes(keys[i]->public_key_der));
    ASSERT_TRUE(public_key.ok());
    EXPECT_TRUE(crypto::VerifySha512(**public_key, AsBytes(signed_command->command()),
                                     AsBytes(sig.signature()))
                    .ok());
    // Not over any other bytes.
    std::string altered = signed_command->command();
    altered.back() ^= 1;
    EXPECT_FALSE(
        crypto::VerifySha512(**public_key, AsBytes(altered), AsBytes(sig.signature())).ok());
  }
}

TEST(SignedCommandTest, UnsignedCommandHasNoSignatures) {
  auto signed_command = SignCommand(SampleCommand(), {});
  ASSERT_TRUE(signed_command.ok());
  EXPECT_EQ(signed_command->signatures_size(), 0);
  EXPECT_FALSE(signed_command->command().empty());
}

TEST(SignedCommandTest, SerializationIsStable) {
  AdminKey alice = MakeKey("alice", 3);
  auto a = SignCommand(SampleCommand(), {&alice});
  auto b = SignCommand(SampleCommand(), {&alice});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->command(), b->command());
}

}  // namespace
}  // namespace hsmsim::host

#include "host/admin_public_key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status.h"
#include "crypto/entropy.h"
#include "tests/host/admin_certificate.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

AdminKey NewKey(const char* name) {
  auto key = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
  EXPECT_TRUE(key.ok());
  auto admin = MakeAdminKey(name, std::move(*key));
  EXPECT_TRUE(admin.ok()) << admin.status();
  return std::move(*admin);
}

TEST(AdminPublicKeyTest, PublicKeyFileRoundTripKeepsNameAndKeyId) {
  AdminKey alice = NewKey("alice");
  auto text = SerializeAdminPublicKey(alice);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("# name: alice\n-----BEGIN PUBLIC KEY-----\n"));
  EXPECT_THAT(*text, ::testing::Not(HasSubstr("PRIVATE")));
  EXPECT_TRUE(IsAdminPublicKeyText(*text));
  auto read = ParseAdminPublicKey(*text, "", "alice.pub");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->name, "alice");
  EXPECT_EQ(read->key_id, alice.key_id);
  EXPECT_EQ(read->public_key_der, alice.public_key_der);
  // --name overrides the file's name.
  auto renamed = ParseAdminPublicKey(*text, "alice2", "alice.pub");
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ(renamed->name, "alice2");
}

TEST(AdminPublicKeyTest, CertificateGivesKeyAndSubjectName) {
  AdminKey carol = NewKey("carol");
  const std::string pem = SelfSignedCertificatePem(carol, "carol");
  EXPECT_TRUE(IsAdminPublicKeyText(pem));
  auto read = ParseAdminPublicKey(pem, "", "carol.pem");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->name, "carol");
  EXPECT_EQ(read->key_id, carol.key_id);
}

TEST(AdminPublicKeyTest, BadFilesAreRefusedNamingTheFile) {
  // A key file (private key) is not a public key file.
  EXPECT_FALSE(IsAdminPublicKeyText(
      "# hsmsim-admin-key v1\n# name: a\n-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
  auto damaged = ParseAdminPublicKey(
      "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", "x", "bad.pub");
  EXPECT_EQ(ReasonOf(damaged.status()), "BAD_PUBLIC_KEY_FILE");
  EXPECT_THAT(damaged.status().message(), HasSubstr("bad.pub"));
  auto p256 = ParseAdminPublicKey(P256PublicKeyPem(), "x", "p256.pub");
  EXPECT_EQ(ReasonOf(p256.status()), "BAD_PUBLIC_KEY_FILE");
  EXPECT_THAT(p256.status().message(), HasSubstr("not a P-521 key"));
  // No name anywhere: --name is needed.
  AdminKey bob = NewKey("bob");
  std::string text = *SerializeAdminPublicKey(bob);
  text = text.substr(text.find('\n') + 1);  // without "# name: bob"
  auto unnamed = ParseAdminPublicKey(text, "", "bob.pub");
  EXPECT_EQ(ReasonOf(unnamed.status()), "BAD_ADMIN_NAME");
  EXPECT_THAT(unnamed.status().message(), HasSubstr("--name"));
}

}  // namespace
}  // namespace hsmsim::host

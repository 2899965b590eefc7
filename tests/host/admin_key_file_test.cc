#include "host/admin_key_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/entropy.h"

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

TEST(AdminKeyFileTest, RoundTripKeepsNameAndKey) {
  AdminKey alice = NewKey("alice");
  auto text = SerializeAdminKeyFile(alice, "correct horse");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("# name: alice\n"));
  EXPECT_THAT(*text, HasSubstr("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
  auto opened = ParseAdminKeyFile(*text, "correct horse");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->name, "alice");
  EXPECT_EQ(opened->key_id, alice.key_id);
  EXPECT_EQ(opened->public_key_der, alice.public_key_der);
  // The opened key signs what the original's public key verifies.
  auto sig = crypto::SignSha512(*opened->key, AsBytes(std::string_view("msg")));
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(
      crypto::VerifySha512(*alice.key, AsBytes(std::string_view("msg")), AsBytes(*sig)).ok());
}

TEST(AdminKeyFileTest, WrongPasswordIsRefused) {
  auto text = SerializeAdminKeyFile(NewKey("bob"), "right");
  ASSERT_TRUE(text.ok());
  auto opened = ParseAdminKeyFile(*text, "wrong");
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ReasonOf(opened.status()), "WRONG_PASSWORD");
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr("bob"));
}

TEST(AdminKeyFileTest, DamagedFilesAreBadInput) {
  EXPECT_EQ(ReasonOf(ParseAdminKeyFile("hello", "pw").status()), "BAD_ADMIN_KEY_FILE");
  EXPECT_EQ(ReasonOf(ParseAdminKeyFile("# hsmsim-admin-key v1\n", "pw").status()),
            "BAD_ADMIN_KEY_FILE");
  EXPECT_EQ(ReasonOf(ParseAdminKeyFile("# hsmsim-admin-key v1\n# name: x\n", "pw").status()),
            "BAD_ADMIN_KEY_FILE");
}

TEST(AdminKeyFileTest, EmptyPasswordAndBadNamesAreRefused) {
  EXPECT_EQ(ReasonOf(SerializeAdminKeyFile(NewKey("a"), "").status()), "EMPTY_PASSWORD");
  auto key = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(ReasonOf(MakeAdminKey(std::string(31, 'n'), std::move(*key)).status()),
            "BAD_ADMIN_NAME");
}

TEST(AdminKeyFileTest, FileIsPrivateAndNeverOverwritten) {
  char tmpl[] = "/tmp/hsmsim-adminkey-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/carol.key";
  AdminKey carol = NewKey("carol");
  ASSERT_TRUE(WriteAdminKeyFile(path, carol, "pw").ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReasonOf(WriteAdminKeyFile(path, carol, "pw")), "FILE_EXISTS");
  auto read = ReadAdminKeyFile(path, "pw");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->key_id, carol.key_id);
  EXPECT_EQ(ReasonOf(ReadAdminKeyFile(path + ".missing", "pw").status()), "FILE_UNREADABLE");
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace hsmsim::host

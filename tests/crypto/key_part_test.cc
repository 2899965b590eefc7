// Key parts: import encryption and password-protected part files.
#include "crypto/key_part.h"

#include <gtest/gtest.h>

#include <string>

#include "common/hex.h"
#include "common/status.h"
#include "crypto/ec_p521.h"

namespace hsmsim::crypto {
namespace {

SecretBytes TestPart(uint8_t seed) {
  SecretBytes p(32);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(seed * 31 + i);
  return p;
}

class KeyPartTest : public ::testing::Test {
 protected:
  SeededEntropy entropy_{17};
  EvpPkeyPtr importer_ = *GenerateP521(entropy_);
  std::string importer_der_ = *PublicKeyDer(*importer_);
  KeyId importer_id_ = KeyIdOfPublicKeyDer(AsBytes(importer_der_));
  PartFileOptions fast_{v1::PASSWORD_KDF_PBKDF2_HMAC_SHA256, 10'000, "held by alice"};
};

TEST_F(KeyPartTest, ImportRoundTrip) {
  SecretBytes part = TestPart(1);
  auto enc = EncryptKeyPartToImporter(part, AsBytes(importer_der_), entropy_);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->importer_key_id(), AsString(importer_id_));
  EXPECT_EQ(enc->wrapped_part().size(), 40u);
  // The part never appears in clear in the message.
  EXPECT_EQ(enc->SerializeAsString().find(std::string(part.begin(), part.end())),
            std::string::npos);
  auto dec = DecryptKeyPartWithImporter(*importer_, importer_id_, *enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_TRUE(*dec == part);
}

TEST_F(KeyPartTest, OtherImporterRefused) {
  auto other = *GenerateP521(entropy_);
  std::string other_der = *PublicKeyDer(*other);
  auto enc = *EncryptKeyPartToImporter(TestPart(2), AsBytes(other_der), entropy_);
  EXPECT_EQ(ReasonOf(DecryptKeyPartWithImporter(*importer_, importer_id_, enc).status()),
            "WRONG_IMPORTER_KEY");
  enc.set_importer_key_id(AsString(importer_id_));
  EXPECT_EQ(ReasonOf(DecryptKeyPartWithImporter(*importer_, importer_id_, enc).status()),
            "AUTHENTICATION_FAILED");
}

TEST_F(KeyPartTest, TamperedImportRefused) {
  auto enc = *EncryptKeyPartToImporter(TestPart(3), AsBytes(importer_der_), entropy_);
  v1::EncryptedKeyPart bad = enc;
  bad.mutable_wrapped_part()->at(5) ^= 1;
  EXPECT_EQ(ReasonOf(DecryptKeyPartWithImporter(*importer_, importer_id_, bad).status()),
            "AUTHENTICATION_FAILED");
  bad = enc;
  bad.mutable_ephemeral_public_key()->at(40) ^= 1;
  EXPECT_FALSE(DecryptKeyPartWithImporter(*importer_, importer_id_, bad).ok());
  bad = enc;
  bad.set_wrapped_part("short");
  EXPECT_EQ(ReasonOf(DecryptKeyPartWithImporter(*importer_, importer_id_, bad).status()),
            "BAD_WRAPPED_SIZE");
}

TEST_F(KeyPartTest, WrongPartSizeRefused) {
  SecretBytes short_part(31, 1);
  EXPECT_EQ(
      ReasonOf(EncryptKeyPartToImporter(short_part, AsBytes(importer_der_), entropy_).status()),
      "BAD_KEY_PART");
}

TEST_F(KeyPartTest, PartFileRoundTripPbkdf2) {
  SecretBytes part = TestPart(4);
  auto file = SealKeyPartFile(part, "correct horse", fast_, entropy_);
  ASSERT_TRUE(file.ok()) << file.status();
  auto opened = OpenKeyPartFile(*file, "correct horse");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(*opened == part);
  auto meta = ParseKeyPartFile(*file);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->description(), "held by alice");
  EXPECT_EQ(ToHex(meta->part_verification_pattern()), ToHex(ComputeVerificationPattern(part)));
}

TEST_F(KeyPartTest, PartFileRoundTripScrypt) {
  SecretBytes part = TestPart(5);
  PartFileOptions scrypt{v1::PASSWORD_KDF_SCRYPT, 12, ""};
  auto file = SealKeyPartFile(part, "pw", scrypt, entropy_);
  ASSERT_TRUE(file.ok()) << file.status();
  auto opened = OpenKeyPartFile(*file, "pw");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(*opened == part);
}

TEST_F(KeyPartTest, WrongPasswordRefused) {
  std::string file = *SealKeyPartFile(TestPart(6), "right", fast_, entropy_);
  absl::Status s = OpenKeyPartFile(file, "wrong").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ReasonOf(s), "WRONG_PASSWORD");
}

TEST_F(KeyPartTest, AnyFlippedByteRefused) {
  std::string file = *SealKeyPartFile(TestPart(7), "pw", fast_, entropy_);
  for (size_t i = 0; i < file.size(); ++i) {
    std::string bad = file;
    bad[i] ^= 0x04;
    EXPECT_FALSE(OpenKeyPartFile(bad, "pw").ok()) << "byte " << i;
  }
}

TEST_F(KeyPartTest, EmptyPasswordAndWeakCostRefused) {
  EXPECT_EQ(ReasonOf(SealKeyPartFile(TestPart(8), "", fast_, entropy_).status()), "EMPTY_PASSWORD");
  PartFileOptions weak{v1::PASSWORD_KDF_PBKDF2_HMAC_SHA256, 100, ""};
  EXPECT_EQ(ReasonOf(SealKeyPartFile(TestPart(8), "pw", weak, entropy_).status()), "BAD_PART_FILE");
}

TEST_F(KeyPartTest, NewerVersionAndForeignFilesRefused) {
  std::string file = *SealKeyPartFile(TestPart(9), "pw", fast_, entropy_);
  v1::KeyPartFile f;
  ASSERT_TRUE(f.ParseFromString(file));
  f.set_format_version(2);
  absl::Status s = ParseKeyPartFile(f.SerializeAsString()).status();
  EXPECT_EQ(ReasonOf(s), "UNSUPPORTED_VERSION");
  EXPECT_NE(std::string(s.message()).find("version 2"), std::string::npos);
  f.set_format_version(1);
  f.set_magic("something-else");
  EXPECT_EQ(ReasonOf(ParseKeyPartFile(f.SerializeAsString()).status()), "BAD_PART_FILE");
  EXPECT_EQ(ReasonOf(ParseKeyPartFile("-----BEGIN PRIVATE KEY-----").status()), "BAD_PART_FILE");
  EXPECT_EQ(ReasonOf(ParseKeyPartFile("").status()), "BAD_PART_FILE");
}

}  // namespace
}  // namespace hsmsim::crypto

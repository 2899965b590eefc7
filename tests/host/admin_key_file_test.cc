#include "host/admin_key_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/openssl_ptr.h"

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

// Pkcs8Kdf is what an encrypted PKCS#8 block says about its password KDF,
// read with OpenSSL directly (not with the code under test).
struct Pkcs8Kdf {
  int scheme_nid = NID_undef;  // NID_pbes2 for PBES2
  int kdf_nid = NID_undef;     // NID_id_pbkdf2 or NID_id_scrypt
  int prf_nid = NID_undef;     // PBKDF2's PRF, e.g. NID_hmacWithSHA256
  long iterations = 0;
};

using X509SigPtr = std::unique_ptr<X509_SIG, crypto::OpenSslDeleter<X509_SIG_free>>;
using Pbe2Ptr = std::unique_ptr<PBE2PARAM, crypto::OpenSslDeleter<PBE2PARAM_free>>;
using Pbkdf2Ptr = std::unique_ptr<PBKDF2PARAM, crypto::OpenSslDeleter<PBKDF2PARAM_free>>;
using Pkcs8InfoPtr =
    std::unique_ptr<PKCS8_PRIV_KEY_INFO, crypto::OpenSslDeleter<PKCS8_PRIV_KEY_INFO_free>>;

X509SigPtr ReadPkcs8(std::string_view file_text) {
  const size_t begin = file_text.find("-----BEGIN");
  EXPECT_NE(begin, std::string_view::npos);
  std::string_view pem = file_text.substr(begin);
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509SigPtr(PEM_read_bio_PKCS8(bio.get(), nullptr, nullptr, nullptr));
}

Pkcs8Kdf KdfOf(std::string_view file_text) {
  Pkcs8Kdf out;
  X509SigPtr sig = ReadPkcs8(file_text);
  EXPECT_NE(sig, nullptr);
  if (sig == nullptr) return out;
  const X509_ALGOR* alg = nullptr;
  X509_SIG_get0(sig.get(), &alg, nullptr);
  out.scheme_nid = OBJ_obj2nid(alg->algorithm);
  if (out.scheme_nid != NID_pbes2) return out;
  Pbe2Ptr pbe2(static_cast<PBE2PARAM*>(
      ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter)));
  EXPECT_NE(pbe2, nullptr);
  out.kdf_nid = OBJ_obj2nid(pbe2->keyfunc->algorithm);
  if (out.kdf_nid != NID_id_pbkdf2) return out;
  Pbkdf2Ptr kdf(static_cast<PBKDF2PARAM*>(
      ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter)));
  EXPECT_NE(kdf, nullptr);
  out.iterations = ASN1_INTEGER_get(kdf->iter);
  out.prf_nid = kdf->prf == nullptr ? NID_hmacWithSHA1 : OBJ_obj2nid(kdf->prf->algorithm);
  return out;
}

// LegacyFileText writes `admin` as hsmctl did before the cost was raised:
// PEM_write_bio_PKCS8PrivateKey, OpenSSL's default PBKDF2 cost.
std::string LegacyFileText(const AdminKey& admin, const std::string& password) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(
      PEM_write_bio_PKCS8PrivateKey(bio.get(), admin.key.get(), EVP_aes_256_cbc(), password.data(),
                                    static_cast<int>(password.size()), nullptr, nullptr),
      1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return StrCat(kAdminKeyFileHeader, "\n# name: ", admin.name, "\n",
                std::string(data, static_cast<size_t>(len)));
}

std::string FileTextOfSig(const AdminKey& admin, X509_SIG* sig) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PKCS8(bio.get(), sig), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return StrCat(kAdminKeyFileHeader, "\n# name: ", admin.name, "\n",
                std::string(data, static_cast<size_t>(len)));
}

TEST(AdminKeyFileTest, NewFilesUsePbkdf2With600000Iterations) {
  AdminKey alice = NewKey("alice");
  auto text = SerializeAdminKeyFile(alice, "pw");
  ASSERT_TRUE(text.ok()) << text.status();
  Pkcs8Kdf kdf = KdfOf(*text);
  EXPECT_EQ(kdf.scheme_nid, NID_pbes2);
  EXPECT_EQ(kdf.kdf_nid, NID_id_pbkdf2);
  EXPECT_EQ(kdf.prf_nid, NID_hmacWithSHA256);
  EXPECT_EQ(kdf.iterations, 600'000);
  EXPECT_EQ(kAdminKeyPbkdf2Iterations, 600'000);
  auto opened = ParseAdminKeyFile(*text, "pw");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->key_id, alice.key_id);
}

TEST(AdminKeyFileTest, CostIsBoundedBelowForNewFiles) {
  AdminKey alice = NewKey("alice");
  auto cheap = SerializeAdminKeyFile(alice, "pw", 10'000);
  ASSERT_TRUE(cheap.ok()) << cheap.status();
  EXPECT_EQ(KdfOf(*cheap).iterations, 10'000);
  EXPECT_EQ(ReasonOf(SerializeAdminKeyFile(alice, "pw", 2'048).status()), "BAD_KDF_COST");
  EXPECT_EQ(ReasonOf(SerializeAdminKeyFile(alice, "pw", 10'000'001).status()), "BAD_KDF_COST");
}

TEST(AdminKeyFileTest, FilesWrittenWithOpenSslDefaultCostStillOpen) {
  AdminKey bob = NewKey("bob");
  const std::string legacy = LegacyFileText(bob, "pw");
  ASSERT_EQ(KdfOf(legacy).iterations, 2'048);  // what the old files carry
  auto opened = ParseAdminKeyFile(legacy, "pw");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->name, "bob");
  EXPECT_EQ(opened->key_id, bob.key_id);
  EXPECT_EQ(ReasonOf(ParseAdminKeyFile(legacy, "wrong").status()), "WRONG_PASSWORD");
}

TEST(AdminKeyFileTest, ScryptFilesOpen) {
  AdminKey carol = NewKey("carol");
  Pkcs8InfoPtr info(EVP_PKEY2PKCS8(carol.key.get()));
  ASSERT_NE(info, nullptr);
  X509_ALGOR* pbe = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), nullptr, 0, nullptr, 1 << 14, 8, 1);
  ASSERT_NE(pbe, nullptr);
  X509SigPtr sig(PKCS8_set0_pbe("pw", 2, info.get(), pbe));
  ASSERT_NE(sig, nullptr);
  const std::string text = FileTextOfSig(carol, sig.get());
  EXPECT_EQ(KdfOf(text).kdf_nid, NID_id_scrypt);
  auto opened = ParseAdminKeyFile(text, "pw");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->key_id, carol.key_id);
}

TEST(AdminKeyFileTest, ExcessiveIterationCountIsRefusedBeforeDecrypting) {
  AdminKey dave = NewKey("dave");
  auto text = SerializeAdminKeyFile(dave, "pw", 10'000);
  ASSERT_TRUE(text.ok());
  // Rewrite the iteration count to 2^31 - 1 without running the KDF.
  X509SigPtr sig = ReadPkcs8(*text);
  ASSERT_NE(sig, nullptr);
  X509_ALGOR* alg = nullptr;
  X509_SIG_getm(sig.get(), &alg, nullptr);
  Pbe2Ptr pbe2(static_cast<PBE2PARAM*>(
      ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter)));
  ASSERT_NE(pbe2, nullptr);
  Pbkdf2Ptr kdf(static_cast<PBKDF2PARAM*>(
      ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter)));
  ASSERT_NE(kdf, nullptr);
  ASSERT_EQ(ASN1_INTEGER_set(kdf->iter, 2'147'483'647), 1);
  ASSERT_NE(
      ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), kdf.get(), &pbe2->keyfunc->parameter),
      nullptr);
  ASSERT_NE(ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(PBE2PARAM), pbe2.get(), &alg->parameter),
            nullptr);
  const std::string planted = FileTextOfSig(dave, sig.get());
  ASSERT_EQ(KdfOf(planted).iterations, 2'147'483'647);
  const auto start = std::chrono::steady_clock::now();
  auto opened = ParseAdminKeyFile(planted, "pw");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(ReasonOf(opened.status()), "BAD_ADMIN_KEY_FILE");
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr("2147483647"));
}

}  // namespace
}  // namespace hsmsim::host

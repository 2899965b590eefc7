// EncryptAesGcm, DecryptAesGcm and ImportKey (docs/protocol.md section 10.7):
// known answers from the GCM specification's test cases (McGrew and Viega,
// "The Galois/Counter Mode of Operation", appendix B), refusals of bad
// parameters, and key use across a master key rotation.
#include <gtest/gtest.h>

#include <string>

#include "common/hex.h"
#include "tests/firmware/unit_fixture.h"

namespace hsmsim::firmware {
namespace {

std::string Hex(std::string_view hex) {
  auto bytes = FromHex(hex);
  HSMSIM_CHECK(bytes.ok());
  return *bytes;
}

struct GcmVector {
  const char* name;
  const char* key;
  const char* iv;
  const char* aad;
  const char* plaintext;
  const char* ciphertext;
  const char* tag;
};

constexpr char kP64[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr char kP60[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
constexpr char kAad[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
constexpr char kK128[] = "feffe9928665731c6d6a8f9467308308";
constexpr char kK192[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c";
constexpr char kK256[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr char kIv[] = "cafebabefacedbaddecaf888";

const GcmVector kVectors[] = {
    {"case3_aes128", kK128, kIv, "", kP64,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"case4_aes128_aad", kK128, kIv, kAad, kP60,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"case6_aes128_60_byte_iv", kK128,
     "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
     "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
     kAad, kP60,
     "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
     "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5",
     "619cc5aefffe0bfa462af43c1699d050"},
    {"case9_aes192", kK192, kIv, "", kP64,
     "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c"
     "7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710acade256",
     "9924a7c8587336bfb118024db8674a14"},
    {"case13_aes256_empty", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"case14_aes256_zero_block", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "00000000000000000000000000000000",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"case15_aes256", kK256, kIv, "", kP64,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"case16_aes256_aad", kK256, kIv, kAad, kP60,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

class KeyUseTest : public testing::UnitFixture {
 protected:
  void SetUp() override {
    UnitFixture::SetUp();
    LoadAndCommit(*unit_, k1_);
    Promote(*unit_);
  }

  v1::Response Import(const std::string& key_id, const std::string& value) {
    v1::Request r;
    r.mutable_import_key()->set_key_id(key_id);
    r.mutable_import_key()->set_key_value(value);
    return Call(r);
  }
  std::string ImportedBlob(const std::string& value) {
    v1::Response resp = Import("app/key", value);
    HSMSIM_CHECK(resp.status().code() == 0);
    return resp.import_key().blob();
  }
  v1::Response Encrypt(const std::string& blob, const std::string& iv, const std::string& aad,
                       const std::string& plaintext, uint32_t tag_size = 16) {
    v1::Request r;
    auto* e = r.mutable_encrypt_aes_gcm();
    e->set_blob(blob);
    e->set_iv(iv);
    e->set_aad(aad);
    e->set_plaintext(plaintext);
    e->set_tag_size(tag_size);
    return Call(r);
  }
  v1::Response Decrypt(const std::string& blob, const std::string& iv, const std::string& aad,
                       const std::string& ciphertext, uint32_t tag_size = 16) {
    v1::Request r;
    auto* d = r.mutable_decrypt_aes_gcm();
    d->set_blob(blob);
    d->set_iv(iv);
    d->set_aad(aad);
    d->set_ciphertext(ciphertext);
    d->set_tag_size(tag_size);
    return Call(r);
  }
};

TEST_F(KeyUseTest, GcmSpecificationVectorsEncryptAndDecrypt) {
  for (const GcmVector& v : kVectors) {
    SCOPED_TRACE(v.name);
    const std::string blob = ImportedBlob(Hex(v.key));
    v1::Response enc = Encrypt(blob, Hex(v.iv), Hex(v.aad), Hex(v.plaintext));
    ASSERT_EQ(enc.status().code(), 0) << enc.status().message();
    EXPECT_EQ(ToHex(enc.encrypt_aes_gcm().ciphertext()), std::string(v.ciphertext) + v.tag);
    EXPECT_FALSE(enc.encrypt_aes_gcm().blob_under_old());
    v1::Response dec = Decrypt(blob, Hex(v.iv), Hex(v.aad), Hex(v.ciphertext) + Hex(v.tag));
    ASSERT_EQ(dec.status().code(), 0) << dec.status().message();
    EXPECT_EQ(ToHex(dec.decrypt_aes_gcm().plaintext()), v.plaintext);
  }
}

TEST_F(KeyUseTest, ShortTagIsThePrefixOfTheFullTag) {
  const GcmVector& v = kVectors[6];
  const std::string blob = ImportedBlob(Hex(v.key));
  for (uint32_t tag_size : {12u, 13u, 14u, 15u}) {
    v1::Response enc = Encrypt(blob, Hex(v.iv), "", Hex(v.plaintext), tag_size);
    ASSERT_EQ(enc.status().code(), 0);
    EXPECT_EQ(ToHex(enc.encrypt_aes_gcm().ciphertext()),
              std::string(v.ciphertext) + std::string(v.tag).substr(0, tag_size * 2));
    v1::Response dec = Decrypt(blob, Hex(v.iv), "", enc.encrypt_aes_gcm().ciphertext(), tag_size);
    EXPECT_EQ(ToHex(dec.decrypt_aes_gcm().plaintext()), v.plaintext);
  }
}

TEST_F(KeyUseTest, AlteredCiphertextAadOrTagIsRefused) {
  const GcmVector& v = kVectors[7];
  const std::string blob = ImportedBlob(Hex(v.key));
  std::string ct = Hex(v.ciphertext) + Hex(v.tag);
  std::string altered = ct;
  altered[3] ^= 1;
  EXPECT_EQ(Decrypt(blob, Hex(v.iv), Hex(v.aad), altered).status().reason(),
            "CIPHERTEXT_AUTHENTICATION_FAILED");
  altered = ct;
  altered.back() ^= 1;
  EXPECT_EQ(Decrypt(blob, Hex(v.iv), Hex(v.aad), altered).status().reason(),
            "CIPHERTEXT_AUTHENTICATION_FAILED");
  v1::Response wrong_aad = Decrypt(blob, Hex(v.iv), "other", ct);
  EXPECT_EQ(wrong_aad.status().reason(), "CIPHERTEXT_AUTHENTICATION_FAILED");
  EXPECT_FALSE(wrong_aad.has_decrypt_aes_gcm());
}

TEST_F(KeyUseTest, BadParametersAreRefusedNamingTheProblem) {
  const std::string blob = ImportedBlob(std::string(32, 'k'));
  const std::string iv(12, 'i');
  EXPECT_EQ(Encrypt(blob, "", "", "x").status().reason(), "BAD_GCM_PARAMETERS");
  EXPECT_EQ(Encrypt(blob, std::string(129, 'i'), "", "x").status().reason(), "BAD_GCM_PARAMETERS");
  EXPECT_EQ(Encrypt(blob, std::string(128, 'i'), "", "x").status().code(), 0);
  v1::Response tag = Encrypt(blob, iv, "", "x", 11);
  EXPECT_EQ(tag.status().reason(), "BAD_GCM_PARAMETERS");
  EXPECT_NE(tag.status().message().find("11"), std::string::npos);
  EXPECT_EQ(Encrypt(blob, iv, "", "x", 17).status().reason(), "BAD_GCM_PARAMETERS");
  EXPECT_EQ(Encrypt(blob, iv, "", std::string(65'537, 'p')).status().reason(), "MESSAGE_TOO_LARGE");
  EXPECT_EQ(Encrypt(blob, iv, std::string(65'537, 'a'), "p").status().reason(),
            "MESSAGE_TOO_LARGE");
  EXPECT_EQ(Encrypt(blob, iv, "", std::string(65'536, 'p')).status().code(), 0);
  EXPECT_EQ(Decrypt(blob, iv, "", "short").status().reason(), "BAD_GCM_PARAMETERS");
  EXPECT_EQ(Encrypt("not a blob", iv, "", "x").status().reason(), "MALFORMED_BLOB");
}

TEST_F(KeyUseTest, ImportRefusesBadSizesAndNeedsCurrent) {
  for (size_t size : {0, 15, 17, 31, 33, 64}) {
    v1::Response resp = Import("k", std::string(size, 'v'));
    EXPECT_EQ(resp.status().reason(), "BAD_AES_KEY_SIZE") << size;
    EXPECT_NE(resp.status().message().find(std::to_string(size)), std::string::npos);
  }
  EXPECT_EQ(Import("", std::string(16, 'v')).status().reason(), "BAD_KEY_ID");
  auto fresh = NewUnit();
  v1::Request r;
  r.mutable_import_key()->set_key_id("k");
  r.mutable_import_key()->set_key_value(std::string(16, 'v'));
  EXPECT_EQ(fresh->Handle(r).response.status().reason(), "CURRENT_REGISTER_EMPTY");
}

TEST_F(KeyUseTest, GeneratedShortKeysWork) {
  for (auto algorithm : {v1::KEY_ALGORITHM_AES_128, v1::KEY_ALGORITHM_AES_192}) {
    v1::Request r;
    r.mutable_generate_key()->set_key_id("g");
    r.mutable_generate_key()->set_algorithm(algorithm);
    v1::Response gen = Call(r);
    ASSERT_EQ(gen.status().code(), 0) << gen.status().message();
    const std::string& blob = gen.generate_key().blob();
    v1::Response enc = Encrypt(blob, "iv", "", "hello");
    ASSERT_EQ(enc.status().code(), 0);
    EXPECT_EQ(
        Decrypt(blob, "iv", "", enc.encrypt_aes_gcm().ciphertext()).decrypt_aes_gcm().plaintext(),
        "hello");
    // The data key wrap is for AES-256 root keys only.
    v1::Request wrap;
    wrap.mutable_wrap_key()->set_blob(blob);
    wrap.mutable_wrap_key()->set_plaintext("dk");
    EXPECT_EQ(Call(wrap).status().reason(), "UNSUPPORTED_ALGORITHM");
  }
  v1::Request batch;
  batch.mutable_generate_keys()->add_key_ids("g");
  batch.mutable_generate_keys()->set_algorithm(v1::KEY_ALGORITHM_AES_128);
  EXPECT_EQ(Call(batch).status().reason(), "UNSUPPORTED_ALGORITHM");
}

TEST_F(KeyUseTest, BlobUnderOldStillWorksAndUnknownWkidAsksForTheOtherBlob) {
  const GcmVector& v = kVectors[6];
  const std::string old_blob = ImportedBlob(Hex(v.key));
  LoadAndCommit(*unit_, k2_);
  // During the rotation (NEW committed) the blob under CURRENT works.
  EXPECT_EQ(Encrypt(old_blob, Hex(v.iv), "", Hex(v.plaintext)).status().code(), 0);
  v1::Request rewrap;
  rewrap.mutable_reencrypt_batch()->add_blobs(old_blob);
  const std::string new_blob = Call(rewrap).reencrypt_batch().results(0).blob();
  // Under NEW: not yet usable.
  EXPECT_EQ(Encrypt(new_blob, Hex(v.iv), "", Hex(v.plaintext)).status().reason(), "BLOB_UNDER_NEW");
  Promote(*unit_);
  v1::Response enc_old = Encrypt(old_blob, Hex(v.iv), "", Hex(v.plaintext));
  ASSERT_EQ(enc_old.status().code(), 0);
  EXPECT_TRUE(enc_old.encrypt_aes_gcm().blob_under_old());
  EXPECT_EQ(ToHex(enc_old.encrypt_aes_gcm().ciphertext()), std::string(v.ciphertext) + v.tag);
  v1::Response enc_new = Encrypt(new_blob, Hex(v.iv), "", Hex(v.plaintext));
  EXPECT_EQ(enc_new.encrypt_aes_gcm().ciphertext(), enc_old.encrypt_aes_gcm().ciphertext());
  // After the next rotation the first generation is gone: UNKNOWN_WKID.
  LoadAndCommit(*unit_, k3_);
  Promote(*unit_);
  EXPECT_EQ(Encrypt(old_blob, Hex(v.iv), "", Hex(v.plaintext)).status().reason(), "UNKNOWN_WKID");
  EXPECT_EQ(Decrypt(old_blob, Hex(v.iv), "", Hex(v.ciphertext) + Hex(v.tag)).status().reason(),
            "UNKNOWN_WKID");
}

TEST_F(KeyUseTest, KeyUseIsReadOnly) {
  v1::Request r;
  r.mutable_encrypt_aes_gcm();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_decrypt_aes_gcm();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_import_key();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
}

}  // namespace
}  // namespace hsmsim::firmware

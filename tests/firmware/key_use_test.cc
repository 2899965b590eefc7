// EncryptAesGcm, DecryptAesGcm and ImportKey (docs/protocol.md section 10.7):
// known answers from the GCM specification's test cases (McGrew and Viega,
// "The Galois/Counter Mode of Operation", appendix B), refusals of bad
// parameters, and key use across a master key rotation. WrapAesKeyPad and
// UnwrapAesKeyPad (section 10.8): RFC 5649 section 6's test vectors, AES
// keys wrapped to known answers, refusals, and wrapping during a rotation.
// EncryptAesCbcPad and DecryptAesCbcPad (section 10.9): NIST SP 800-38A
// F.2.1 and F.2.5 for the four unpadded blocks, then the padding block.
#include "firmware/internal/key_use.h"

#include <gtest/gtest.h>

#include <string>

#include "common/hex.h"
#include "common/status.h"
#include "proto/wire/blob_attributes.h"
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

  v1::Response Import(const std::string& key_id, const std::string& value,
                      uint32_t attributes = 0) {
    v1::Request r;
    r.mutable_import_key()->set_key_id(key_id);
    r.mutable_import_key()->set_key_value(value);
    r.mutable_import_key()->set_attributes(attributes);
    return Call(r);
  }
  std::string ImportedBlob(const std::string& value, uint32_t attributes = 0) {
    v1::Response resp = Import("app/key", value, attributes);
    HSMSIM_CHECK(resp.status().code() == 0);
    return resp.import_key().blob();
  }
  // A key its creator made extractable (a PKCS#11 key with CKA_EXTRACTABLE
  // TRUE): the only kind WrapAesKeyPad wraps.
  std::string ExtractableBlob(const std::string& value) {
    return ImportedBlob(value, wire::kBlobAttributeExtractable);
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

// RFC 5649 section 6: the 192-bit KEK and its two examples.
constexpr char kRfc5649Kek[] = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8";
constexpr char kRfc5649Key20[] = "c37b7e6492584340bed12207808941155068f738";
constexpr char kRfc5649Wrapped20[] =
    "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a";
constexpr char kRfc5649Key7[] = "466f7250617369";
constexpr char kRfc5649Wrapped7[] = "afbeb0f07dfbf5419200f2ccb50bb24f";
// AES keys wrapped under the same KEK (computed with Python's cryptography,
// aes_key_wrap_with_padding).
constexpr char kAes128Key[] = "000102030405060708090a0b0c0d0e0f";
constexpr char kAes128Wrapped[] = "fae3022b1073e043182236d89f83c916fdaf8828261c3215";
constexpr char kAes256Key[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr char kAes256Wrapped[] =
    "fe6a0320617d94d5abcd3cadbb5a15ee23574ad2a6509b3f5a2b3b9d96fda766e6d1204253503895";

TEST(AesKeyWrapPadTest, Rfc5649Section6Vectors) {
  const std::string kek = Hex(kRfc5649Kek);
  for (auto [key, wrapped] :
       {std::pair{kRfc5649Key20, kRfc5649Wrapped20}, std::pair{kRfc5649Key7, kRfc5649Wrapped7}}) {
    auto out = internal::AesKeyWrapPad(AsBytes(kek), AsBytes(Hex(key)));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(ToHex(*out), wrapped);
    auto back = internal::AesKeyUnwrapPad(AsBytes(kek), AsBytes(Hex(wrapped)));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(ToHex(*back), key);
  }
}

TEST(AesKeyWrapPadTest, AlteredOrMisshapenWrappedKeysAreRefused) {
  const std::string kek = Hex(kRfc5649Kek);
  std::string altered = Hex(kRfc5649Wrapped20);
  altered[5] ^= 1;
  EXPECT_EQ(ReasonOf(internal::AesKeyUnwrapPad(AsBytes(kek), AsBytes(altered)).status()),
            "WRAPPED_KEY_AUTHENTICATION_FAILED");
  const std::string other_kek(24, '\x01');
  EXPECT_EQ(
      ReasonOf(
          internal::AesKeyUnwrapPad(AsBytes(other_kek), AsBytes(Hex(kRfc5649Wrapped7))).status()),
      "WRAPPED_KEY_AUTHENTICATION_FAILED");
  EXPECT_EQ(
      ReasonOf(internal::AesKeyUnwrapPad(AsBytes(kek), AsBytes(std::string(20, 'x'))).status()),
      "MALFORMED_WRAPPED_KEY");
  EXPECT_EQ(ReasonOf(internal::AesKeyWrapPad(AsBytes(std::string(20, 'k')), AsBytes(kek)).status()),
            "BAD_AES_KEY_SIZE");
  EXPECT_EQ(ReasonOf(internal::AesKeyWrapPad(AsBytes(kek), AsBytes(std::string())).status()),
            "BAD_DATA_KEY_SIZE");
}

TEST_F(KeyUseTest, WrapAesKeyPadGivesTheRfc5649BytesAndUnwrapMakesAUsableBlob) {
  const std::string kek_blob = ImportedBlob(Hex(kRfc5649Kek));
  for (auto [key, wrapped] :
       {std::pair{kAes128Key, kAes128Wrapped}, std::pair{kAes256Key, kAes256Wrapped}}) {
    const std::string key_blob = ExtractableBlob(Hex(key));
    v1::Request wrap;
    wrap.mutable_wrap_aes_key_pad()->set_wrapping_blob(kek_blob);
    wrap.mutable_wrap_aes_key_pad()->set_key_blob(key_blob);
    v1::Response wrapped_resp = Call(wrap);
    ASSERT_EQ(wrapped_resp.status().code(), 0) << wrapped_resp.status().message();
    EXPECT_EQ(ToHex(wrapped_resp.wrap_aes_key_pad().wrapped()), wrapped);

    v1::Request unwrap;
    unwrap.mutable_unwrap_aes_key_pad()->set_wrapping_blob(kek_blob);
    unwrap.mutable_unwrap_aes_key_pad()->set_wrapped(Hex(wrapped));
    unwrap.mutable_unwrap_aes_key_pad()->set_key_id("app/unwrapped");
    v1::Response unwrapped = Call(unwrap);
    ASSERT_EQ(unwrapped.status().code(), 0) << unwrapped.status().message();
    // The new blob holds the same key: it encrypts as the imported one.
    const std::string& blob = unwrapped.unwrap_aes_key_pad().blob();
    EXPECT_NE(blob, key_blob);
    EXPECT_EQ(Encrypt(blob, "iv", "", "data").encrypt_aes_gcm().ciphertext(),
              Encrypt(key_blob, "iv", "", "data").encrypt_aes_gcm().ciphertext());
  }
}

TEST_F(KeyUseTest, UnwrapAesKeyPadRefusesWhatIsNotAWrappedAesKey) {
  const std::string kek_blob = ImportedBlob(Hex(kRfc5649Kek));
  auto unwrap = [&](const std::string& wrapped) {
    v1::Request r;
    r.mutable_unwrap_aes_key_pad()->set_wrapping_blob(kek_blob);
    r.mutable_unwrap_aes_key_pad()->set_wrapped(wrapped);
    r.mutable_unwrap_aes_key_pad()->set_key_id("k");
    return Call(r).status().reason();
  };
  // RFC 5649's 20-byte key unwraps (the integrity check passes) but is no
  // AES key; its 7-byte key is too short to be one at all.
  EXPECT_EQ(unwrap(Hex(kRfc5649Wrapped20)), "BAD_AES_KEY_SIZE");
  EXPECT_EQ(unwrap(Hex(kRfc5649Wrapped7)), "MALFORMED_WRAPPED_KEY");
  std::string altered = Hex(kAes128Wrapped);
  altered.back() ^= 1;
  EXPECT_EQ(unwrap(altered), "WRAPPED_KEY_AUTHENTICATION_FAILED");
}

// A key leaves the unit only when its blob says so: not a key imported or
// generated without the extractable attribute, and never one of hsmctl's
// root keys (GenerateKeys), even under a wrapping key the caller knows.
TEST_F(KeyUseTest, WrapAesKeyPadRefusesKeysNotMadeExtractable) {
  const std::string kek_blob = ImportedBlob(Hex(kRfc5649Kek));
  v1::Request generate;
  generate.mutable_generate_keys()->add_key_ids("root/1");
  generate.mutable_generate_keys()->set_algorithm(v1::KEY_ALGORITHM_AES_256);
  v1::Response generated = Call(generate);
  ASSERT_EQ(generated.status().code(), 0) << generated.status().message();
  for (const std::string& key_blob :
       {ImportedBlob(Hex(kAes128Key)), generated.generate_keys().blobs(0)}) {
    v1::Request wrap;
    wrap.mutable_wrap_aes_key_pad()->set_wrapping_blob(kek_blob);
    wrap.mutable_wrap_aes_key_pad()->set_key_blob(key_blob);
    v1::Response refused = Call(wrap);
    EXPECT_EQ(refused.status().reason(), "KEY_NOT_EXTRACTABLE");
    EXPECT_TRUE(refused.wrap_aes_key_pad().wrapped().empty());
  }
  // The attribute is bound to the blob: the same bytes with the bit set in
  // the header no longer open.
  std::string forged = ImportedBlob(Hex(kAes128Key));
  forged[5] = static_cast<char>(forged[5] | 0x1);  // attributes' low byte
  v1::Request wrap;
  wrap.mutable_wrap_aes_key_pad()->set_wrapping_blob(kek_blob);
  wrap.mutable_wrap_aes_key_pad()->set_key_blob(forged);
  EXPECT_EQ(Call(wrap).status().reason(), "BLOB_AUTHENTICATION_FAILED");
}

TEST_F(KeyUseTest, WrapAesKeyPadWorksWithBlobsOfTwoGenerationsDuringARotation) {
  const std::string kek_blob = ImportedBlob(Hex(kRfc5649Kek));
  const std::string key_blob = ExtractableBlob(Hex(kAes128Key));
  LoadAndCommit(*unit_, k2_);
  v1::Request rewrap;
  rewrap.mutable_reencrypt_batch()->add_blobs(key_blob);
  const std::string new_key_blob = Call(rewrap).reencrypt_batch().results(0).blob();
  v1::Request wrap;
  wrap.mutable_wrap_aes_key_pad()->set_wrapping_blob(kek_blob);
  wrap.mutable_wrap_aes_key_pad()->set_key_blob(new_key_blob);
  EXPECT_EQ(Call(wrap).status().reason(), "BLOB_UNDER_NEW");
  Promote(*unit_);
  // The KEK's blob is under OLD now, the key's under CURRENT.
  v1::Response resp = Call(wrap);
  ASSERT_EQ(resp.status().code(), 0) << resp.status().message();
  EXPECT_EQ(ToHex(resp.wrap_aes_key_pad().wrapped()), kAes128Wrapped);
  EXPECT_TRUE(resp.wrap_aes_key_pad().wrapping_blob_under_old());
  EXPECT_FALSE(resp.wrap_aes_key_pad().key_blob_under_old());
}

// NIST SP 800-38A appendix F.2: the IV and plaintext of F.2.1 (CBC-AES128)
// and F.2.5 (CBC-AES256), their ciphertexts, and the block a full block of
// PKCS#7 padding (16 x 0x10) encrypts to after them (computed with Python's
// cryptography).
constexpr char kCbcIv[] = "000102030405060708090a0b0c0d0e0f";
constexpr char kCbcPlaintext[] =
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
struct CbcVector {
  const char* key;
  const char* ciphertext;
  const char* padding_block;
};
const CbcVector kCbcVectors[] = {
    {"2b7e151628aed2a6abf7158809cf4f3c",
     "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
     "8cb82807230e1321d3fae00d18cc2012"},
    {"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
     "3f461796d6b0d6b2e0c2a72b4d80e644"},
};

v1::Request CbcRequest(bool encrypt, const std::string& blob, const std::string& iv,
                       const std::string& data) {
  v1::Request r;
  if (encrypt) {
    r.mutable_encrypt_aes_cbc_pad()->set_blob(blob);
    r.mutable_encrypt_aes_cbc_pad()->set_iv(iv);
    r.mutable_encrypt_aes_cbc_pad()->set_plaintext(data);
  } else {
    r.mutable_decrypt_aes_cbc_pad()->set_blob(blob);
    r.mutable_decrypt_aes_cbc_pad()->set_iv(iv);
    r.mutable_decrypt_aes_cbc_pad()->set_ciphertext(data);
  }
  return r;
}

TEST_F(KeyUseTest, AesCbcPadMatchesSp800_38aAndRoundTrips) {
  for (const CbcVector& v : kCbcVectors) {
    const std::string blob = ImportedBlob(Hex(v.key));
    v1::Response enc = Call(CbcRequest(true, blob, Hex(kCbcIv), Hex(kCbcPlaintext)));
    ASSERT_EQ(enc.status().code(), 0) << enc.status().message();
    EXPECT_EQ(ToHex(enc.encrypt_aes_cbc_pad().ciphertext()),
              std::string(v.ciphertext) + v.padding_block);
    v1::Response dec =
        Call(CbcRequest(false, blob, Hex(kCbcIv), enc.encrypt_aes_cbc_pad().ciphertext()));
    ASSERT_EQ(dec.status().code(), 0) << dec.status().message();
    EXPECT_EQ(ToHex(dec.decrypt_aes_cbc_pad().plaintext()), kCbcPlaintext);
  }
  // Lengths that are not whole blocks: 1..16 bytes of padding, and none
  // lost.
  const std::string blob = ImportedBlob(Hex(kCbcVectors[1].key));
  for (size_t n : {0, 1, 15, 16, 17, 100}) {
    const std::string data(n, 'd');
    v1::Response enc = Call(CbcRequest(true, blob, Hex(kCbcIv), data));
    ASSERT_EQ(enc.status().code(), 0);
    EXPECT_EQ(enc.encrypt_aes_cbc_pad().ciphertext().size(), (n / 16 + 1) * 16);
    EXPECT_EQ(Call(CbcRequest(false, blob, Hex(kCbcIv), enc.encrypt_aes_cbc_pad().ciphertext()))
                  .decrypt_aes_cbc_pad()
                  .plaintext(),
              data);
  }
}

TEST_F(KeyUseTest, AesCbcPadRefusesBadIvsSizesAndPadding) {
  const std::string blob = ImportedBlob(Hex(kCbcVectors[0].key));
  EXPECT_EQ(Call(CbcRequest(true, blob, "short", "x")).status().reason(), "BAD_CBC_PARAMETERS");
  EXPECT_EQ(Call(CbcRequest(false, blob, Hex(kCbcIv), std::string(20, 'c'))).status().reason(),
            "BAD_CBC_PARAMETERS");
  EXPECT_EQ(Call(CbcRequest(false, blob, Hex(kCbcIv), "")).status().reason(), "BAD_CBC_PARAMETERS");
  EXPECT_EQ(Call(CbcRequest(true, blob, Hex(kCbcIv), std::string(65'537, 'p'))).status().reason(),
            "MESSAGE_TOO_LARGE");
  // The F.2.1 blocks without their padding block end in no valid padding.
  EXPECT_EQ(
      Call(CbcRequest(false, blob, Hex(kCbcIv), Hex(kCbcVectors[0].ciphertext))).status().reason(),
      "CBC_PADDING_INVALID");
}

TEST_F(KeyUseTest, KeyUseIsReadOnly) {
  v1::Request r;
  r.mutable_wrap_aes_key_pad();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_unwrap_aes_key_pad();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_encrypt_aes_cbc_pad();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_decrypt_aes_cbc_pad();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_encrypt_aes_gcm();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_decrypt_aes_gcm();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
  r.mutable_import_key();
  EXPECT_TRUE(CryptoUnit::IsReadOnly(r));
}

}  // namespace
}  // namespace hsmsim::firmware

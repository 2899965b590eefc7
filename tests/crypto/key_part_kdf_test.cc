// The key part KDF field (docs/protocol.md section 13): the card KDF (v2)
// against its definition, messages without the field read as HKDF, and the
// field bound to the decryption.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <string>

#include "common/status.h"
#include "crypto/ec_p521.h"
#include "crypto/key_part.h"
#include "crypto/symmetric.h"

namespace hsmsim::crypto {
namespace {

class KeyPartKdfTest : public ::testing::Test {
 protected:
  SeededEntropy entropy_{23};
  EvpPkeyPtr importer_ = *GenerateP521(entropy_);
  std::string importer_der_ = *PublicKeyDer(*importer_);
  KeyId importer_id_ = KeyIdOfPublicKeyDer(AsBytes(importer_der_));
  SecretBytes part_ = SecretBytes(32, 0x3c);
};

TEST_F(KeyPartKdfTest, CardKdfRoundTripAndField) {
  auto enc = EncryptKeyPartToImporter(part_, AsBytes(importer_der_), entropy_,
                                      v1::KEY_PART_KDF_TOKEN_AES_ECB);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->kdf(), v1::KEY_PART_KDF_TOKEN_AES_ECB);
  auto dec = DecryptKeyPartWithImporter(*importer_, importer_id_, *enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_TRUE(*dec == part_);
}

// Z' = last 32 bytes of Z; D = SHA-256(label || key id || point);
// KEK = AES-256-ECB(Z', D); wrapped = RFC 5649 (KEK, part). Computed here
// with OpenSSL directly, as a token computes it.
TEST_F(KeyPartKdfTest, CardKdfIsWhatTheProtocolSays) {
  auto enc = *EncryptKeyPartToImporter(part_, AsBytes(importer_der_), entropy_,
                                       v1::KEY_PART_KDF_TOKEN_AES_ECB);
  EvpPkeyPtr ephemeral = *ParseP521PublicPoint(AsBytes(enc.ephemeral_public_key()));
  SecretBytes z = *EcdhSharedSecret(*importer_, *ephemeral);
  ASSERT_EQ(z.size(), 66u);
  std::string input = std::string("hsmsim/v1 key part import v2") + AsString(importer_id_) +
                      enc.ephemeral_public_key();
  unsigned char d[32];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), d);
  EXPECT_EQ(KeyPartTokenKdfContext(importer_id_, enc.ephemeral_public_key()),
            std::string(reinterpret_cast<char*>(d), 32));
  SecretBytes kek(32);
  int len = 0;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_256_ecb(), nullptr, z.data() + 34, nullptr);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EVP_EncryptUpdate(ctx, kek.data(), &len, d, 32);
  EVP_CIPHER_CTX_free(ctx);
  ASSERT_EQ(len, 32);
  auto unwrapped = AesKeyUnwrapPad(kek, AsBytes(enc.wrapped_part()));
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_TRUE(*unwrapped == part_);
}

TEST_F(KeyPartKdfTest, MessagesWithoutTheFieldAreHkdf) {
  auto enc = *EncryptKeyPartToImporter(part_, AsBytes(importer_der_), entropy_);
  EXPECT_EQ(enc.kdf(), v1::KEY_PART_KDF_UNSPECIFIED);  // the bytes of before the field
  enc.set_kdf(v1::KEY_PART_KDF_HKDF_SHA256);
  EXPECT_TRUE(DecryptKeyPartWithImporter(*importer_, importer_id_, enc).ok());
  // The field decides the KDF: the same message read as v2 does not open.
  enc.set_kdf(v1::KEY_PART_KDF_TOKEN_AES_ECB);
  EXPECT_EQ(ReasonOf(DecryptKeyPartWithImporter(*importer_, importer_id_, enc).status()),
            "AUTHENTICATION_FAILED");
}

TEST_F(KeyPartKdfTest, UnknownKdfRefused) {
  auto enc = *EncryptKeyPartToImporter(part_, AsBytes(importer_der_), entropy_);
  enc.set_kdf(static_cast<v1::KeyPartKdf>(7));
  EXPECT_EQ(ReasonOf(DecryptKeyPartWithImporter(*importer_, importer_id_, enc).status()),
            "UNKNOWN_KEY_PART_KDF");
}

}  // namespace
}  // namespace hsmsim::crypto

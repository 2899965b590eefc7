// host/pkcs11 in process with SoftHSM2 tokens: what the token lacks, a token
// removed in the middle of a ceremony, URIs.
#include "card_test_support.h"
#include "host/pkcs11/card_admin_key.h"
#include "host/pkcs11/card_key_part.h"
#include "host/pkcs11/token_uri.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

class CardTokenTest : public ::testing::Test {
 protected:
  TempDir tmp_;
  SoftHsm hsm_{tmp_};
};

TEST_F(CardTokenTest, UriParsedByP11KitWithoutLeakingThePinValue) {
  auto uri =
      pkcs11::TokenUri::Parse("pkcs11:token=alice;object=key%201;id=%01%02?pin-value=s3cret");
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->object_label(), "key 1");
  EXPECT_EQ(uri->object_id(), std::string("\x01\x02", 2));
  EXPECT_EQ(AsStringView(uri->pin_value()), "s3cret");
  EXPECT_THAT(uri->Printable(), Not(HasSubstr("s3cret")));
  auto bad = pkcs11::TokenUri::Parse("pkcs11:token=a?pin-value=s3cret&pin-source=/x");
  EXPECT_EQ(ReasonOf(bad.status()), "BAD_PKCS11_URI");
  EXPECT_THAT(bad.status().message(), Not(HasSubstr("s3cret")));
  EXPECT_EQ(ReasonOf(pkcs11::TokenUri::Parse("file:/x").status()), "BAD_PKCS11_URI");
}

TEST_F(CardTokenTest, MechanismTheTokenLacksIsNamed) {
  hsm_.InitToken("alice");
  pkcs11::CardSet cards("");
  auto uri = pkcs11::TokenUri::Parse(hsm_.Uri("alice"));
  ASSERT_TRUE(uri.ok());
  auto token = cards.OpenToken(*uri);
  ASSERT_TRUE(token.ok()) << token.status();
  absl::Status lacking = (*token)->RequireMechanism(CKM_ECDH1_COFACTOR_DERIVE, CKF_DERIVE,
                                                    "CKM_ECDH1_COFACTOR_DERIVE");
  EXPECT_EQ(ReasonOf(lacking), "MECHANISM_NOT_SUPPORTED");
  EXPECT_THAT(lacking.message(), HasSubstr("token 'alice'"));
  EXPECT_THAT(lacking.message(), HasSubstr("CKM_ECDH1_COFACTOR_DERIVE"));
  // Offered, but not for that use.
  EXPECT_EQ(ReasonOf((*token)->RequireMechanism(CKM_SHA256, CKF_SIGN, "CKM_SHA256 signing")),
            "MECHANISM_NOT_SUPPORTED");
  EXPECT_TRUE((*token)->RequireMechanism(CKM_ECDSA, CKF_SIGN, "CKM_ECDSA").ok());
}

// Modules registered with p11-kit are found by name; a URI without a PIN
// asks for the PIN once per token, naming it.
TEST_F(CardTokenTest, RegisteredModuleByNameAndOnePromptPerToken) {
  hsm_.InitToken("alice");
  auto uri = pkcs11::TokenUri::Parse("pkcs11:token=alice");
  ASSERT_TRUE(uri.ok());
  {  // the session ends (and the login with it) before the wrong PIN
    std::vector<std::string> asked;
    pkcs11::CardSet cards("softhsm2", [&](const std::string& token) -> absl::StatusOr<SecretBytes> {
      asked.push_back(token);
      return MakeSecret(std::string_view(kCardPin));
    });
    ASSERT_TRUE(cards.OpenToken(*uri).ok());
    ASSERT_TRUE(cards.OpenToken(*uri).ok());
    ASSERT_EQ(asked.size(), 1u);
    EXPECT_THAT(asked[0], HasSubstr("token 'alice' (serial "));
  }
  pkcs11::CardSet wrong("softhsm2", [](const std::string&) -> absl::StatusOr<SecretBytes> {
    return MakeSecret(std::string_view("not-the-pin"));
  });
  auto refused = wrong.OpenToken(*uri);
  EXPECT_EQ(ReasonOf(refused.status()), "WRONG_PIN");
  EXPECT_THAT(refused.status().message(), Not(HasSubstr("not-the-pin")));
  pkcs11::CardSet missing("no-such-module");
  EXPECT_EQ(ReasonOf(missing.OpenToken(*uri).status()), "PKCS11_MODULE_UNAVAILABLE");
}

// A card signature is a DER ECDSA signature any verifier accepts.
TEST_F(CardTokenTest, CardSignatureIsDerAndVerifies) {
  hsm_.InitToken("alice");
  pkcs11::CardSet cards("");
  auto admin = pkcs11::GenerateCardAdminKey(cards, hsm_.Uri("alice"), "alice");
  ASSERT_TRUE(admin.ok()) << admin.status();
  EXPECT_EQ(admin->name, "alice");
  const std::string message = "a command";
  auto sig = admin->external_signer->SignSha512(AsBytes(message));
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(static_cast<uint8_t>((*sig)[0]), 0x30);  // DER SEQUENCE
  EXPECT_TRUE(crypto::VerifySha512(*admin->key, AsBytes(message), AsBytes(*sig)).ok());
  // --name overrides the label; a second key of the same label is refused.
  auto renamed = pkcs11::OpenCardAdminKey(cards, hsm_.Uri("alice", "alice"), "alice-admin");
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ(renamed->name, "alice-admin");
  EXPECT_EQ(renamed->key_id, admin->key_id);
  EXPECT_EQ(ReasonOf(pkcs11::GenerateCardAdminKey(cards, hsm_.Uri("alice"), "alice").status()),
            "OBJECT_EXISTS");
}

// A token removed after it was opened: signing and exporting fail naming
// the token, before anything is sent anywhere.
TEST_F(CardTokenTest, TokenRemovedMidCeremonyIsNamed) {
  hsm_.InitToken("alice");
  pkcs11::CardSet cards("");
  auto admin = pkcs11::GenerateCardAdminKey(cards, hsm_.Uri("alice"), "alice");
  ASSERT_TRUE(admin.ok()) << admin.status();
  auto part = pkcs11::CardKeyPart::Generate(cards, hsm_.Uri("alice"), "part");
  ASSERT_TRUE(part.ok()) << part.status();
  ASSERT_EQ(Shell("softhsm2-util --delete-token --token alice"), 0);

  auto sig = admin->external_signer->SignSha512(AsBytes(std::string("a command")));
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(ReasonOf(sig.status()), "TOKEN_REMOVED") << sig.status();
  EXPECT_THAT(sig.status().message(), HasSubstr("token 'alice'"));

  crypto::SeededEntropy entropy(5);
  auto importer = *crypto::GenerateP521(entropy);
  auto exported = part->EncryptToImporter(AsBytes(*crypto::PublicKeyDer(*importer)));
  ASSERT_FALSE(exported.ok());
  EXPECT_EQ(ReasonOf(exported.status()), "TOKEN_REMOVED") << exported.status();
  EXPECT_THAT(exported.status().message(), HasSubstr("token 'alice'"));
}

// What a card exports for one importer opens with that importer's key only.
TEST_F(CardTokenTest, CardExportOpensOnlyWithItsImporter) {
  hsm_.InitToken("card");
  pkcs11::CardSet cards("");
  auto part = pkcs11::CardKeyPart::Generate(cards, hsm_.Uri("card"), "part");
  ASSERT_TRUE(part.ok()) << part.status();
  crypto::SeededEntropy entropy(9);
  auto importer = *crypto::GenerateP521(entropy);
  auto other = *crypto::GenerateP521(entropy);
  const std::string der = *crypto::PublicKeyDer(*importer);
  const crypto::KeyId id = crypto::KeyIdOfPublicKeyDer(AsBytes(der));
  auto exported = part->EncryptToImporter(AsBytes(der));
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto opened = crypto::DecryptKeyPartWithImporter(*importer, id, *exported);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(crypto::ComputeVerificationPattern(*opened), part->vp());
  EXPECT_EQ(std::string(opened->begin(), opened->end()), P11("card").ExtractPart("part"));
  // The other key, even when told it is the right one, does not open it.
  EXPECT_FALSE(crypto::DecryptKeyPartWithImporter(*other, id, *exported).ok());
}

}  // namespace
}  // namespace hsmsim::host

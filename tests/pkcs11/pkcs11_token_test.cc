// The PKCS#11 module's pure and storage parts: the attribute policy of
// ObjectAttributes, the configuration file, and the PIN and object tables
// of TokenStore beside a real keystore. The module as a whole is tested
// through real clients (pkcs11_module_test.py).
#include <gtest/gtest.h>

#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "host/keystore.h"
#include "pkcs11/module_config.h"
#include "pkcs11/object_attributes.h"
#include "pkcs11/token_store.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::pkcs11 {
namespace {

CK_ATTRIBUTE BoolAttr(CK_ATTRIBUTE_TYPE type, CK_BBOOL* value) {
  return CK_ATTRIBUTE{type, value, sizeof(*value)};
}

ObjectAttributes NewKey(CK_BBOOL sensitive, CK_BBOOL extractable) {
  CK_ATTRIBUTE templ[] = {BoolAttr(CKA_SENSITIVE, &sensitive),
                          BoolAttr(CKA_EXTRACTABLE, &extractable)};
  ObjectAttributes a;
  EXPECT_EQ(ObjectAttributes::ForNewAesKey(templ, 2, 32, CKM_AES_KEY_GEN, &a), CKR_OK);
  return a;
}

TEST(ObjectAttributesTest, SensitiveOnlyBecomesTrueExtractableOnlyFalse) {
  ObjectAttributes a = NewKey(CK_FALSE, CK_TRUE);
  CK_BBOOL off = CK_FALSE;
  CK_BBOOL on = CK_TRUE;
  CK_ATTRIBUTE sensitive_on = BoolAttr(CKA_SENSITIVE, &on);
  CK_ATTRIBUTE sensitive_off = BoolAttr(CKA_SENSITIVE, &off);
  CK_ATTRIBUTE extractable_on = BoolAttr(CKA_EXTRACTABLE, &on);
  CK_ATTRIBUTE extractable_off = BoolAttr(CKA_EXTRACTABLE, &off);
  EXPECT_EQ(a.Set(&sensitive_on, 1), CKR_OK);
  EXPECT_EQ(a.Set(&sensitive_off, 1), CKR_ATTRIBUTE_READ_ONLY);
  EXPECT_TRUE(a.Bool(CKA_SENSITIVE));
  EXPECT_EQ(a.Set(&extractable_off, 1), CKR_OK);
  EXPECT_EQ(a.Set(&extractable_on, 1), CKR_ATTRIBUTE_READ_ONLY);
  EXPECT_FALSE(a.Bool(CKA_EXTRACTABLE));
  // A generated key that was sensitive and never extractable says so.
  ObjectAttributes b = NewKey(CK_TRUE, CK_FALSE);
  EXPECT_TRUE(b.Bool(CKA_ALWAYS_SENSITIVE));
  EXPECT_TRUE(b.Bool(CKA_NEVER_EXTRACTABLE));
  EXPECT_TRUE(b.Bool(CKA_LOCAL));
}

TEST(ObjectAttributesTest, SetIsAllOrNothingAndClassIsReadOnly) {
  ObjectAttributes a = NewKey(CK_TRUE, CK_FALSE);
  char label[] = "new";
  CK_OBJECT_CLASS cls = CKO_DATA;
  CK_ATTRIBUTE templ[] = {{CKA_LABEL, label, 3}, {CKA_CLASS, &cls, sizeof(cls)}};
  EXPECT_EQ(a.Set(templ, 2), CKR_ATTRIBUTE_READ_ONLY);
  char out[8];
  CK_ATTRIBUTE get{CKA_LABEL, out, sizeof(out)};
  EXPECT_EQ(a.Get(&get, 1), CKR_OK);
  EXPECT_EQ(get.ulValueLen, 0u);  // the label did not change
}

TEST(ObjectAttributesTest, ValueIsNeverReadableAndOtherAttributesStillFill) {
  ObjectAttributes a = NewKey(CK_FALSE, CK_TRUE);
  uint8_t value[32];
  CK_ULONG len = 0;
  CK_ATTRIBUTE templ[] = {{CKA_VALUE, value, sizeof(value)}, {CKA_VALUE_LEN, &len, sizeof(len)}};
  EXPECT_EQ(a.Get(templ, 2), CKR_ATTRIBUTE_SENSITIVE);
  EXPECT_EQ(templ[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
  EXPECT_EQ(len, 32u);
}

TEST(ObjectAttributesTest, EncodingRoundTripsAndDamageIsDetected) {
  ObjectAttributes a = NewKey(CK_TRUE, CK_FALSE);
  const std::string bytes = a.Encode();
  ObjectAttributes b;
  ASSERT_TRUE(ObjectAttributes::Decode(bytes, &b));
  EXPECT_EQ(b.Encode(), bytes);
  EXPECT_FALSE(ObjectAttributes::Decode(bytes.substr(0, bytes.size() - 1), &b));
  EXPECT_FALSE(ObjectAttributes::Decode("\x02", &b));
}

TEST(ObjectAttributesTest, TemplateForAnotherKeyTypeIsInconsistent) {
  CK_KEY_TYPE des = CKK_DES3;
  CK_ATTRIBUTE templ[] = {{CKA_KEY_TYPE, &des, sizeof(des)}};
  ObjectAttributes a;
  EXPECT_EQ(ObjectAttributes::ForNewAesKey(templ, 1, 32, CKM_AES_KEY_GEN, &a),
            CKR_TEMPLATE_INCONSISTENT);
  CK_BBOOL t = CK_TRUE;
  CK_ATTRIBUTE local[] = {BoolAttr(CKA_LOCAL, &t)};
  EXPECT_EQ(ObjectAttributes::ForNewAesKey(local, 1, 32, CKM_AES_KEY_GEN, &a),
            CKR_ATTRIBUTE_READ_ONLY);
}

TEST(ModuleConfigTest, ParsesAndNamesTheBadLine) {
  auto config = ParseModuleConfig("# c\nfleet = /f\nmax_pin_failures = 3\n", "conf");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->fleet_dir, "/f");
  EXPECT_EQ(config->max_pin_failures, 3);
  auto bad = ParseModuleConfig("fleet = /f\nmax_pin_failures = 0\n", "conf");
  EXPECT_EQ(ReasonOf(bad.status()), reason::kBadPkcs11Config);
  EXPECT_NE(bad.status().message().find("conf line 2"), std::string::npos);
  EXPECT_EQ(ReasonOf(ParseModuleConfig("colour = blue\n", "c").status()), reason::kBadPkcs11Config);
  EXPECT_EQ(ReasonOf(ParseModuleConfig("max_pin_failures = 2\n", "c").status()),
            reason::kBadPkcs11Config);
}

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = tmp_.Join("keystore.db");
    ASSERT_TRUE(host::OpenSqliteKeystore(path_, /*create=*/true).ok());
    auto store = TokenStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  static absl::Span<const uint8_t> Pin(std::string_view pin) { return AsBytes(pin); }

  test_support::TempDir tmp_;
  std::string path_;
  std::unique_ptr<TokenStore> store_;
};

TEST_F(TokenStoreTest, WrongPinsLockTheTokenAndTheCountSurvivesReopening) {
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("1234"), 3), PinCheck::kNotSet);
  ASSERT_TRUE(store_->SetPin(PinRole::kUser, Pin("1234")).ok());
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("1234"), 3), PinCheck::kOk);
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("9999"), 3), PinCheck::kWrong);
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("9999"), 3), PinCheck::kWrong);
  store_ = *TokenStore::Open(path_);
  EXPECT_EQ(store_->ReadToken()->user_failures, 2);
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("9999"), 3), PinCheck::kWrong);
  // Locked: even the right PIN is refused.
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("1234"), 3), PinCheck::kLocked);
  // Setting the PIN again (hsmctl pkcs11 set-pin) unlocks.
  ASSERT_TRUE(store_->SetPin(PinRole::kUser, Pin("5678")).ok());
  EXPECT_EQ(*store_->CheckPin(PinRole::kUser, Pin("5678"), 3), PinCheck::kOk);
}

TEST_F(TokenStoreTest, PinSizeIsChecked) {
  EXPECT_EQ(ReasonOf(store_->SetPin(PinRole::kUser, Pin("123"))), reason::kBadPin);
  EXPECT_EQ(ReasonOf(store_->SetPin(PinRole::kUser, Pin(std::string(65, 'p')))), reason::kBadPin);
  EXPECT_TRUE(store_->SetPin(PinRole::kUser, Pin(std::string(64, 'p'))).ok());
}

TEST_F(TokenStoreTest, InitTokenForgetsUserPinAndObjectsNotSoPin) {
  ASSERT_TRUE(store_->SetPin(PinRole::kSo, Pin("so-pin")).ok());
  ASSERT_TRUE(store_->SetPin(PinRole::kUser, Pin("user")).ok());
  ASSERT_TRUE(store_->PutObject("k1", "attrs").ok());
  ASSERT_TRUE(store_->InitToken("label").ok());
  auto row = store_->ReadToken();
  EXPECT_EQ(row->label, "label");
  EXPECT_FALSE(row->user_pin_set);
  EXPECT_TRUE(row->so_pin_set);
  EXPECT_TRUE(store_->ReadObjects()->empty());
}

TEST_F(TokenStoreTest, TheKeystoreStillOpensWithTheTokenTables) {
  ASSERT_TRUE(store_->PutObject("k1", "attrs").ok());
  auto keystore = host::OpenSqliteKeystore(path_, /*create=*/false);
  ASSERT_TRUE(keystore.ok()) << keystore.status();
  EXPECT_EQ(*(*keystore)->CountKeys(), 0);
}

}  // namespace
}  // namespace hsmsim::pkcs11

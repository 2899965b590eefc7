// One person is one administrator, through hsmctl: an administrator's key
// re-encoded with explicit curve parameters (as `openssl ec -param_enc
// explicit` writes it) and wrapped in a key file of another name is the same
// administrator to every unit. It is reported as already installed, and its
// signature beside the original's counts once, so one person can never meet a
// two-person threshold (issue: "One person meets a two-person threshold").
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

#include "common/hex.h"
#include "crypto/openssl_ptr.h"
#include "host/admin_key_file.h"
#include "host/fleet_manifest.h"
#include "tests/host/hsmctl_harness.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

class AdminIdentityTest : public HsmctlFleetTest {
 protected:
  std::string Keygen(const std::string& name) {
    const std::string file = tmp_.Join(name + ".key");
    RunResult r =
        RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file, "--kdf-cost", "10000"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return file;
  }

  // AliasWithExplicitParameters writes `original`'s private key again, with
  // explicit curve parameters in its PKCS#8, under the name `alias`.
  std::string AliasWithExplicitParameters(const std::string& original, const std::string& alias) {
    auto admin = ReadAdminKeyFile(original, kPassword);
    EXPECT_TRUE(admin.ok()) << admin.status();
    crypto::EvpPkeyPtr key(EVP_PKEY_dup(admin->key.get()));
    EXPECT_EQ(EVP_PKEY_set_utf8_string_param(key.get(), OSSL_PKEY_PARAM_EC_ENCODING, "explicit"),
              1);
    auto renamed = MakeAdminKey(alias, std::move(key));
    EXPECT_TRUE(renamed.ok()) << renamed.status();
    const std::string file = tmp_.Join(alias + ".key");
    EXPECT_TRUE(WriteAdminKeyFile(file, *renamed, kPassword).ok());

    // The file really carries explicit parameters (what the attack used).
    auto text = ReadFileBytes(file);
    EXPECT_TRUE(text.ok());
    const size_t pem = text->find("-----BEGIN");
    crypto::BioPtr bio(BIO_new_mem_buf(text->data() + pem, static_cast<int>(text->size() - pem)));
    crypto::EvpPkeyPtr read_back(PEM_read_bio_PrivateKey(
        bio.get(), nullptr, nullptr, const_cast<char*>(static_cast<const char*>(kPassword))));
    EXPECT_NE(read_back, nullptr);
    char encoding[32] = {0};
    size_t len = 0;
    EXPECT_EQ(EVP_PKEY_get_utf8_string_param(read_back.get(), OSSL_PKEY_PARAM_EC_ENCODING, encoding,
                                             sizeof(encoding), &len),
              1);
    EXPECT_EQ(std::string(encoding, len), "explicit");
    return file;
  }

  // Administrators of every unit, by name, from `hsmctl status --json`.
  std::vector<std::vector<std::string>> AdminNames() {
    RunResult status = Hsmctl({"status", "--json"});
    EXPECT_EQ(status.exit_code, 0) << Describe(status);
    std::vector<std::vector<std::string>> out;
    const json status_doc = json::parse(status.out);
    for (const json& unit : status_doc["units"]) {
      std::vector<std::string> names;
      for (const json& a : unit["administrators"]) names.push_back(a["name"]);
      out.push_back(names);
    }
    return out;
  }
};

TEST_F(AdminIdentityTest, ExplicitParameterAliasIsTheSameAdministrator) {
  FleetGuard guard(tmp_, fleet_);
  RunResult up = Hsmctl({"fleet", "up", "--units", "2", "--instance", "it-instance",
                         "--unit-binary", HSMSIM_UNIT_PATH});
  ASSERT_EQ(up.exit_code, 0) << Describe(up);
  const std::string alice = Keygen("alice");
  const std::string bob = Keygen("bob");
  const std::string carol = Keygen("carol");
  const std::string mallory = AliasWithExplicitParameters(alice, "mallory");

  // The alias has the same key id as alice: hsmctl sends the canonical key.
  auto alice_key = ReadAdminKeyFile(alice, kPassword);
  auto mallory_key = ReadAdminKeyFile(mallory, kPassword);
  ASSERT_TRUE(alice_key.ok() && mallory_key.ok());
  EXPECT_EQ(mallory_key->public_key_der, alice_key->public_key_der);
  EXPECT_EQ(mallory_key->key_id, alice_key->key_id);

  // Imprint mode: installing alice and her alias installs one administrator.
  RunResult add = Hsmctl({"admin", "add", alice, bob, carol, mallory, "--json"});
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  const json add_doc = json::parse(add.out);
  for (const json& unit : add_doc["units"]) {
    EXPECT_EQ(unit["added"], json::array({"alice", "bob", "carol"})) << add.out;
    EXPECT_EQ(unit["already_installed"], json::array({"mallory"})) << add.out;
  }
  for (const auto& names : AdminNames()) {
    EXPECT_THAT(names, ::testing::UnorderedElementsAre("alice", "bob", "carol"));
  }

  // A threshold of 2 is not met by alice signing twice.
  // (--expect-admins names the whole intended set, so that the unit itself,
  // not hsmctl's imprint-mode check, decides how many signers there are.)
  RunResult alone =
      Hsmctl({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign",
              alice + "," + mallory, "--expect-admins", alice + "," + bob + "," + carol});
  EXPECT_NE(alone.exit_code, 0) << Describe(alone);
  EXPECT_THAT(alone.out + alone.err, HasSubstr("INSUFFICIENT_SIGNATURES"));
  RunResult thresholds = Hsmctl({"thresholds", "set", "--signature", "2", "--revocation", "2",
                                 "--sign", alice + "," + bob + "," + carol});
  ASSERT_EQ(thresholds.exit_code, 0) << Describe(thresholds);

  // Normal mode: revocation threshold 2 is not met by alice and her alias.
  RunResult rm = Hsmctl({"admin", "rm", "carol", "--sign", alice + "," + mallory});
  EXPECT_NE(rm.exit_code, 0) << Describe(rm);
  EXPECT_THAT(rm.out + rm.err, HasSubstr("INSUFFICIENT_SIGNATURES"));
  for (const auto& names : AdminNames()) {
    EXPECT_THAT(names, ::testing::UnorderedElementsAre("alice", "bob", "carol"));
  }
  RunResult rm_two = Hsmctl({"admin", "rm", "carol", "--sign", alice + "," + bob});
  EXPECT_EQ(rm_two.exit_code, 0) << Describe(rm_two);
}

}  // namespace
}  // namespace hsmsim::host

// Smart cards through hsmctl (issue 13): SoftHSM2 tokens made per test in a
// temporary directory, real hsmctl and hsmsim-unit processes. The whole
// ceremony and a rotation with cards only, cards and files mixed, per-file
// secrets, every card error, a part card on a unit of another fleet, unsafe
// part objects, and a search of every file and frame for the secrets.
#include "card_test_support.h"
#include "host/pkcs11/card_admin_key.h"
#include "host/pkcs11/card_key_part.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

class CardCeremonyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("HSMSIM_UNIT_BINARY", HSMSIM_UNIT_PATH, 1);
    unsetenv("HSMSIM_PASSWORD");
    unsetenv("HSMSIM_FLEET");
    fleet_ = tmp_.Join("fleet");
  }

  RunResult Hsmctl(std::vector<std::string> args, const std::string& fleet = "") {
    args.push_back("--fleet");
    args.push_back(fleet.empty() ? fleet_ : fleet);
    return RunHsmctl(tmp_, std::move(args));
  }

  void MustRun(std::vector<std::string> args, const std::string& fleet = "") {
    RunResult r = Hsmctl(args, fleet);
    ASSERT_EQ(r.exit_code, 0) << args[0] << " " << (args.size() > 1 ? args[1] : "") << "\n"
                              << Describe(r);
  }

  std::unique_ptr<UnitClient> Client(const std::string& fleet, const std::string& name) {
    auto m = LoadFleetManifest(fleet);
    EXPECT_TRUE(m.ok()) << m.status();
    FleetUnit* unit = m->FindUnit(name);
    auto client = UnitClient::Create(unit->name, unit->endpoint);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }

  v1::GetInfoResponse Info(const std::string& name, const std::string& fleet = "") {
    auto info = Client(fleet.empty() ? fleet_ : fleet, name)->GetInfo();
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : v1::GetInfoResponse{};
  }

  // GeneratePart makes a part on token `token` with hsmctl and returns its URI.
  std::string GeneratePart(const std::string& token, const std::string& label) {
    RunResult r = RunHsmctl(tmp_, {"card", "part-generate", hsm_.Uri(token), "--label", label});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("VP "));
    return hsm_.Uri(token, label);
  }

  // Keygen writes an admin key file with its own password file.
  std::string Keygen(const std::string& name, const std::string& password) {
    const std::string file = tmp_.Join(name + ".key");
    const std::string pw = tmp_.Join(name + ".pw");
    std::ofstream(pw) << password << "\n";
    RunResult r = RunHsmctl(tmp_, {"admin", "keygen", "--name", name, "--out", file, "--kdf-cost",
                                   "10000", "--password-file", pw});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return file;
  }

  std::string PartFile(const std::string& name, const std::string& password) {
    const std::string file = tmp_.Join(name + ".kp");
    const std::string pw = tmp_.Join(name + ".pw");
    std::ofstream(pw) << password << "\n";
    RunResult r = RunHsmctl(
        tmp_, {"keypart", "generate", "--out", file, "--kdf-cost", "10000", "--password-file", pw});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return file;
  }

  static std::string VpOf(const std::vector<std::string>& parts) {
    SecretBytes key(32, 0);
    for (const std::string& p : parts) {
      for (size_t i = 0; i < 32; ++i) key[i] ^= static_cast<uint8_t>(p[i]);
    }
    return ToHex(crypto::AsString(crypto::ComputeVerificationPattern(key)));
  }

  TempDir tmp_;
  SoftHsm hsm_{tmp_};
  std::string fleet_;
};

// The whole ceremony and a rotation with cards only: an administrator key
// made by pkcs11-tool, one imported from known bytes, parts generated on
// cards. The units' master key is the XOR of the parts; no part, private key
// or PIN is in any file, log, output or frame.
TEST_F(CardCeremonyTest, CardsOnlyCeremonyAndRotationLeaveNoSecretAnywhere) {
  for (const char* t : {"alice", "bob", "card1", "card2", "card3"}) hsm_.InitToken(t);
  ASSERT_EQ(hsm_.Tool("alice", "--keypairgen --key-type EC:secp521r1 --label alice --id a11ce0"),
            0);
  const std::string bob_scalar = ImportP521Key(hsm_, tmp_, "bob", "bob", "b0b0");
  const std::string alice = hsm_.Uri("alice", "alice");
  const std::string bob = hsm_.Uri("bob", "bob");
  const std::string sign = alice + "," + bob;
  std::vector<std::string> first, second;
  for (int i = 1; i <= 3; ++i) {
    first.push_back(GeneratePart(StrCat("card", i), StrCat("first", i)));
    second.push_back(GeneratePart(StrCat("card", i), StrCat("second", i)));
  }

  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "cards"});
  // Record every frame of unit1.
  auto manifest = LoadFleetManifest(fleet_);
  ASSERT_TRUE(manifest.ok());
  const std::string real_endpoint = manifest->FindUnit("unit1")->endpoint;
  auto recorder = std::make_unique<FrameRecorder>(real_endpoint);
  manifest->FindUnit("unit1")->endpoint = recorder->Endpoint();
  ASSERT_TRUE(SaveFleetManifest(fleet_, *manifest).ok());

  MustRun({"admin", "add", alice, bob});
  MustRun({"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", sign});
  MustRun({"mk", "load", "--parts", first[0] + "," + first[1] + "," + first[2], "--sign", sign});
  MustRun({"mk", "commit", "--yes", "--sign", sign});
  MustRun({"mk", "setimm", "--sign", sign});
  MustRun({"keys", "create", "--count", "20"});
  MustRun({"mk", "load", "--parts", second[0] + "," + second[1] + "," + second[2], "--sign", sign});
  MustRun({"mk", "commit", "--yes", "--sign", sign});
  MustRun({"mk", "rotate", "--sign", sign});
  MustRun({"keys", "verify"});
  RunResult status = Hsmctl({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  // Every command and result is in the audit log, chained.
  RunResult audit = Hsmctl({"audit", "verify", "--json"});
  ASSERT_EQ(audit.exit_code, 0) << Describe(audit);
  EXPECT_GE(json::parse(audit.out)["events"].get<int>(), 20);
  const std::string log = *ReadFileBytes(fleet_ + "/audit.jsonl");
  EXPECT_THAT(log, HasSubstr("\"command\":\"load_key_parts\""));
  EXPECT_THAT(log, HasSubstr("\"name\":\"bob\""));

  // The master keys are the XOR of the parts on the cards.
  std::map<std::string, std::string> secrets;
  std::vector<std::string> first_clear, second_clear;
  for (int i = 1; i <= 3; ++i) {
    P11 card(StrCat("card", i));
    first_clear.push_back(card.ExtractPart(StrCat("first", i)));
    second_clear.push_back(card.ExtractPart(StrCat("second", i)));
    secrets[StrCat("part first", i)] = first_clear.back();
    secrets[StrCat("part second", i)] = second_clear.back();
  }
  for (const char* unit : {"unit1", "unit2"}) {
    v1::GetInfoResponse info = Info(unit);
    EXPECT_EQ(ToHex(info.current_register().verification_pattern()), VpOf(second_clear)) << unit;
    EXPECT_EQ(ToHex(info.old_register().verification_pattern()), VpOf(first_clear)) << unit;
  }

  manifest->FindUnit("unit1")->endpoint = real_endpoint;
  ASSERT_TRUE(SaveFleetManifest(fleet_, *manifest).ok());
  const std::string frames = recorder->Recorded();
  recorder.reset();
  EXPECT_GT(frames.size(), 1000u);
  secrets["bob's private key"] = bob_scalar;
  secrets["card PIN"] = kCardPin;
  std::vector<std::string> hits = FindSecrets(tmp_.path(), secrets, {{"unit1 frames", frames}});
  // The PIN is in the pin-source file, and only there.
  // (Finding it there also shows that the search finds what is present.)
  EXPECT_EQ(std::erase_if(
                hits, [&](const std::string& h) { return h == hsm_.pin_file() + ": card PIN"; }),
            1u);
  EXPECT_THAT(hits, IsEmpty());
}

// Cards and files in one ceremony, each file with its own password.
TEST_F(CardCeremonyTest, CardsAndFilesMixedEachFileWithItsOwnSecret) {
  for (const char* t : {"bob", "card3"}) hsm_.InitToken(t);
  RunResult keygen = RunHsmctl(tmp_, {"card", "admin-keygen", hsm_.Uri("bob"), "--name", "bob"});
  ASSERT_EQ(keygen.exit_code, 0) << Describe(keygen);
  const std::string alice = Keygen("alice", "alice-secret");
  const std::string bob = hsm_.Uri("bob", "bob");
  const std::string part1 = PartFile("part1", "custodian-one");
  const std::string part2 = PartFile("part2", "custodian-two");
  const std::string part3 = GeneratePart("card3", "part3");
  const std::vector<std::string> pw = {"--password-file", alice + "=" + (tmp_.Join("alice.pw")),
                                       "--password-file", part1 + "=" + (tmp_.Join("part1.pw")),
                                       "--password-file", part2 + "=" + (tmp_.Join("part2.pw"))};
  auto with_pw = [&](std::vector<std::string> args) {
    args.insert(args.end(), pw.begin(), pw.end());
    return args;
  };

  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "mixed"});
  MustRun(with_pw({"admin", "add", alice, bob}));
  MustRun(with_pw(
      {"thresholds", "set", "--signature", "2", "--revocation", "1", "--sign", alice + "," + bob}));
  RunResult load = Hsmctl(with_pw({"mk", "load", "--parts", part1 + "," + part2 + "," + part3,
                                   "--sign", alice + "," + bob, "--json"}));
  ASSERT_EQ(load.exit_code, 0) << Describe(load);
  EXPECT_EQ(json::parse(load.out)["verification_pattern_from"], "first unit");
  MustRun(with_pw({"mk", "commit", "--yes", "--sign", alice + "," + bob}));

  std::vector<std::string> clear;
  for (const std::string& file : {part1, part2}) {
    const std::string password = file == part1 ? "custodian-one" : "custodian-two";
    auto part = crypto::OpenKeyPartFile(*ReadFileBytes(file), password);
    ASSERT_TRUE(part.ok());
    clear.push_back(std::string(part->begin(), part->end()));
  }
  clear.push_back(P11("card3").ExtractPart("part3"));
  for (const char* unit : {"unit1", "unit2"}) {
    EXPECT_EQ(ToHex(Info(unit).new_register().verification_pattern()), VpOf(clear)) << unit;
  }
}

// Two administrators' key files with different passwords sign one command;
// two custodians' part files with different passwords load in one command.
TEST_F(CardCeremonyTest, PerFileSecretsMakeDualControlPossible) {
  const std::string alice = Keygen("alice", "alice-secret");
  const std::string bob = Keygen("bob", "bob-secret");
  const std::string part1 = PartFile("part1", "custodian-one");
  const std::string part2 = PartFile("part2", "custodian-two");
  // A new file takes its own password as FILE=PWFILE too.
  const std::string carol = tmp_.Join("carol.key");
  std::ofstream(tmp_.Join("carol.pw")) << "carol-secret\n";
  RunResult carol_keygen =
      RunHsmctl(tmp_, {"admin", "keygen", "--name", "carol", "--out", carol, "--kdf-cost", "10000",
                       "--password-file", carol + "=" + (tmp_.Join("carol.pw"))});
  ASSERT_EQ(carol_keygen.exit_code, 0) << Describe(carol_keygen);
  EXPECT_TRUE(ReadAdminKeyFile(carol, "carol-secret").ok());
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "1", "--instance", "dual"});
  const std::vector<std::string> pw = {"--password-file", alice + "=" + (tmp_.Join("alice.pw")),
                                       "--password-file", bob + "=" + (tmp_.Join("bob.pw"))};
  std::vector<std::string> add = {"admin", "add", alice, bob};
  add.insert(add.end(), pw.begin(), pw.end());
  MustRun(add);
  std::vector<std::string> set = {"thresholds",   "set", "--signature", "2",
                                  "--revocation", "2",   "--sign",      alice + "," + bob};
  set.insert(set.end(), pw.begin(), pw.end());
  MustRun(set);

  std::vector<std::string> load = {"mk",     "load",           "--parts", part1 + "," + part2,
                                   "--sign", alice + "," + bob};
  load.insert(load.end(), pw.begin(), pw.end());
  // Without the parts' own passwords: refused, naming the file, nothing loaded.
  RunResult missing = Hsmctl(load);
  EXPECT_EQ(missing.exit_code, 4) << Describe(missing);
  EXPECT_THAT(missing.err, HasSubstr("NO_PASSWORD"));
  EXPECT_THAT(missing.err, HasSubstr(part1));
  EXPECT_EQ(Info("unit1").new_register().state(), v1::REGISTER_EMPTY);

  load.insert(load.end(), {"--password-file", part1 + "=" + (tmp_.Join("part1.pw")),
                           "--password-file", part2 + "=" + (tmp_.Join("part2.pw"))});
  MustRun(load);
  EXPECT_EQ(ToHex(Info("unit1").new_register().verification_pattern()), [&] {
    std::vector<std::string> clear;
    for (auto [f, p] : {std::pair{part1, "custodian-one"}, {part2, "custodian-two"}}) {
      auto part = crypto::OpenKeyPartFile(*ReadFileBytes(f), p);
      clear.push_back(std::string(part->begin(), part->end()));
    }
    return VpOf(clear);
  }());

  // One password file for every file still works, and at most one such.
  RunResult two_plain = Hsmctl({"mk", "clrnew", "--sign", alice + "," + bob, "--password-file",
                                tmp_.Join("alice.pw"), "--password-file", tmp_.Join("bob.pw")});
  EXPECT_EQ(two_plain.exit_code, 2) << Describe(two_plain);
  // A wrong password for one file names that file.
  RunResult wrong = Hsmctl({"mk", "clrnew", "--sign", alice + "," + bob, "--password-file",
                            alice + "=" + (tmp_.Join("alice.pw")), "--password-file",
                            bob + "=" + (tmp_.Join("alice.pw"))});
  EXPECT_EQ(wrong.exit_code, 4) << Describe(wrong);
  EXPECT_THAT(wrong.err, HasSubstr("WRONG_PASSWORD"));
  EXPECT_THAT(wrong.err, HasSubstr(bob));
}

// Every card error names the token and the problem, exits 4, and changes
// nothing on any unit.
TEST_F(CardCeremonyTest, CardErrorsNameTheTokenAndChangeNothing) {
  for (const char* t : {"alice", "bob", "card1", "card2", "p256"}) hsm_.InitToken(t);
  for (const char* t : {"alice", "bob"}) {
    RunResult r = RunHsmctl(tmp_, {"card", "admin-keygen", hsm_.Uri(t), "--name", t});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  ASSERT_EQ(hsm_.Tool("p256", "--keypairgen --key-type EC:prime256v1 --label small --id 01"), 0);
  const std::string alice = hsm_.Uri("alice", "alice");
  const std::string bob = hsm_.Uri("bob", "bob");
  const std::string part1 = GeneratePart("card1", "part1");
  const std::string part2 = GeneratePart("card2", "part2");
  {
    P11 card("card2");
    card.CreateAesKey("clear", std::string(32, '\x11'), /*sensitive=*/false, false, false);
    card.CreateAesKey("imported", std::string(32, '\x22'), /*sensitive=*/true, false, false);
    card.GenerateDerivableKey("derivable");
  }
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "2", "--instance", "errors"});
  MustRun({"admin", "add", alice, bob});
  MustRun(
      {"thresholds", "set", "--signature", "2", "--revocation", "2", "--sign", alice + "," + bob});
  const uint64_t counter1 = Info("unit1").transaction_counter();
  const uint64_t counter2 = Info("unit2").transaction_counter();

  struct Case {
    std::string what;
    std::vector<std::string> args;
    std::string reason;
    std::string names;
  };
  const std::string wrong_pin = "pkcs11:token=bob;object=bob?pin-value=wrong-pin-77";
  const std::vector<Case> cases = {
      {"wrong PIN", {"mk", "clrnew", "--sign", alice + "," + wrong_pin}, "WRONG_PIN", "'bob'"},
      {"missing token",
       {"mk", "clrnew", "--sign", alice + "," + hsm_.Uri("nosuch", "bob")},
       "TOKEN_NOT_FOUND",
       "nosuch"},
      {"no PIN and no terminal",
       {"mk", "clrnew", "--sign", alice + ",pkcs11:token=bob;object=bob"},
       "NO_PIN",
       "'bob'"},
      {"missing object",
       {"mk", "clrnew", "--sign", alice + "," + hsm_.Uri("bob", "carol")},
       "NO_SUCH_OBJECT",
       "'bob'"},
      {"not P-521",
       {"mk", "clrnew", "--sign", alice + "," + hsm_.Uri("p256", "small")},
       "NOT_A_P521_KEY",
       "'p256'"},
      {"no module",
       {"mk", "clrnew", "--sign", alice + "," + bob, "--pkcs11-module", "/nonexistent/lib.so"},
       "PKCS11_MODULE_UNAVAILABLE",
       "/nonexistent/lib.so"},
      {"part readable in clear",
       {"mk", "load", "--parts", part1 + "," + hsm_.Uri("card2", "clear"), "--sign",
        alice + "," + bob},
       "UNSAFE_PART_OBJECT",
       "CKA_SENSITIVE"},
      {"part imported",
       {"mk", "load", "--parts", part1 + "," + hsm_.Uri("card2", "imported"), "--sign",
        alice + "," + bob},
       "UNSAFE_PART_OBJECT",
       "CKA_ALWAYS_SENSITIVE"},
      {"part derivable",
       {"mk", "load", "--parts", part1 + "," + hsm_.Uri("card2", "derivable"), "--sign",
        alice + "," + bob},
       "UNSAFE_PART_OBJECT",
       "CKA_DERIVE"},
  };
  for (const Case& c : cases) {
    RunResult r = Hsmctl(c.args);
    EXPECT_EQ(r.exit_code, 4) << c.what << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.reason)) << c.what;
    EXPECT_THAT(r.err, HasSubstr(c.names)) << c.what;
    EXPECT_THAT(r.err + r.out, Not(HasSubstr(kCardPin))) << c.what;
    EXPECT_THAT(r.err + r.out, Not(HasSubstr("wrong-pin-77"))) << c.what;
  }
  EXPECT_EQ(Info("unit1").transaction_counter(), counter1);
  EXPECT_EQ(Info("unit2").transaction_counter(), counter2);
  // The good parts still load.
  MustRun({"mk", "load", "--parts", part1 + "," + part2, "--sign", alice + "," + bob});
}

// A part card's export for a unit of one fleet is refused by a unit of
// another fleet (another importer key), which stays unchanged.
TEST_F(CardCeremonyTest, PartWrappedForOneFleetIsRefusedByAnother) {
  for (const char* t : {"alice", "card1"}) hsm_.InitToken(t);
  RunResult r = RunHsmctl(tmp_, {"card", "admin-keygen", hsm_.Uri("alice"), "--name", "alice"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::string alice = hsm_.Uri("alice", "alice");
  const std::string part1 = GeneratePart("card1", "part1");
  const std::string other = tmp_.Join("other-fleet");
  FleetGuard guard(tmp_, fleet_);
  FleetGuard other_guard(tmp_, other);
  for (const std::string& f : {fleet_, other}) {
    MustRun({"fleet", "up", "--units", "1", "--instance", "x"}, f);
    MustRun({"admin", "add", alice}, f);
    MustRun({"thresholds", "set", "--signature", "1", "--revocation", "1", "--sign", alice}, f);
    v1::Command gen;
    gen.mutable_generate_importer();
  }
  pkcs11::CardSet cards("");
  auto admin = pkcs11::OpenCardAdminKey(cards, alice);
  ASSERT_TRUE(admin.ok()) << admin.status();
  auto part = pkcs11::CardKeyPart::Open(cards, part1);
  ASSERT_TRUE(part.ok()) << part.status();
  auto here = Client(fleet_, "unit1");
  auto there = Client(other, "unit1");
  for (UnitClient* c : {here.get(), there.get()}) {
    v1::Command gen;
    gen.mutable_generate_importer();
    ASSERT_TRUE(IssueCommand(*c, gen, {&*admin}).ok());
  }
  auto encrypted = part->EncryptToImporter(AsBytes(here->GetInfo()->importer_public_key()));
  ASSERT_TRUE(encrypted.ok()) << encrypted.status();
  EXPECT_EQ(encrypted->kdf(), v1::KEY_PART_KDF_TOKEN_AES_ECB);
  v1::Command load;
  load.mutable_load_key_parts()->set_total_parts(2);
  *load.mutable_load_key_parts()->add_parts() = *encrypted;
  auto refused = IssueCommand(*there, load, {&*admin});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), "WRONG_IMPORTER_KEY") << refused.status();
  EXPECT_EQ(there->GetInfo()->new_register().state(), v1::REGISTER_EMPTY);
  auto accepted = IssueCommand(*here, load, {&*admin});
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->info().new_register().state(), v1::REGISTER_PARTIALLY_LOADED);
}

}  // namespace
}  // namespace hsmsim::host

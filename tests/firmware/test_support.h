// Helpers shared by the firmware tests: deterministic units, administrators,
// signed commands and key parts.
#ifndef HSMSIM_TESTS_FIRMWARE_TEST_SUPPORT_H_
#define HSMSIM_TESTS_FIRMWARE_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "firmware/crypto_unit.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::firmware::testing {

struct TestAdmin {
  std::string name;
  std::shared_ptr<EVP_PKEY> key;
  std::string public_key_der;
  crypto::KeyId key_id{};
};

inline TestAdmin MakeAdmin(const std::string& name, crypto::Entropy& entropy) {
  auto key = crypto::GenerateP521(entropy);
  HSMSIM_CHECK(key.ok());
  TestAdmin admin;
  admin.name = name;
  admin.public_key_der = *crypto::PublicKeyDer(**key);
  admin.key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(admin.public_key_der));
  admin.key = std::shared_ptr<EVP_PKEY>(key->release(), EVP_PKEY_free);
  return admin;
}

// SignCommand fills in unit id and counter from `unit` and signs with each admin.
inline v1::Request SignCommand(const CryptoUnit& unit, v1::Command command,
                               const std::vector<const TestAdmin*>& signers) {
  v1::GetInfoResponse info = unit.Info();
  command.set_unit_id(info.unit_id());
  command.set_transaction_counter(info.transaction_counter());
  v1::Request request;
  request.set_id(7);
  auto* sc = request.mutable_signed_command();
  sc->set_command(command.SerializeAsString());
  for (const TestAdmin* admin : signers) {
    auto* sig = sc->add_signatures();
    sig->set_admin_key_id(crypto::AsString(admin->key_id));
    sig->set_signature(*crypto::SignSha512(*admin->key, AsBytes(sc->command())));
  }
  return request;
}

inline absl::Status StatusOf(const v1::Response& response) {
  return wire::FromWireStatus(response.status());
}

// Send signs and handles `command`, returning the whole-request status.
inline absl::Status Send(CryptoUnit& unit, const v1::Command& command,
                         const std::vector<const TestAdmin*>& signers) {
  return StatusOf(unit.Handle(SignCommand(unit, command, signers)).response);
}

inline v1::Command AddAdminCommand(const TestAdmin& admin) {
  v1::Command c;
  c.mutable_add_admin()->set_name(admin.name);
  c.mutable_add_admin()->set_public_key(admin.public_key_der);
  return c;
}

inline v1::Command ThresholdsCommand(uint32_t sig, uint32_t rev) {
  v1::Command c;
  c.mutable_set_thresholds()->set_signature_threshold(sig);
  c.mutable_set_thresholds()->set_revocation_threshold(rev);
  return c;
}

template <typename Setter>
v1::Command Op(Setter set) {
  v1::Command c;
  set(c);
  return c;
}

inline SecretBytes Part(uint8_t fill) {
  SecretBytes p(crypto::kKeyPartSize);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(fill + i * 7);
  return p;
}

inline SecretBytes Xor(const std::vector<SecretBytes>& parts) {
  SecretBytes out(crypto::kKeyPartSize, 0);
  for (const auto& p : parts)
    for (size_t i = 0; i < out.size(); ++i) out[i] ^= p[i];
  return out;
}

// LoadCommand encrypts `parts` to the unit's importer key.
inline v1::Command LoadCommand(const CryptoUnit& unit, const std::vector<SecretBytes>& parts,
                               uint32_t total, crypto::Entropy& entropy) {
  v1::Command c;
  auto* load = c.mutable_load_key_parts();
  load->set_total_parts(total);
  std::string importer = unit.Info().importer_public_key();
  for (const auto& p : parts) {
    auto enc = crypto::EncryptKeyPartToImporter(p, AsBytes(importer), entropy);
    HSMSIM_CHECK(enc.ok());
    *load->add_parts() = *enc;
  }
  return c;
}

inline v1::Command CommitCommand(absl::Span<const uint8_t> key) {
  v1::Command c;
  c.mutable_commit_new_master_key()->set_expected_verification_pattern(
      crypto::AsString(crypto::ComputeVerificationPattern(key)));
  return c;
}

}  // namespace hsmsim::firmware::testing

#endif  // HSMSIM_TESTS_FIRMWARE_TEST_SUPPORT_H_

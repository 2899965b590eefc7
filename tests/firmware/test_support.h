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
#include "crypto/verification_pattern.h"
#include "firmware/crypto_unit.h"
#include "proto/wire/status_codec.h"
#include "tests/support/signed_request.h"

namespace hsmsim::firmware::testing {

// TestAdmin is an administrator's name and key pair: the host's AdminKey.
using TestAdmin = host::AdminKey;

// MakeAdmin returns an administrator with a new key from `entropy`.
inline TestAdmin MakeAdmin(const std::string& name, crypto::Entropy& entropy) {
  return test_support::MakeTestAdmin(name, entropy);
}

// SignCommand fills in unit id and counter from `unit` and signs with each
// admin (tests/support/signed_request.h).
inline v1::Request SignCommand(const CryptoUnit& unit, v1::Command command,
                               const std::vector<const TestAdmin*>& signers) {
  return test_support::SignedRequest(unit.Info(), std::move(command), signers, 7);
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

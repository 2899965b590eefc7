// FixedUnit: the deterministic crypto unit the fuzzers start from, and the
// signed commands the corpus generator builds for it. Everything comes from
// SeededEntropy, so the unit id, the administrator key and the importer key
// are the same in every build: a committed corpus of signed commands stays
// valid. The unit is in normal mode with one administrator (thresholds 1/1),
// an importer key, CURRENT VALID, NEW FULL_COMMITTED.
#ifndef HSMSIM_FUZZ_FIXED_UNIT_H_
#define HSMSIM_FUZZ_FIXED_UNIT_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/secret_bytes.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "firmware/crypto_unit.h"
#include "host/admin_key_file.h"
#include "tests/support/signed_request.h"

namespace hsmsim::fuzz {

inline constexpr uint64_t kFixedSeed = 20240601;

struct FixedUnit {
  crypto::SeededEntropy entropy{kFixedSeed};
  host::AdminKey admin;
  std::unique_ptr<firmware::CryptoUnit> unit;

  // Sign returns a request carrying `command` for the unit's current counter,
  // signed by the administrator (unsigned in imprint mode, except the
  // SetThresholds that leaves it), built by tests/support/signed_request.h.
  v1::Request Sign(v1::Command command, uint64_t id = 1) const {
    v1::GetInfoResponse info = unit->Info();
    std::vector<const host::AdminKey*> signers;
    if (info.mode() == v1::MODE_NORMAL || command.has_set_thresholds()) signers.push_back(&admin);
    return test_support::SignedRequest(info, std::move(command), signers, id);
  }

  void Apply(const v1::Command& command) {
    firmware::HandleResult r = unit->Handle(Sign(command));
    HSMSIM_CHECK(r.response.status().code() == 0);
  }

  static SecretBytes Part(uint8_t fill) {
    SecretBytes p(crypto::kKeyPartSize);
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(fill + i * 7);
    return p;
  }

  v1::Command LoadParts(std::vector<SecretBytes> parts, uint32_t total) {
    v1::Command c;
    c.mutable_load_key_parts()->set_total_parts(total);
    std::string importer = unit->Info().importer_public_key();
    for (const SecretBytes& p : parts) {
      auto enc = crypto::EncryptKeyPartToImporter(p, AsBytes(importer), entropy);
      HSMSIM_CHECK(enc.ok());
      *c.mutable_load_key_parts()->add_parts() = *enc;
    }
    return c;
  }

  static v1::Command Commit(const std::vector<SecretBytes>& parts) {
    SecretBytes key(crypto::kKeyPartSize, 0);
    for (const SecretBytes& p : parts)
      for (size_t i = 0; i < key.size(); ++i) key[i] ^= p[i];
    v1::Command c;
    c.mutable_commit_new_master_key()->set_expected_verification_pattern(
        crypto::AsString(crypto::ComputeVerificationPattern(key)));
    return c;
  }

  FixedUnit() {
    admin = test_support::MakeTestAdmin("fuzz-admin", entropy);
    unit = *firmware::CryptoUnit::Create(entropy);
    v1::Command add;
    add.mutable_add_admin()->set_name(admin.name);
    add.mutable_add_admin()->set_public_key(admin.public_key_der);
    Apply(add);
    v1::Command thresholds;
    thresholds.mutable_set_thresholds()->set_signature_threshold(1);
    thresholds.mutable_set_thresholds()->set_revocation_threshold(1);
    Apply(thresholds);
    v1::Command importer;
    importer.mutable_generate_importer();
    Apply(importer);
    const std::vector<SecretBytes> a = {Part(1), Part(2)};
    const std::vector<SecretBytes> b = {Part(3), Part(4), Part(5)};
    Apply(LoadParts(a, 2));
    Apply(Commit(a));
    v1::Command promote;
    promote.mutable_set_immediate();
    Apply(promote);
    Apply(LoadParts(b, 3));
    Apply(Commit(b));
  }

  // Blob returns a new root-key blob under CURRENT.
  std::string Blob(const std::string& key_id) const {
    v1::Request r;
    r.mutable_generate_key()->set_key_id(key_id);
    v1::Response response = unit->HandleReadOnly(r);
    HSMSIM_CHECK(response.status().code() == 0);
    return response.generate_key().blob();
  }
};

}  // namespace hsmsim::fuzz

#endif  // HSMSIM_FUZZ_FIXED_UNIT_H_

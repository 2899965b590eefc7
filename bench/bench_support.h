// Helpers shared by the benchmarks: the master key ceremony that brings a
// fresh unit to CURRENT VALID and NEW FULL_COMMITTED, and batches of blobs
// sealed offline under a known master key.
//
// The ceremony is written against a `CommandSender` so that the same steps
// drive an in-process CryptoUnit (the kernel benchmark) and a real
// hsmsim-unit over host::UnitClient (the loopback benchmark).
#ifndef HSMSIM_BENCH_BENCH_SUPPORT_H_
#define HSMSIM_BENCH_BENCH_SUPPORT_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/check.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "firmware/crypto_unit.h"
#include "firmware/key_blob.h"
#include "host/admin_key_file.h"
#include "hsmsim/v1/unit.pb.h"
#include "proto/wire/status_codec.h"
#include "tests/support/signed_request.h"

namespace hsmsim::bench {

// BenchAdmin is an administrator's P-521 key pair: the host's AdminKey.
using BenchAdmin = host::AdminKey;

// CommandSender sends one administrative command: `op` has only its op set;
// the sender fills in the unit id and transaction counter and signs it with
// `signers` (none for the unsigned imprint-mode AddAdmin).
using CommandSender =
    std::function<absl::Status(v1::Command op, const std::vector<const BenchAdmin*>& signers)>;

// Ceremony is what the benchmark knows after bringing a unit up: the admin
// and both master keys (CURRENT and NEW), hence the blob KEKs.
struct Ceremony {
  BenchAdmin admin;
  SecretBytes current_master_key;
  SecretBytes new_master_key;
};

inline SecretBytes RandomPart(crypto::Entropy& entropy) {
  SecretBytes part(crypto::kKeyPartSize);
  HSMSIM_CHECK(entropy.Generate(absl::MakeSpan(part)).ok());
  return part;
}

// LoadAndCommit loads a two-part master key into NEW and commits it.
// Returns the master key (the XOR of the parts).
inline absl::StatusOr<SecretBytes> LoadAndCommit(const CommandSender& send,
                                                 const std::string& importer_der,
                                                 const BenchAdmin& admin,
                                                 crypto::Entropy& entropy) {
  std::vector<SecretBytes> parts = {RandomPart(entropy), RandomPart(entropy)};
  SecretBytes master(crypto::kKeyPartSize, 0);
  v1::Command load;
  load.mutable_load_key_parts()->set_total_parts(static_cast<uint32_t>(parts.size()));
  for (const SecretBytes& part : parts) {
    for (size_t i = 0; i < master.size(); ++i) master[i] ^= part[i];
    HSMSIM_ASSIGN_OR_RETURN(v1::EncryptedKeyPart encrypted,
                            crypto::EncryptKeyPartToImporter(part, AsBytes(importer_der), entropy));
    *load.mutable_load_key_parts()->add_parts() = std::move(encrypted);
  }
  HSMSIM_RETURN_IF_ERROR(send(std::move(load), {&admin}));
  v1::Command commit;
  commit.mutable_commit_new_master_key()->set_expected_verification_pattern(
      crypto::AsString(crypto::ComputeVerificationPattern(master)));
  HSMSIM_RETURN_IF_ERROR(send(std::move(commit), {&admin}));
  return master;
}

// RunCeremony takes a unit in imprint mode to normal mode with one
// administrator (thresholds 1/1) and an importer key, then to CURRENT VALID
// and NEW FULL_COMMITTED, which is what ReencryptBatch needs.
// `importer` returns the unit's importer public key (DER).
inline absl::StatusOr<Ceremony> RunCeremony(const CommandSender& send,
                                            const std::function<std::string()>& importer,
                                            crypto::Entropy& entropy) {
  Ceremony c;
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateP521(entropy));
  HSMSIM_ASSIGN_OR_RETURN(c.admin, host::MakeAdminKey("bench-admin", std::move(key)));
  v1::Command add;
  add.mutable_add_admin()->set_name(c.admin.name);
  add.mutable_add_admin()->set_public_key(c.admin.public_key_der);
  HSMSIM_RETURN_IF_ERROR(send(std::move(add), {}));
  v1::Command thresholds;
  thresholds.mutable_set_thresholds()->set_signature_threshold(1);
  thresholds.mutable_set_thresholds()->set_revocation_threshold(1);
  HSMSIM_RETURN_IF_ERROR(send(std::move(thresholds), {&c.admin}));
  v1::Command gen;
  gen.mutable_generate_importer();
  HSMSIM_RETURN_IF_ERROR(send(std::move(gen), {&c.admin}));
  const std::string importer_der = importer();
  HSMSIM_ASSIGN_OR_RETURN(c.current_master_key,
                          LoadAndCommit(send, importer_der, c.admin, entropy));
  v1::Command promote;
  promote.mutable_set_immediate();
  HSMSIM_RETURN_IF_ERROR(send(std::move(promote), {&c.admin}));
  HSMSIM_ASSIGN_OR_RETURN(c.new_master_key, LoadAndCommit(send, importer_der, c.admin, entropy));
  return c;
}

// InProcessSender signs (tests/support/signed_request.h) and applies
// commands to an in-process unit.
inline CommandSender InProcessSender(firmware::CryptoUnit& unit) {
  return [&unit](v1::Command op, const std::vector<const BenchAdmin*>& signers) {
    v1::Request request = test_support::SignedRequest(unit.Info(), std::move(op), signers);
    return wire::FromWireStatus(unit.Handle(request).response.status());
  };
}

// KeyId returns the key id of blob `i`: 24 bytes, the size of a typical
// "tenant/key" name, so the header (associated data) is 48 bytes.
inline std::string BenchKeyId(size_t i) {
  std::string digits = StrCat(i);
  return StrCat("tenant-0001/key-", std::string(8 - std::min<size_t>(8, digits.size()), '0'),
                digits);
}

// SealBlobs returns `count` blobs holding random root keys under `kek`.
inline std::vector<std::string> SealBlobs(const firmware::BlobKek& kek, size_t count,
                                          crypto::Entropy& entropy) {
  std::vector<std::string> blobs;
  blobs.reserve(count);
  SecretBytes key(firmware::kRootKeySize);
  for (size_t i = 0; i < count; ++i) {
    HSMSIM_CHECK(entropy.Generate(absl::MakeSpan(key)).ok());
    auto blob = kek.Seal(BenchKeyId(i), 0, key, entropy);
    HSMSIM_CHECK(blob.ok());
    blobs.push_back(std::move(*blob));
  }
  return blobs;
}

// BatchSizes of the kernel sweep.
inline const std::vector<int64_t>& KernelBatchSizes() {
  static const std::vector<int64_t> sizes = {1, 16, 256, 4096, 16384};
  return sizes;
}

}  // namespace hsmsim::bench

#endif  // HSMSIM_BENCH_BENCH_SUPPORT_H_

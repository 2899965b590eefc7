// PrepareRotationReadyUnit writes the state directory of a unit that is ready
// for a master key rotation, so process tests can start hsmsim-unit on it:
// normal mode, one administrator (thresholds 1/1), an importer key, CURRENT
// VALID (key A), NEW FULL_COMMITTED (key B), and blobs generated under
// CURRENT. The administrator's key is returned to sign commands over the wire.
#ifndef HSMSIM_TESTS_EMULATOR_PREPARED_UNIT_H_
#define HSMSIM_TESTS_EMULATOR_PREPARED_UNIT_H_

#include <string>
#include <vector>

#include "common/check.h"
#include "common/str_cat.h"
#include "emulator/state_file_system.h"
#include "emulator/state_store.h"
#include "tests/firmware/test_support.h"
#include "tests/support/signed_request.h"

namespace hsmsim::emulator::testing {

using firmware::testing::TestAdmin;

struct PreparedUnit {
  TestAdmin admin;
  std::vector<std::string> blobs;  // under CURRENT
  std::string current_vp;
  std::string new_vp;
};

inline PreparedUnit PrepareRotationReadyUnit(const std::string& state_dir, size_t blob_count,
                                             uint64_t seed = 1) {
  using namespace firmware::testing;  // NOLINT
  crypto::SeededEntropy entropy(seed);
  PreparedUnit out{MakeAdmin("alice", entropy), {}, {}, {}};
  auto unit = *firmware::CryptoUnit::Create(entropy);
  const std::vector<const TestAdmin*> signer = {&out.admin};
  HSMSIM_CHECK(Send(*unit, AddAdminCommand(out.admin), {}).ok());
  HSMSIM_CHECK(Send(*unit, ThresholdsCommand(1, 1), signer).ok());
  HSMSIM_CHECK(Send(*unit, Op([](v1::Command& c) { c.mutable_generate_importer(); }), signer).ok());
  const std::vector<SecretBytes> key_a = {Part(40), Part(41)};
  const std::vector<SecretBytes> key_b = {Part(50), Part(51)};
  HSMSIM_CHECK(Send(*unit, LoadCommand(*unit, key_a, 2, entropy), signer).ok());
  HSMSIM_CHECK(Send(*unit, CommitCommand(Xor(key_a)), signer).ok());
  HSMSIM_CHECK(Send(*unit, Op([](v1::Command& c) { c.mutable_set_immediate(); }), signer).ok());
  HSMSIM_CHECK(Send(*unit, LoadCommand(*unit, key_b, 2, entropy), signer).ok());
  HSMSIM_CHECK(Send(*unit, CommitCommand(Xor(key_b)), signer).ok());
  for (size_t i = 0; i < blob_count; ++i) {
    v1::Request r;
    r.mutable_generate_key()->set_key_id(StrCat("key-", i));
    v1::Response response = unit->HandleReadOnly(r);
    HSMSIM_CHECK(response.status().code() == 0);
    out.blobs.push_back(response.generate_key().blob());
  }
  out.current_vp = unit->Info().current_register().verification_pattern();
  out.new_vp = unit->Info().new_register().verification_pattern();
  auto store = StateStore::Open(state_dir, PosixStateFileSystemInstance(), entropy);
  HSMSIM_CHECK(store.ok());
  HSMSIM_CHECK((*store)->Save(unit->Snapshot()).ok());
  return out;
}

// SignedRequest: the one signed-request builder (tests/support).
using test_support::SignedRequest;

}  // namespace hsmsim::emulator::testing

#endif  // HSMSIM_TESTS_EMULATOR_PREPARED_UNIT_H_

// The one way tests, benchmarks and fuzzers build signed administrative
// commands: unit id and transaction counter from the unit's GetInfo, the
// Command serialized and signed by host::SignCommand (the host's own
// builder), wrapped in a Request. It works for an in-process CryptoUnit
// (SignedRequest(unit.Info(), ...)) and for a unit over the wire (a GetInfo
// read earlier, or host::IssueCommand for a UnitClient).
#ifndef HSMSIM_TESTS_SUPPORT_SIGNED_REQUEST_H_
#define HSMSIM_TESTS_SUPPORT_SIGNED_REQUEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "crypto/entropy.h"
#include "host/admin_key_file.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::test_support {

// MakeTestAdmin returns an administrator named `name` with a new P-521 key
// drawn from `entropy` (deterministic with SeededEntropy). CHECK-fails if
// key generation fails or the name is not a valid administrator name.
host::AdminKey MakeTestAdmin(const std::string& name, crypto::Entropy& entropy);

// CopyAdmin returns a copy of `admin` sharing its key pair, for a test that
// then changes the name, public key or key id of the copy.
host::AdminKey CopyAdmin(const host::AdminKey& admin);

// SignedRequest returns a Request with id `id` carrying `command` with the
// unit id and transaction counter of `info`, signed by each of `signers`
// (none: an unsigned command, as imprint mode allows). CHECK-fails if
// signing fails (a bug in the test, never the unit's answer).
v1::Request SignedRequest(const v1::GetInfoResponse& info, v1::Command command,
                          const std::vector<const host::AdminKey*>& signers, uint64_t id = 1);

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_SIGNED_REQUEST_H_

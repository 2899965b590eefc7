#include "tests/support/signed_request.h"

#include <openssl/evp.h>

#include <utility>

#include "common/check.h"
#include "crypto/ec_p521.h"
#include "host/signed_command.h"

namespace hsmsim::test_support {

host::AdminKey MakeTestAdmin(const std::string& name, crypto::Entropy& entropy) {
  absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::GenerateP521(entropy);
  HSMSIM_CHECK(key.ok());
  absl::StatusOr<host::AdminKey> admin = host::MakeAdminKey(name, std::move(*key));
  HSMSIM_CHECK(admin.ok());
  return std::move(*admin);
}

host::AdminKey CopyAdmin(const host::AdminKey& admin) {
  HSMSIM_CHECK(EVP_PKEY_up_ref(admin.key.get()) == 1);
  host::AdminKey copy;
  copy.name = admin.name;
  copy.key = crypto::EvpPkeyPtr(admin.key.get());
  copy.public_key_der = admin.public_key_der;
  copy.key_id = admin.key_id;
  return copy;
}

v1::Request SignedRequest(const v1::GetInfoResponse& info, v1::Command command,
                          const std::vector<const host::AdminKey*>& signers, uint64_t id) {
  command.set_unit_id(info.unit_id());
  command.set_transaction_counter(info.transaction_counter());
  absl::StatusOr<v1::SignedCommand> signed_command = host::SignCommand(command, signers);
  HSMSIM_CHECK(signed_command.ok());
  v1::Request request;
  request.set_id(id);
  *request.mutable_signed_command() = std::move(*signed_command);
  return request;
}

}  // namespace hsmsim::test_support

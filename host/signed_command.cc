#include "host/signed_command.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <atomic>
#include <string>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"

namespace hsmsim::host {
namespace {

std::atomic<CommandObserver*> g_command_observer{nullptr};

}  // namespace

CommandObserver* SetCommandObserver(CommandObserver* observer) {
  return g_command_observer.exchange(observer);
}

absl::StatusOr<v1::SignedCommand> SignCommand(const v1::Command& command,
                                              const std::vector<const AdminKey*>& signers) {
  v1::SignedCommand signed_command;
  std::string* bytes = signed_command.mutable_command();
  {
    google::protobuf::io::StringOutputStream stream(bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!command.SerializeToCodedStream(&coded)) {
      return Error(absl::StatusCode::kInternal, reason::kSerializeFailed,
                   "the command does not serialize (missing field?)");
    }
  }
  for (const AdminKey* signer : signers) {
    auto signature = signer->external_signer != nullptr
                         ? signer->external_signer->SignSha512(AsBytes(*bytes))
                         : crypto::SignSha512(*signer->key, AsBytes(*bytes));
    if (!signature.ok()) {
      return WithContext(signature.status(),
                         StrCat("signing as administrator '", signer->name, "'"));
    }
    v1::Signature* sig = signed_command.add_signatures();
    sig->set_admin_key_id(crypto::AsString(signer->key_id));
    sig->set_signature(std::move(*signature));
  }
  return signed_command;
}

absl::StatusOr<v1::CommandResponse> IssueCommand(UnitChannel& client,
                                                 const v1::GetInfoResponse& info, v1::Command op,
                                                 const std::vector<const AdminKey*>& signers) {
  op.set_unit_id(info.unit_id());
  op.set_transaction_counter(info.transaction_counter());
  HSMSIM_ASSIGN_OR_RETURN(v1::SignedCommand signed_command, SignCommand(op, signers));
  absl::StatusOr<v1::CommandResponse> result = client.SendCommand(signed_command);
  if (CommandObserver* observer = g_command_observer.load(); observer != nullptr) {
    observer->OnCommand(client.name(), info, op, signers, result);
  }
  return result;
}

absl::StatusOr<v1::CommandResponse> IssueCommand(UnitChannel& client, v1::Command op,
                                                 const std::vector<const AdminKey*>& signers) {
  HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, client.GetInfo());
  return IssueCommand(client, info, std::move(op), signers);
}

}  // namespace hsmsim::host

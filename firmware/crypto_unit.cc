#include "firmware/crypto_unit.h"

#include <utility>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "firmware/internal/argument_validation.h"
#include "firmware/internal/authorization.h"
#include "firmware/internal/commands.h"
#include "firmware/internal/key_use.h"
#include "firmware/internal/reencryption.h"
#include "firmware/internal/refusal.h"
#include "firmware/internal/snapshot_codec.h"
#include "firmware/internal/workload.h"
#include "proto/wire/packed_blobs.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::firmware {
namespace {

using internal::ReencryptDirection;
using wire::PackedOrNull;

// Put moves a successful operation's result into the response field that
// `mutable_field()` creates, and returns the operation's status. A failed
// operation leaves the response without a body.
template <typename T, typename MutableField>
absl::Status Put(absl::StatusOr<T> result, MutableField mutable_field) {
  if (result.ok()) *mutable_field() = std::move(*result);
  return result.status();
}

}  // namespace

// --- construction and persistence ------------------------------------------

absl::StatusOr<std::unique_ptr<CryptoUnit>> CryptoUnit::Create(crypto::Entropy& entropy) {
  std::unique_ptr<CryptoUnit> unit(new CryptoUnit(entropy));
  HSMSIM_RETURN_IF_ERROR(entropy.Generate(absl::MakeSpan(unit->state_.unit_id)));
  return unit;
}

absl::StatusOr<std::unique_ptr<CryptoUnit>> CryptoUnit::Restore(absl::Span<const uint8_t> snapshot,
                                                                crypto::Entropy& entropy) {
  HSMSIM_ASSIGN_OR_RETURN(UnitState state, internal::DecodeSnapshot(snapshot));
  std::unique_ptr<CryptoUnit> unit(new CryptoUnit(entropy));
  unit->state_ = std::move(state);
  return unit;
}

SecretBytes CryptoUnit::Snapshot() const { return internal::EncodeSnapshot(state_); }

v1::GetInfoResponse CryptoUnit::Info() const { return PublicInfo(state_); }

// --- dispatch ----------------------------------------------------------------

bool CryptoUnit::IsReadOnly(const v1::Request& request) {
  switch (request.body_case()) {
    case v1::Request::kGetInfo:
    case v1::Request::kGenerateKey:
    case v1::Request::kGenerateKeys:
    case v1::Request::kWrapKey:
    case v1::Request::kUnwrapKey:
    case v1::Request::kReencryptBatch:
    case v1::Request::kReencryptFromOld:
    case v1::Request::kCheckBlobs:
    case v1::Request::kEncryptAesGcm:
    case v1::Request::kDecryptAesGcm:
    case v1::Request::kImportKey:
    case v1::Request::kWrapAesKeyPad:
    case v1::Request::kUnwrapAesKeyPad:
    case v1::Request::kEncryptAesCbcPad:
    case v1::Request::kDecryptAesCbcPad:
      return true;
    default:
      return false;
  }
}

HandleResult CryptoUnit::Handle(const v1::Request& request) {
  if (IsReadOnly(request)) return HandleResult{HandleReadOnly(request), false};
  HandleResult result;
  result.response.set_id(request.id());
  if (request.body_case() != v1::Request::kSignedCommand) {
    *result.response.mutable_status() = wire::ToWireStatus(internal::Invalid(
        reason::kUnknownRequest,
        StrCat("request ", request.id(), " carries no operation this firmware knows")));
    return result;
  }
  auto command = HandleSignedCommand(request.signed_command());
  if (!command.ok()) {
    *result.response.mutable_status() = wire::ToWireStatus(command.status());
    return result;
  }
  *result.response.mutable_status() = wire::ToWireStatus(absl::OkStatus());
  *result.response.mutable_command() = std::move(*command);
  result.state_changed = true;
  return result;
}

v1::Response CryptoUnit::HandleReadOnly(const v1::Request& request) const {
  v1::Response response;
  response.set_id(request.id());
  absl::Status status = absl::OkStatus();
  switch (request.body_case()) {
    case v1::Request::kGetInfo:
      *response.mutable_get_info() = Info();
      break;
    case v1::Request::kGenerateKey:
      status = Put(internal::GenerateKey(request.generate_key(), state_, entropy_),
                   [&] { return response.mutable_generate_key(); });
      break;
    case v1::Request::kGenerateKeys:
      status = Put(internal::GenerateKeys(request.generate_keys(), state_, entropy_),
                   [&] { return response.mutable_generate_keys(); });
      break;
    case v1::Request::kWrapKey:
      status = Put(internal::WrapKey(request.wrap_key(), state_, entropy_),
                   [&] { return response.mutable_wrap_key(); });
      break;
    case v1::Request::kUnwrapKey:
      status = Put(internal::UnwrapKey(request.unwrap_key(), state_),
                   [&] { return response.mutable_unwrap_key(); });
      break;
    case v1::Request::kReencryptBatch:
      status = Put(
          internal::Reencrypt(ReencryptDirection::kCurrentToNew, request.reencrypt_batch().blobs(),
                              PackedOrNull(request.reencrypt_batch()), state_, entropy_),
          [&] { return response.mutable_reencrypt_batch(); });
      break;
    case v1::Request::kReencryptFromOld:
      status = Put(internal::Reencrypt(
                       ReencryptDirection::kOldToCurrent, request.reencrypt_from_old().blobs(),
                       PackedOrNull(request.reencrypt_from_old()), state_, entropy_),
                   [&] { return response.mutable_reencrypt_from_old(); });
      break;
    case v1::Request::kCheckBlobs:
      status = Put(internal::CheckBlobs(request.check_blobs(), state_),
                   [&] { return response.mutable_check_blobs(); });
      break;
    case v1::Request::kEncryptAesGcm:
      status = Put(internal::EncryptAesGcm(request.encrypt_aes_gcm(), state_),
                   [&] { return response.mutable_encrypt_aes_gcm(); });
      break;
    case v1::Request::kDecryptAesGcm:
      status = Put(internal::DecryptAesGcm(request.decrypt_aes_gcm(), state_),
                   [&] { return response.mutable_decrypt_aes_gcm(); });
      break;
    case v1::Request::kImportKey:
      status = Put(internal::ImportKey(request.import_key(), state_, entropy_),
                   [&] { return response.mutable_import_key(); });
      break;
    case v1::Request::kWrapAesKeyPad:
      status = Put(internal::WrapAesKeyPad(request.wrap_aes_key_pad(), state_),
                   [&] { return response.mutable_wrap_aes_key_pad(); });
      break;
    case v1::Request::kUnwrapAesKeyPad:
      status = Put(internal::UnwrapAesKeyPad(request.unwrap_aes_key_pad(), state_, entropy_),
                   [&] { return response.mutable_unwrap_aes_key_pad(); });
      break;
    case v1::Request::kEncryptAesCbcPad:
      status = Put(internal::EncryptAesCbcPad(request.encrypt_aes_cbc_pad(), state_),
                   [&] { return response.mutable_encrypt_aes_cbc_pad(); });
      break;
    case v1::Request::kDecryptAesCbcPad:
      status = Put(internal::DecryptAesCbcPad(request.decrypt_aes_cbc_pad(), state_),
                   [&] { return response.mutable_decrypt_aes_cbc_pad(); });
      break;
    default:
      status = internal::Invalid(reason::kNotReadOnly, "request is not a read-only operation");
      break;
  }
  *response.mutable_status() = wire::ToWireStatus(status);
  return response;
}

// --- signed commands -----------------------------------------------------------

absl::StatusOr<v1::CommandResponse> CryptoUnit::HandleSignedCommand(
    const v1::SignedCommand& signed_command) {
  // The steps of docs/protocol.md section 6.2, in order; the first refusal
  // ends the command with the state unchanged.
  HSMSIM_ASSIGN_OR_RETURN(const v1::Command command, internal::ParseCommand(signed_command));
  HSMSIM_ASSIGN_OR_RETURN(const internal::Signers signers,
                          internal::VerifySigners(signed_command, command, state_));
  HSMSIM_RETURN_IF_ERROR(internal::CheckModeAllows(command, state_));
  HSMSIM_RETURN_IF_ERROR(internal::ValidateArguments(command));
  HSMSIM_RETURN_IF_ERROR(internal::CheckEnoughSigners(command, state_, signers));
  UnitState next = state_;
  HSMSIM_RETURN_IF_ERROR(internal::ApplyCommand(command, entropy_, next));
  ++next.transaction_counter;
  state_ = std::move(next);
  v1::CommandResponse response;
  *response.mutable_info() = Info();
  return response;
}

}  // namespace hsmsim::firmware

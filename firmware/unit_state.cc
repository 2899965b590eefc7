#include "firmware/unit_state.h"

#include <utility>

#include "common/secret_bytes.h"
#include "common/status.h"

namespace hsmsim::firmware {

absl::StatusOr<Administrator> MakeAdministrator(std::string name, std::string public_key_der) {
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key,
                          crypto::ParseP521PublicKeyDer(AsBytes(public_key_der)));
  Administrator admin;
  admin.name = std::move(name);
  admin.key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(public_key_der));
  admin.public_key_der = std::move(public_key_der);
  admin.public_key = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
  return admin;
}

absl::Status InstallImporterKey(crypto::EvpPkeyPtr key, UnitState& state) {
  HSMSIM_ASSIGN_OR_RETURN(std::string der, crypto::PublicKeyDer(*key));
  state.importer_key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(der));
  state.importer_public_key_der = std::move(der);
  state.importer_key = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
  return absl::OkStatus();
}

v1::GetInfoResponse PublicInfo(const UnitState& state) {
  v1::GetInfoResponse info;
  info.set_unit_id(crypto::AsString(state.unit_id));
  info.set_firmware_version(state.firmware_version);
  info.set_instance(state.instance);
  info.set_mode(state.mode);
  for (const Administrator& a : state.admins) {
    auto* admin = info.add_administrators();
    admin->set_name(a.name);
    admin->set_key_id(crypto::AsString(a.key_id));
    admin->set_public_key(a.public_key_der);
  }
  info.set_signature_threshold(state.signature_threshold);
  info.set_revocation_threshold(state.revocation_threshold);
  *info.mutable_new_register() = state.new_register.Info();
  *info.mutable_current_register() = state.current_register.Info();
  *info.mutable_old_register() = state.old_register.Info();
  info.set_transaction_counter(state.transaction_counter);
  info.set_importer_public_key(state.importer_public_key_der);
  return info;
}

}  // namespace hsmsim::firmware

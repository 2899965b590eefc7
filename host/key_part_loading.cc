#include "host/key_part_loading.h"

#include "common/status.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "host/signed_command.h"

namespace hsmsim::host {

absl::StatusOr<v1::GetInfoResponse> LoadKeyPartsOnUnit(
    UnitChannel& client, v1::GetInfoResponse info, const std::vector<SecretBytes>& parts,
    const std::vector<const AdminKey*>& signers) {
  std::vector<PartEncryptor> encryptors;
  for (const SecretBytes& part : parts) {
    encryptors.push_back([&part](absl::Span<const uint8_t> importer_der) {
      return crypto::EncryptKeyPartToImporter(part, importer_der, crypto::OpenSslEntropyInstance());
    });
  }
  return LoadEncryptedKeyPartsOnUnit(client, std::move(info), encryptors, signers);
}

absl::StatusOr<v1::GetInfoResponse> LoadEncryptedKeyPartsOnUnit(
    UnitChannel& client, v1::GetInfoResponse info, const std::vector<PartEncryptor>& parts,
    const std::vector<const AdminKey*>& signers, uint32_t total_parts) {
  if (info.importer_public_key().empty()) {
    v1::Command gen;
    gen.mutable_generate_importer();
    auto generated = IssueCommand(client, info, gen, signers);
    if (!generated.ok()) return WithContext(generated.status(), "generating the importer key");
    info = generated->info();
  }
  v1::Command load;
  load.mutable_load_key_parts()->set_total_parts(
      total_parts == 0 ? static_cast<uint32_t>(parts.size()) : total_parts);
  for (const PartEncryptor& part : parts) {
    HSMSIM_ASSIGN_OR_RETURN(auto encrypted, part(AsBytes(info.importer_public_key())));
    *load.mutable_load_key_parts()->add_parts() = std::move(encrypted);
  }
  HSMSIM_ASSIGN_OR_RETURN(auto loaded, IssueCommand(client, info, load, signers));
  return loaded.info();
}

absl::StatusOr<v1::GetInfoResponse> CommitNewOnUnit(UnitChannel& client,
                                                    const v1::GetInfoResponse& info,
                                                    std::string_view expected_vp,
                                                    const std::vector<const AdminKey*>& signers) {
  v1::Command commit;
  commit.mutable_commit_new_master_key()->set_expected_verification_pattern(
      std::string(expected_vp));
  HSMSIM_ASSIGN_OR_RETURN(auto committed, IssueCommand(client, info, commit, signers));
  return committed.info();
}

}  // namespace hsmsim::host

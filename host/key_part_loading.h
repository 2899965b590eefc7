// Loading a master key from key parts into a unit's NEW register: the one
// implementation used by `mk load`, `recover --apply --parts` and
// `bench rotate`.
#ifndef HSMSIM_HOST_KEY_PART_LOADING_H_
#define HSMSIM_HOST_KEY_PART_LOADING_H_

#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "host/admin_key_file.h"
#include "host/unit_channel.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

// LoadKeyPartsOnUnit generates the unit's importer key when it has none,
// encrypts every part to it (so no part crosses the wire in clear) and sends
// one LOAD_KEY_PARTS with all of them. `info` is the unit's state before.
// Returns the unit's state after, or the first refusal.
absl::StatusOr<v1::GetInfoResponse> LoadKeyPartsOnUnit(UnitChannel& client,
                                                       v1::GetInfoResponse info,
                                                       const std::vector<SecretBytes>& parts,
                                                       const std::vector<const AdminKey*>& signers);

// PartEncryptor encrypts one key part to the importer public key it is given
// (DER SubjectPublicKeyInfo): a clear part in memory, or a part on a smart
// card that the card encrypts (host/pkcs11/card_key_part.h).
using PartEncryptor =
    std::function<absl::StatusOr<v1::EncryptedKeyPart>(absl::Span<const uint8_t> importer_der)>;

// LoadEncryptedKeyPartsOnUnit is LoadKeyPartsOnUnit for parts that encrypt
// themselves: each encryptor is called once with the unit's importer key.
// `total_parts` is the number of parts of the whole load (LOAD_KEY_PARTS
// total_parts; 0: `parts.size()`, every part at once): with more than
// `parts.size()` the unit keeps NEW PARTIALLY_LOADED until the rest come in
// later commands (each custodian their own).
absl::StatusOr<v1::GetInfoResponse> LoadEncryptedKeyPartsOnUnit(
    UnitChannel& client, v1::GetInfoResponse info, const std::vector<PartEncryptor>& parts,
    const std::vector<const AdminKey*>& signers, uint32_t total_parts = 0);

// CommitNewOnUnit commits NEW quoting `expected_vp`; returns the state after.
absl::StatusOr<v1::GetInfoResponse> CommitNewOnUnit(UnitChannel& client,
                                                    const v1::GetInfoResponse& info,
                                                    std::string_view expected_vp,
                                                    const std::vector<const AdminKey*>& signers);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_KEY_PART_LOADING_H_

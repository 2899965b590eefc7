// Administrator keys on smart cards: a P-521 private key on a PKCS#11 token,
// matched with its public key object by CKA_ID, that signs commands on the
// token. Signing: SHA-512 on the host, CKM_ECDSA on the token (raw r || s,
// PKCS#11 2.40 section 2.3.1), DER-encoded on the host, so a unit cannot
// tell a card signature from a file signature.
#ifndef HSMSIM_HOST_PKCS11_CARD_ADMIN_KEY_H_
#define HSMSIM_HOST_PKCS11_CARD_ADMIN_KEY_H_

#include <string>

#include "absl/status/statusor.h"
#include "host/admin_key_file.h"
#include "host/pkcs11/card_set.h"

namespace hsmsim::host::pkcs11 {

// OpenCardAdminKey returns the administrator key `uri` names: the one
// CKO_PRIVATE_KEY matching the URI's object (CKA_LABEL) and id (CKA_ID), with
// the CKO_PUBLIC_KEY of the same CKA_ID giving the public key (CKA_EC_POINT,
// raw or DER OCTET STRING; CKA_EC_PARAMS must name secp521r1). The name is
// `name_override` when not empty, else the private key's CKA_LABEL. The
// key's `external_signer` signs on the token. Errors name the token and URI:
// the errors of CardSet::OpenToken, NOT_FOUND (NO_SUCH_OBJECT) for no
// matching private key or no public key of its CKA_ID, FAILED_PRECONDITION
// (AMBIGUOUS_OBJECT) for several, INVALID_ARGUMENT (NOT_A_P521_KEY) for
// another curve or key type, (MECHANISM_NOT_SUPPORTED) without CKM_ECDSA,
// and MakeAdminKey's (BAD_ADMIN_NAME).
absl::StatusOr<AdminKey> OpenCardAdminKey(CardSet& cards, const std::string& uri,
                                          const std::string& name_override = "");

// GenerateCardAdminKey generates a P-521 key pair on the token `uri` names
// (CKM_EC_KEY_PAIR_GEN): the private key CKA_TOKEN, CKA_PRIVATE,
// CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only; the public key CKA_VERIFY;
// both labelled `name` with a random 16-byte CKA_ID. Returns the key as
// OpenCardAdminKey would. FAILED_PRECONDITION (OBJECT_EXISTS) when the token
// already has a private key labelled `name`; the errors above otherwise.
absl::StatusOr<AdminKey> GenerateCardAdminKey(CardSet& cards, const std::string& uri,
                                              const std::string& name);

// P521PublicKeyFromToken returns the public key of a CKO_PUBLIC_KEY object.
// INVALID_ARGUMENT (NOT_A_P521_KEY) naming the token otherwise.
absl::StatusOr<crypto::EvpPkeyPtr> P521PublicKeyFromToken(Token& token, CK_OBJECT_HANDLE object);

}  // namespace hsmsim::host::pkcs11

#endif  // HSMSIM_HOST_PKCS11_CARD_ADMIN_KEY_H_

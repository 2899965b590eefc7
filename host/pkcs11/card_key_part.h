// Master key parts on smart cards. A part is a 32-byte secret key generated
// on a PKCS#11 token that is sensitive and can only be wrapped; it leaves the
// token only encrypted to a unit's importer key, with the card KDF (v2,
// crypto/key_part.h, docs/protocol.md section 13):
//
//   on the token: an ephemeral P-521 key pair (CKM_EC_KEY_PAIR_GEN, session
//   objects), Z' = CKM_ECDH1_DERIVE (CKD_NULL) with the importer point into a
//   32-byte CKK_AES key, KEK = CKM_AES_ECB_ENCRYPT_DATA(Z', D), and
//   wrapped = CKM_AES_KEY_WRAP_PAD(KEK, part) (RFC 5649);
//   on the host: only D = SHA-256(label || importer key id || ephemeral
//   point), from public values.
//
// Z', the KEK and the part never leave the token. The part's VP is digested
// on the token too (C_DigestKey of SHA-256(0x01 || part)).
#ifndef HSMSIM_HOST_PKCS11_CARD_KEY_PART_H_
#define HSMSIM_HOST_PKCS11_CARD_KEY_PART_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "crypto/verification_pattern.h"
#include "host/pkcs11/card_set.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host::pkcs11 {

// CardKeyPart is one part object on a token, checked to be safe. Movable;
// shares the token session.
class CardKeyPart {
 public:
  // Open returns the one CKO_SECRET_KEY `uri` names, after CheckPartObject.
  // Errors: those of CardSet::OpenToken, NOT_FOUND (NO_SUCH_OBJECT),
  // FAILED_PRECONDITION (AMBIGUOUS_OBJECT), (UNSAFE_PART_OBJECT) from
  // CheckPartObject, and (MECHANISM_NOT_SUPPORTED) when the token lacks a
  // mechanism of the export.
  static absl::StatusOr<CardKeyPart> Open(CardSet& cards, const std::string& uri);

  // Generate creates a new part on the token `uri` names (CKM_AES_KEY_GEN,
  // 32 bytes): CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE (only
  // so that it can be wrapped), not CKA_MODIFIABLE, and no other use
  // (encrypt, decrypt, sign, verify, wrap, unwrap, derive all false),
  // labelled `label` with a random 16-byte CKA_ID. FAILED_PRECONDITION
  // (OBJECT_EXISTS) when a secret key labelled `label` is there.
  static absl::StatusOr<CardKeyPart> Generate(CardSet& cards, const std::string& uri,
                                              const std::string& label);

  // EncryptToImporter returns the part encrypted to the importer public key
  // (DER SubjectPublicKeyInfo, as GetInfo publishes it) with the card KDF;
  // the message carries kdf = KEY_PART_KDF_TOKEN_AES_ECB. Errors name the
  // token: (TOKEN_REMOVED), (MECHANISM_NOT_SUPPORTED), (TOKEN_FAILED), and
  // INVALID_ARGUMENT (BAD_PUBLIC_KEY) for a bad importer key.
  absl::StatusOr<v1::EncryptedKeyPart> EncryptToImporter(
      absl::Span<const uint8_t> importer_public_key_der) const;

  const std::string& label() const { return label_; }
  const crypto::VerificationPattern& vp() const { return vp_; }
  // Describe is "part 'LABEL' on token 'T' (serial S)".
  std::string Describe() const;

 private:
  CardKeyPart(std::shared_ptr<Token> token, CK_OBJECT_HANDLE handle, std::string label,
              crypto::VerificationPattern vp)
      : token_(std::move(token)), handle_(handle), label_(std::move(label)), vp_(vp) {}

  std::shared_ptr<Token> token_;
  CK_OBJECT_HANDLE handle_;
  std::string label_;
  crypto::VerificationPattern vp_{};
};

// CheckPartObject returns OK when a secret key object is fit to be a key
// part: a 32-byte CKO_SECRET_KEY that is CKA_SENSITIVE and
// CKA_ALWAYS_SENSITIVE (its value was never readable) and not CKA_DERIVE
// (a token's derive mechanisms could copy it into a readable key). Otherwise
// FAILED_PRECONDITION (UNSAFE_PART_OBJECT) naming the token, the label and
// the attribute.
absl::Status CheckPartObject(Token& token, CK_OBJECT_HANDLE object, const std::string& label);

// PartVerificationPattern digests the part on the token: SHA-256(0x01 ||
// part) with the last 4 bytes zeroed (crypto/verification_pattern.h).
// (MECHANISM_NOT_SUPPORTED) when the token cannot digest the key.
absl::StatusOr<crypto::VerificationPattern> PartVerificationPattern(Token& token,
                                                                    CK_OBJECT_HANDLE object);

// CardObject describes one object for `hsmctl card list`: never a value.
struct CardObject {
  std::string kind;  // "private-key", "public-key", "secret-key", "certificate", "data"...
  std::string label;
  std::string id_hex;
  std::string admin_key_id_hex;  // for P-521 public keys: SHA-256 of the DER SPKI
  std::string vp_hex;            // for 32-byte secret keys the token can digest
  std::string part_problem;      // for secret keys: why it is not a safe part, "" if safe
};

// ListCardObjects returns every object on the token `uri` names (the URI's
// object attributes are ignored).
absl::StatusOr<std::vector<CardObject>> ListCardObjects(CardSet& cards, const std::string& uri,
                                                        std::string* token_description);

}  // namespace hsmsim::host::pkcs11

#endif  // HSMSIM_HOST_PKCS11_CARD_KEY_PART_H_

#include "host/pkcs11/card_admin_key.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/verification_pattern.h"

namespace hsmsim::host::pkcs11 {
namespace {

// DER of the secp521r1 OID (RFC 5480 section 2.1.1.1), CKA_EC_PARAMS.
constexpr std::string_view kP521Params("\x06\x05\x2b\x81\x04\x00\x23", 7);
constexpr size_t kPointSize = 1 + 2 * crypto::kP521ScalarSize;  // 133

using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)>;

absl::Status NotP521(const Token& token, std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kNotAP521Key,
               StrCat(token.Describe(), ": ", what,
                      "; an administrator key must be EC on secp521r1 (P-521)"));
}

// RawToDer turns PKCS#11's r || s (PKCS#11 2.40 section 2.3.1) into a DER
// ECDSA-Sig-Value (RFC 3279 section 2.2.3).
absl::StatusOr<std::string> RawToDer(const Token& token, std::string_view raw) {
  if (raw.size() != 2 * crypto::kP521ScalarSize) {
    return Error(absl::StatusCode::kInternal, reason::kTokenFailed,
                 StrCat(token.Describe(), ": CKM_ECDSA gave ", raw.size(),
                        " bytes; a P-521 signature r || s is 132"));
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  EcdsaSigPtr sig(ECDSA_SIG_new(), &ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(bytes, crypto::kP521ScalarSize, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + crypto::kP521ScalarSize, crypto::kP521ScalarSize, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return crypto::OpenSslError(reason::kCryptoFailed, "encoding a card signature as DER");
  }
  const int length = i2d_ECDSA_SIG(sig.get(), nullptr);
  std::string der(length > 0 ? length : 0, '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(der.data());
  if (length <= 0 || i2d_ECDSA_SIG(sig.get(), &out) != length) {
    return crypto::OpenSslError(reason::kCryptoFailed, "encoding a card signature as DER");
  }
  return der;
}

// CardSigner signs with a private key object on a token.
class CardSigner : public ExternalSigner {
 public:
  CardSigner(std::shared_ptr<Token> token, CK_OBJECT_HANDLE key, std::string name,
             crypto::EvpPkeyPtr public_key)
      : token_(std::move(token)),
        key_(key),
        name_(std::move(name)),
        public_key_(std::move(public_key)) {}

  absl::StatusOr<std::string> SignSha512(absl::Span<const uint8_t> message) const override {
    std::string digest(SHA512_DIGEST_LENGTH, '\0');
    SHA512(message.data(), message.size(), reinterpret_cast<unsigned char*>(digest.data()));
    HSMSIM_ASSIGN_OR_RETURN(std::string raw, token_->Sign(CKM_ECDSA, key_, digest));
    HSMSIM_ASSIGN_OR_RETURN(std::string der, RawToDer(*token_, raw));
    // A token that signs with another key than its public key object says
    // would only be refused by the unit; say which card it is here.
    if (!crypto::VerifySha512(*public_key_, message, AsBytes(der)).ok()) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kCardKeyMismatch,
                   StrCat(token_->Describe(), ": the signature of '", name_,
                          "' does not verify with the public key of the same CKA_ID"));
    }
    return der;
  }

 private:
  std::shared_ptr<Token> token_;
  CK_OBJECT_HANDLE key_;
  std::string name_;
  crypto::EvpPkeyPtr public_key_;
};

absl::StatusOr<CK_OBJECT_HANDLE> FindOne(Token& token, Template& match, std::string_view what,
                                         const TokenUri& uri) {
  HSMSIM_ASSIGN_OR_RETURN(auto found, token.Find(match));
  if (found.empty()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchObject,
                 StrCat(token.Describe(), " has no ", what, " matching '", uri.Printable(), "'"));
  }
  if (found.size() > 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kAmbiguousObject,
                 StrCat(token.Describe(), " has ", found.size(), " ", what, "s matching '",
                        uri.Printable(), "'; add object= or id= to the URI"));
  }
  return found.front();
}

absl::StatusOr<AdminKey> OpenOnToken(std::shared_ptr<Token> token, const TokenUri& uri,
                                     const std::string& name_override) {
  HSMSIM_RETURN_IF_ERROR(token->RequireMechanism(CKM_ECDSA, CKF_SIGN, "CKM_ECDSA signing"));
  Template match;
  match.Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  if (!uri.object_label().empty()) match.Bytes(CKA_LABEL, uri.object_label());
  if (!uri.object_id().empty()) match.Bytes(CKA_ID, uri.object_id());
  HSMSIM_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE private_key, FindOne(*token, match, "private key", uri));
  HSMSIM_ASSIGN_OR_RETURN(CK_ULONG key_type, token->GetUlong(private_key, CKA_KEY_TYPE));
  if (key_type != CKK_EC) return NotP521(*token, "the private key is not an EC key");
  auto id = token->GetBytes(private_key, CKA_ID);
  if (!id.ok() || id->empty()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchObject,
                 StrCat(token->Describe(), ": the private key matching '", uri.Printable(),
                        "' has no CKA_ID to find its public key by"));
  }
  Template public_match;
  public_match.Ulong(CKA_CLASS, CKO_PUBLIC_KEY).Bytes(CKA_ID, *id);
  HSMSIM_ASSIGN_OR_RETURN(
      CK_OBJECT_HANDLE public_key,
      FindOne(*token, public_match, StrCat("public key of CKA_ID ", ToHex(*id)), uri));
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, P521PublicKeyFromToken(*token, public_key));
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr verify_copy,
                          P521PublicKeyFromToken(*token, public_key));
  std::string name = name_override;
  if (name.empty()) name = token->GetBytes(private_key, CKA_LABEL).value_or("");
  auto admin = MakeAdminKey(name, std::move(key));
  if (!admin.ok())
    return WithContext(admin.status(), StrCat(token->Describe(), " '", uri.Printable(), "'"));
  admin->external_signer =
      std::make_shared<CardSigner>(token, private_key, admin->name, std::move(verify_copy));
  return admin;
}

}  // namespace

absl::StatusOr<crypto::EvpPkeyPtr> P521PublicKeyFromToken(Token& token, CK_OBJECT_HANDLE object) {
  HSMSIM_ASSIGN_OR_RETURN(CK_ULONG key_type, token.GetUlong(object, CKA_KEY_TYPE));
  if (key_type != CKK_EC) return NotP521(token, "the public key is not an EC key");
  HSMSIM_ASSIGN_OR_RETURN(std::string params, token.GetBytes(object, CKA_EC_PARAMS));
  if (params != kP521Params) return NotP521(token, "the key's CKA_EC_PARAMS are not secp521r1");
  HSMSIM_ASSIGN_OR_RETURN(std::string point, token.GetBytes(object, CKA_EC_POINT));
  // PKCS#11 2.40 says DER OCTET STRING; some tokens give the raw point.
  if (point.size() == kPointSize + 3 && point.compare(0, 3, "\x04\x81\x85") == 0) {
    point = point.substr(3);
  }
  auto key = crypto::ParseP521PublicPoint(AsBytes(point));
  if (!key.ok()) return NotP521(token, "CKA_EC_POINT is not a P-521 point");
  return key;
}

absl::StatusOr<AdminKey> OpenCardAdminKey(CardSet& cards, const std::string& uri_text,
                                          const std::string& name_override) {
  HSMSIM_ASSIGN_OR_RETURN(TokenUri uri, TokenUri::Parse(uri_text));
  HSMSIM_ASSIGN_OR_RETURN(std::shared_ptr<Token> token, cards.OpenToken(uri));
  return OpenOnToken(std::move(token), uri, name_override);
}

absl::StatusOr<AdminKey> GenerateCardAdminKey(CardSet& cards, const std::string& uri_text,
                                              const std::string& name) {
  HSMSIM_ASSIGN_OR_RETURN(TokenUri uri, TokenUri::Parse(uri_text));
  HSMSIM_ASSIGN_OR_RETURN(std::shared_ptr<Token> token, cards.OpenToken(uri));
  HSMSIM_RETURN_IF_ERROR(
      token->RequireMechanism(CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, "CKM_EC_KEY_PAIR_GEN"));
  HSMSIM_RETURN_IF_ERROR(token->RequireMechanism(CKM_ECDSA, CKF_SIGN, "CKM_ECDSA signing"));
  Template existing;
  existing.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_LABEL, name);
  HSMSIM_ASSIGN_OR_RETURN(auto found, token->Find(existing));
  if (!found.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kObjectExists,
                 StrCat(token->Describe(), " already has a private key labelled '", name, "'"));
  }
  std::string id(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(id.data()), static_cast<int>(id.size())) != 1) {
    return crypto::OpenSslError(reason::kCryptoFailed, "random CKA_ID");
  }
  Template public_template;
  public_template.Bytes(CKA_EC_PARAMS, kP521Params)
      .Bool(CKA_TOKEN, true)
      .Bool(CKA_VERIFY, true)
      .Bytes(CKA_LABEL, name)
      .Bytes(CKA_ID, id);
  Template private_template;
  private_template.Bool(CKA_TOKEN, true)
      .Bool(CKA_PRIVATE, true)
      .Bool(CKA_SENSITIVE, true)
      .Bool(CKA_EXTRACTABLE, false)
      .Bool(CKA_SIGN, true)
      .Bool(CKA_DERIVE, false)
      .Bool(CKA_DECRYPT, false)
      .Bool(CKA_UNWRAP, false)
      .Bytes(CKA_LABEL, name)
      .Bytes(CKA_ID, id);
  CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
  HSMSIM_RETURN_IF_ERROR(token->GenerateKeyPair(CKM_EC_KEY_PAIR_GEN, public_template,
                                                private_template, &public_key, &private_key));
  std::string id_escaped;
  for (unsigned char c : id) {
    static constexpr char kHex[] = "0123456789abcdef";
    id_escaped += StrCat("%", std::string(1, kHex[c >> 4]), std::string(1, kHex[c & 15]));
  }
  HSMSIM_ASSIGN_OR_RETURN(TokenUri by_id, TokenUri::Parse(StrCat("pkcs11:id=", id_escaped)));
  return OpenOnToken(std::move(token), by_id, name);
}

}  // namespace hsmsim::host::pkcs11

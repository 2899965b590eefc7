#include "host/pkcs11/card_key_part.h"

#include <openssl/rand.h>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/key_part.h"
#include "crypto/openssl_ptr.h"
#include "host/pkcs11/card_admin_key.h"

namespace hsmsim::host::pkcs11 {
namespace {

constexpr CK_ULONG kPartSize = 32;
constexpr std::string_view kP521Params("\x06\x05\x2b\x81\x04\x00\x23", 7);

absl::Status Unsafe(const Token& token, const std::string& label, std::string_view why) {
  return Error(
      absl::StatusCode::kFailedPrecondition, reason::kUnsafePartObject,
      StrCat("secret key '", label, "' on ", token.Describe(), " is refused as a key part: ", why));
}

absl::Status RequireExportMechanisms(const Token& token) {
  HSMSIM_RETURN_IF_ERROR(token.RequireMechanism(CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR,
                                                "CKM_EC_KEY_PAIR_GEN (P-521)"));
  HSMSIM_RETURN_IF_ERROR(token.RequireMechanism(CKM_ECDH1_DERIVE, CKF_DERIVE, "CKM_ECDH1_DERIVE"));
  HSMSIM_RETURN_IF_ERROR(
      token.RequireMechanism(CKM_AES_ECB_ENCRYPT_DATA, CKF_DERIVE, "CKM_AES_ECB_ENCRYPT_DATA"));
  return token.RequireMechanism(CKM_AES_KEY_WRAP_PAD, CKF_WRAP, "CKM_AES_KEY_WRAP_PAD (RFC 5649)");
}

}  // namespace

absl::Status CheckPartObject(Token& token, CK_OBJECT_HANDLE object, const std::string& label) {
  HSMSIM_ASSIGN_OR_RETURN(CK_ULONG cls, token.GetUlong(object, CKA_CLASS));
  if (cls != CKO_SECRET_KEY) return Unsafe(token, label, "it is not a secret key");
  auto length = token.GetUlong(object, CKA_VALUE_LEN);
  if (!length.ok() || *length != kPartSize) {
    return Unsafe(token, label, "it is not 32 bytes long (CKA_VALUE_LEN)");
  }
  HSMSIM_ASSIGN_OR_RETURN(bool sensitive, token.GetBool(object, CKA_SENSITIVE, false));
  if (!sensitive) {
    return Unsafe(token, label, "CKA_SENSITIVE is false, so its value can be read in clear");
  }
  HSMSIM_ASSIGN_OR_RETURN(bool always_sensitive,
                          token.GetBool(object, CKA_ALWAYS_SENSITIVE, false));
  if (!always_sensitive) {
    return Unsafe(token, label,
                  "CKA_ALWAYS_SENSITIVE is false: it was imported or readable at some time, so a "
                  "clear copy may exist");
  }
  HSMSIM_ASSIGN_OR_RETURN(bool derive, token.GetBool(object, CKA_DERIVE, false));
  if (derive) {
    return Unsafe(token, label,
                  "CKA_DERIVE is true: a derive mechanism could copy it into a readable key");
  }
  return absl::OkStatus();
}

absl::StatusOr<crypto::VerificationPattern> PartVerificationPattern(Token& token,
                                                                    CK_OBJECT_HANDLE object) {
  HSMSIM_ASSIGN_OR_RETURN(std::string digest,
                          token.DigestKey(CKM_SHA256, std::string_view("\x01", 1), object));
  crypto::VerificationPattern vp{};
  if (digest.size() != vp.size()) {
    return Error(absl::StatusCode::kInternal, reason::kTokenFailed,
                 StrCat(token.Describe(), ": CKM_SHA256 gave ", digest.size(), " bytes"));
  }
  std::copy(digest.begin(), digest.end(), vp.begin());
  for (size_t i = vp.size() - 4; i < vp.size(); ++i) vp[i] = 0;  // the EP11 convention
  return vp;
}

std::string CardKeyPart::Describe() const {
  return StrCat("part '", label_, "' on ", token_->Describe());
}

absl::StatusOr<CardKeyPart> CardKeyPart::Open(CardSet& cards, const std::string& uri_text) {
  HSMSIM_ASSIGN_OR_RETURN(TokenUri uri, TokenUri::Parse(uri_text));
  HSMSIM_ASSIGN_OR_RETURN(std::shared_ptr<Token> token, cards.OpenToken(uri));
  Template match;
  match.Ulong(CKA_CLASS, CKO_SECRET_KEY);
  if (!uri.object_label().empty()) match.Bytes(CKA_LABEL, uri.object_label());
  if (!uri.object_id().empty()) match.Bytes(CKA_ID, uri.object_id());
  HSMSIM_ASSIGN_OR_RETURN(auto found, token->Find(match));
  if (found.empty()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchObject,
                 StrCat(token->Describe(), " has no secret key matching '", uri.Printable(), "'"));
  }
  if (found.size() > 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kAmbiguousObject,
                 StrCat(token->Describe(), " has ", found.size(), " secret keys matching '",
                        uri.Printable(), "'; add object= or id= to the URI"));
  }
  const std::string label = token->GetBytes(found.front(), CKA_LABEL).value_or("");
  HSMSIM_RETURN_IF_ERROR(CheckPartObject(*token, found.front(), label));
  HSMSIM_RETURN_IF_ERROR(RequireExportMechanisms(*token));
  HSMSIM_ASSIGN_OR_RETURN(crypto::VerificationPattern vp,
                          PartVerificationPattern(*token, found.front()));
  return CardKeyPart(std::move(token), found.front(), label, vp);
}

absl::StatusOr<CardKeyPart> CardKeyPart::Generate(CardSet& cards, const std::string& uri_text,
                                                  const std::string& label) {
  HSMSIM_ASSIGN_OR_RETURN(TokenUri uri, TokenUri::Parse(uri_text));
  HSMSIM_ASSIGN_OR_RETURN(std::shared_ptr<Token> token, cards.OpenToken(uri));
  HSMSIM_RETURN_IF_ERROR(token->RequireMechanism(CKM_AES_KEY_GEN, CKF_GENERATE, "CKM_AES_KEY_GEN"));
  HSMSIM_RETURN_IF_ERROR(RequireExportMechanisms(*token));
  Template existing;
  existing.Ulong(CKA_CLASS, CKO_SECRET_KEY).Bytes(CKA_LABEL, label);
  HSMSIM_ASSIGN_OR_RETURN(auto found, token->Find(existing));
  if (!found.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kObjectExists,
                 StrCat(token->Describe(), " already has a secret key labelled '", label, "'"));
  }
  std::string id(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(id.data()), static_cast<int>(id.size())) != 1) {
    return crypto::OpenSslError(reason::kCryptoFailed, "random CKA_ID");
  }
  Template tmpl;
  tmpl.Ulong(CKA_CLASS, CKO_SECRET_KEY)
      .Ulong(CKA_KEY_TYPE, CKK_AES)
      .Ulong(CKA_VALUE_LEN, kPartSize)
      .Bool(CKA_TOKEN, true)
      .Bool(CKA_PRIVATE, true)
      .Bool(CKA_SENSITIVE, true)
      .Bool(CKA_EXTRACTABLE, true)
      .Bool(CKA_MODIFIABLE, false)
      .Bool(CKA_ENCRYPT, false)
      .Bool(CKA_DECRYPT, false)
      .Bool(CKA_SIGN, false)
      .Bool(CKA_VERIFY, false)
      .Bool(CKA_WRAP, false)
      .Bool(CKA_UNWRAP, false)
      .Bool(CKA_DERIVE, false)
      .Bytes(CKA_LABEL, label)
      .Bytes(CKA_ID, id);
  HSMSIM_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE handle, token->GenerateKey(CKM_AES_KEY_GEN, tmpl));
  HSMSIM_RETURN_IF_ERROR(CheckPartObject(*token, handle, label));
  HSMSIM_ASSIGN_OR_RETURN(crypto::VerificationPattern vp, PartVerificationPattern(*token, handle));
  return CardKeyPart(std::move(token), handle, label, vp);
}

absl::StatusOr<v1::EncryptedKeyPart> CardKeyPart::EncryptToImporter(
    absl::Span<const uint8_t> importer_public_key_der) const {
  Token& token = *token_;
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr importer,
                          crypto::ParseP521PublicKeyDer(importer_public_key_der));
  HSMSIM_ASSIGN_OR_RETURN(std::string importer_point, crypto::PublicPoint(*importer));
  const crypto::KeyId importer_id = crypto::KeyIdOfPublicKeyDer(importer_public_key_der);

  // The ephemeral key pair: session objects, the private half never leaves.
  Template public_template;
  public_template.Bytes(CKA_EC_PARAMS, kP521Params).Bool(CKA_TOKEN, false);
  Template private_template;
  private_template.Bool(CKA_TOKEN, false)
      .Bool(CKA_PRIVATE, true)
      .Bool(CKA_SENSITIVE, true)
      .Bool(CKA_EXTRACTABLE, false)
      .Bool(CKA_DERIVE, true)
      .Bool(CKA_SIGN, false);
  CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
  HSMSIM_RETURN_IF_ERROR(token.GenerateKeyPair(CKM_EC_KEY_PAIR_GEN, public_template,
                                               private_template, &public_handle, &private_handle));
  SessionObject ephemeral_public(token, public_handle);
  SessionObject ephemeral_private(token, private_handle);
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr ephemeral,
                          P521PublicKeyFromToken(token, ephemeral_public.get()));
  HSMSIM_ASSIGN_OR_RETURN(std::string ephemeral_point, crypto::PublicPoint(*ephemeral));

  // Z' = the last 32 bytes of the ECDH secret, as a sensitive AES key.
  CK_ECDH1_DERIVE_PARAMS ecdh{CKD_NULL, 0, nullptr, static_cast<CK_ULONG>(importer_point.size()),
                              reinterpret_cast<CK_BYTE*>(importer_point.data())};
  CK_MECHANISM ecdh_mechanism{CKM_ECDH1_DERIVE, &ecdh, sizeof(ecdh)};
  Template secret_template;
  secret_template.Ulong(CKA_CLASS, CKO_SECRET_KEY)
      .Ulong(CKA_KEY_TYPE, CKK_AES)
      .Ulong(CKA_VALUE_LEN, 32)
      .Bool(CKA_TOKEN, false)
      .Bool(CKA_SENSITIVE, true)
      .Bool(CKA_EXTRACTABLE, false)
      .Bool(CKA_DERIVE, true);
  HSMSIM_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE z_handle,
                          token.Derive(ecdh_mechanism, ephemeral_private.get(), secret_template));
  SessionObject z(token, z_handle);

  // KEK = AES-256-ECB(Z', D).
  std::string context = crypto::KeyPartTokenKdfContext(importer_id, ephemeral_point);
  CK_KEY_DERIVATION_STRING_DATA data{reinterpret_cast<CK_BYTE*>(context.data()),
                                     static_cast<CK_ULONG>(context.size())};
  CK_MECHANISM ecb_mechanism{CKM_AES_ECB_ENCRYPT_DATA, &data, sizeof(data)};
  Template kek_template;
  kek_template.Ulong(CKA_CLASS, CKO_SECRET_KEY)
      .Ulong(CKA_KEY_TYPE, CKK_AES)
      .Ulong(CKA_VALUE_LEN, 32)
      .Bool(CKA_TOKEN, false)
      .Bool(CKA_SENSITIVE, true)
      .Bool(CKA_EXTRACTABLE, false)
      .Bool(CKA_WRAP, true)
      .Bool(CKA_DERIVE, false);
  HSMSIM_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE kek_handle,
                          token.Derive(ecb_mechanism, z.get(), kek_template));
  SessionObject kek(token, kek_handle);

  HSMSIM_ASSIGN_OR_RETURN(std::string wrapped,
                          token.Wrap(CKM_AES_KEY_WRAP_PAD, kek.get(), handle_));
  v1::EncryptedKeyPart out;
  out.set_importer_key_id(crypto::AsString(importer_id));
  out.set_ephemeral_public_key(std::move(ephemeral_point));
  out.set_wrapped_part(std::move(wrapped));
  out.set_kdf(v1::KEY_PART_KDF_TOKEN_AES_ECB);
  return out;
}

absl::StatusOr<std::vector<CardObject>> ListCardObjects(CardSet& cards, const std::string& uri_text,
                                                        std::string* token_description) {
  HSMSIM_ASSIGN_OR_RETURN(TokenUri uri, TokenUri::Parse(uri_text));
  HSMSIM_ASSIGN_OR_RETURN(std::shared_ptr<Token> token, cards.OpenToken(uri));
  if (token_description != nullptr) *token_description = token->Describe();
  Template all;
  HSMSIM_ASSIGN_OR_RETURN(auto handles, token->Find(all));
  std::vector<CardObject> out;
  for (CK_OBJECT_HANDLE h : handles) {
    CardObject o;
    HSMSIM_ASSIGN_OR_RETURN(CK_ULONG cls, token->GetUlong(h, CKA_CLASS));
    o.label = token->GetBytes(h, CKA_LABEL).value_or("");
    o.id_hex = ToHex(token->GetBytes(h, CKA_ID).value_or(""));
    switch (cls) {
      case CKO_PRIVATE_KEY:
        o.kind = "private-key";
        break;
      case CKO_PUBLIC_KEY: {
        o.kind = "public-key";
        auto key = P521PublicKeyFromToken(*token, h);
        if (key.ok()) {
          if (auto der = crypto::PublicKeyDer(**key); der.ok()) {
            o.admin_key_id_hex =
                ToHex(crypto::AsString(crypto::KeyIdOfPublicKeyDer(AsBytes(*der))));
          }
        }
        break;
      }
      case CKO_SECRET_KEY: {
        o.kind = "secret-key";
        absl::Status safe = CheckPartObject(*token, h, o.label);
        if (!safe.ok()) {
          o.part_problem = std::string(safe.message());
        } else if (auto vp = PartVerificationPattern(*token, h); vp.ok()) {
          o.vp_hex = ToHex(crypto::AsString(*vp));
        }
        break;
      }
      case CKO_CERTIFICATE:
        o.kind = "certificate";
        break;
      case CKO_DATA:
        o.kind = "data";
        break;
      default:
        o.kind = StrCat("class-", cls);
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace hsmsim::host::pkcs11

#include "crypto/key_part.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/symmetric.h"

namespace hsmsim::crypto {
namespace {

constexpr std::string_view kImportLabel = "hsmsim/v1 key part import";
constexpr std::string_view kTokenKdfLabel = "hsmsim/v1 key part import v2";
constexpr std::string_view kPartFileMagic = "hsmsim-keypart";
constexpr uint32_t kPartFileVersion = 1;
constexpr size_t kSaltSize = 16;

absl::StatusOr<SecretBytes> ImportKek(absl::Span<const uint8_t> shared_secret,
                                      absl::Span<const uint8_t> importer_key_id,
                                      std::string_view ephemeral_point) {
  std::string info = StrCat(kImportLabel, ephemeral_point);
  return HkdfSha256(shared_secret, importer_key_id, AsBytes(info), kAes256KeySize);
}

// WrappingKey derives the part's wrapping key from the ECDH secret with `kdf`.
absl::StatusOr<SecretBytes> WrappingKey(v1::KeyPartKdf kdf, absl::Span<const uint8_t> shared,
                                        absl::Span<const uint8_t> importer_key_id,
                                        std::string_view ephemeral_point) {
  switch (kdf) {
    case v1::KEY_PART_KDF_UNSPECIFIED:
    case v1::KEY_PART_KDF_HKDF_SHA256:
      return ImportKek(shared, importer_key_id, ephemeral_point);
    case v1::KEY_PART_KDF_TOKEN_AES_ECB:
      return KeyPartTokenKdfKek(shared, KeyPartTokenKdfContext(importer_key_id, ephemeral_point));
    default:
      return Error(absl::StatusCode::kInvalidArgument, reason::kUnknownKeyPartKdf,
                   StrCat("key part KDF ", static_cast<int>(kdf),
                          " is not known to this build (known: 1 HKDF, 2 card KDF)"));
  }
}

absl::Status BadPartFile(std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartFile,
               StrCat("key part file is not valid: ", what));
}

// PartFileAad binds every envelope field but the ciphertext and tag.
std::string PartFileAad(const v1::KeyPartFile& f) {
  return StrCat(f.magic(), "|", f.format_version(), "|", static_cast<int>(f.kdf()), "|",
                f.kdf_cost(), "|", f.scrypt_r(), "|", f.scrypt_p(), "|", f.salt(), "|",
                f.part_verification_pattern(), "|", f.description());
}

absl::StatusOr<SecretBytes> PasswordKey(const v1::KeyPartFile& f, std::string_view password) {
  SecretBytes key(kAes256KeySize);
  switch (f.kdf()) {
    case v1::PASSWORD_KDF_PBKDF2_HMAC_SHA256:
      if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                            reinterpret_cast<const unsigned char*>(f.salt().data()),
                            static_cast<int>(f.salt().size()), static_cast<int>(f.kdf_cost()),
                            EVP_sha256(), static_cast<int>(key.size()), key.data()) != 1) {
        return OpenSslError(reason::kCryptoFailed, "PBKDF2 failed");
      }
      return key;
    case v1::PASSWORD_KDF_SCRYPT:
      if (EVP_PBE_scrypt(password.data(), password.size(),
                         reinterpret_cast<const unsigned char*>(f.salt().data()), f.salt().size(),
                         uint64_t{1} << f.kdf_cost(), f.scrypt_r(), f.scrypt_p(), uint64_t{1} << 30,
                         key.data(), key.size()) != 1) {
        return OpenSslError(reason::kCryptoFailed, "scrypt failed");
      }
      return key;
    default:
      return BadPartFile(StrCat("unknown password KDF ", static_cast<int>(f.kdf())));
  }
}

absl::Status CheckKdf(const v1::KeyPartFile& f) {
  switch (f.kdf()) {
    case v1::PASSWORD_KDF_PBKDF2_HMAC_SHA256:
      if (f.kdf_cost() < 10'000 || f.kdf_cost() > 10'000'000) {
        return BadPartFile(StrCat("PBKDF2 iterations must be 10000..10000000, got ", f.kdf_cost()));
      }
      return absl::OkStatus();
    case v1::PASSWORD_KDF_SCRYPT:
      if (f.kdf_cost() < 10 || f.kdf_cost() > 20 || f.scrypt_r() < 1 || f.scrypt_r() > 32 ||
          f.scrypt_p() < 1 || f.scrypt_p() > 16) {
        return BadPartFile(StrCat("scrypt parameters out of range: log2(N)=", f.kdf_cost(),
                                  " r=", f.scrypt_r(), " p=", f.scrypt_p()));
      }
      return absl::OkStatus();
    default:
      return BadPartFile(StrCat("unknown password KDF ", static_cast<int>(f.kdf())));
  }
}

}  // namespace

std::string KeyPartTokenKdfContext(absl::Span<const uint8_t> importer_key_id,
                                   std::string_view ephemeral_point) {
  std::string input = StrCat(kTokenKdfLabel, AsString(importer_key_id), ephemeral_point);
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

absl::StatusOr<SecretBytes> KeyPartTokenKdfKek(absl::Span<const uint8_t> shared_secret,
                                               std::string_view context) {
  if (shared_secret.size() < kAes256KeySize || context.size() != kAes256KeySize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyPart,
                 StrCat("card KDF needs a shared secret of at least 32 bytes and a 32-byte "
                        "context, got ",
                        shared_secret.size(), " and ", context.size()));
  }
  // Z' is the trailing 32 bytes: a token keeps those when it truncates the
  // CKD_NULL secret to a 32-byte AES key.
  absl::Span<const uint8_t> z_tail = shared_secret.subspan(shared_secret.size() - kAes256KeySize);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  SecretBytes kek(kAes256KeySize);
  int out_len = 0;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ecb(), nullptr, z_tail.data(), nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_EncryptUpdate(ctx.get(), kek.data(), &out_len,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      out_len != static_cast<int>(kek.size())) {
    return OpenSslError(reason::kCryptoFailed, "AES-256-ECB of the card KDF failed");
  }
  return kek;
}

absl::StatusOr<v1::EncryptedKeyPart> EncryptKeyPartToImporter(
    absl::Span<const uint8_t> part, absl::Span<const uint8_t> importer_public_key_der,
    Entropy& entropy, v1::KeyPartKdf kdf) {
  if (part.size() != kKeyPartSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyPart,
                 StrCat("a key part must be 32 bytes, got ", part.size()));
  }
  HSMSIM_ASSIGN_OR_RETURN(EvpPkeyPtr importer, ParseP521PublicKeyDer(importer_public_key_der));
  KeyId importer_id = KeyIdOfPublicKeyDer(importer_public_key_der);
  HSMSIM_ASSIGN_OR_RETURN(EvpPkeyPtr ephemeral, GenerateP521(entropy));
  HSMSIM_ASSIGN_OR_RETURN(std::string ephemeral_point, PublicPoint(*ephemeral));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes shared, EcdhSharedSecret(*ephemeral, *importer));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes kek, WrappingKey(kdf, shared, importer_id, ephemeral_point));
  HSMSIM_ASSIGN_OR_RETURN(std::string wrapped, AesKeyWrapPad(kek, part));
  v1::EncryptedKeyPart out;
  if (kdf != v1::KEY_PART_KDF_HKDF_SHA256) out.set_kdf(kdf);
  out.set_importer_key_id(AsString(importer_id));
  out.set_ephemeral_public_key(std::move(ephemeral_point));
  out.set_wrapped_part(std::move(wrapped));
  return out;
}

absl::StatusOr<SecretBytes> DecryptKeyPartWithImporter(const EVP_PKEY& importer_private_key,
                                                       absl::Span<const uint8_t> importer_key_id,
                                                       const v1::EncryptedKeyPart& encrypted) {
  if (!ConstantTimeEquals(AsBytes(encrypted.importer_key_id()), importer_key_id)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kWrongImporterKey,
                 "key part was encrypted to a different importer key (another unit, or an "
                 "importer key that was replaced); encrypt it again to this unit's importer key");
  }
  HSMSIM_ASSIGN_OR_RETURN(EvpPkeyPtr ephemeral,
                          ParseP521PublicPoint(AsBytes(encrypted.ephemeral_public_key())));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes shared, EcdhSharedSecret(importer_private_key, *ephemeral));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes kek, WrappingKey(encrypted.kdf(), shared, importer_key_id,
                                                       encrypted.ephemeral_public_key()));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes part,
                          AesKeyUnwrapPad(kek, AsBytes(encrypted.wrapped_part())));
  if (part.size() != kKeyPartSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyPart,
                 StrCat("a key part must be 32 bytes, got ", part.size()));
  }
  return part;
}

absl::StatusOr<std::string> SealKeyPartFile(absl::Span<const uint8_t> part,
                                            std::string_view password,
                                            const PartFileOptions& options, Entropy& entropy) {
  if (part.size() != kKeyPartSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyPart,
                 StrCat("a key part must be 32 bytes, got ", part.size()));
  }
  if (password.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kEmptyPassword,
                 "a key part file needs a non-empty password");
  }
  v1::KeyPartFile f;
  f.set_magic(std::string(kPartFileMagic));
  f.set_format_version(kPartFileVersion);
  f.set_kdf(options.kdf);
  f.set_kdf_cost(options.cost);
  if (options.kdf == v1::PASSWORD_KDF_SCRYPT) {
    f.set_scrypt_r(8);
    f.set_scrypt_p(1);
  }
  HSMSIM_RETURN_IF_ERROR(CheckKdf(f));
  std::string salt(kSaltSize, '\0');
  std::string iv(kGcmIvSize, '\0');
  HSMSIM_RETURN_IF_ERROR(
      entropy.Generate(absl::MakeSpan(reinterpret_cast<uint8_t*>(salt.data()), salt.size())));
  HSMSIM_RETURN_IF_ERROR(
      entropy.Generate(absl::MakeSpan(reinterpret_cast<uint8_t*>(iv.data()), iv.size())));
  f.set_salt(std::move(salt));
  f.set_iv(std::move(iv));
  f.set_part_verification_pattern(AsString(ComputeVerificationPattern(part)));
  f.set_description(options.description);
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes key, PasswordKey(f, password));
  std::string aad = PartFileAad(f);
  std::string ciphertext(part.size(), '\0');
  std::string tag(kGcmTagSize, '\0');
  HSMSIM_RETURN_IF_ERROR(
      AesGcmSeal(key, AsBytes(f.iv()), AsBytes(aad), part,
                 absl::MakeSpan(reinterpret_cast<uint8_t*>(ciphertext.data()), ciphertext.size()),
                 absl::MakeSpan(reinterpret_cast<uint8_t*>(tag.data()), tag.size())));
  f.set_ciphertext(std::move(ciphertext));
  f.set_tag(std::move(tag));
  return f.SerializeAsString();
}

absl::StatusOr<v1::KeyPartFile> ParseKeyPartFile(std::string_view file_bytes) {
  v1::KeyPartFile f;
  if (file_bytes.size() > 4096 ||
      !f.ParseFromArray(file_bytes.data(), static_cast<int>(file_bytes.size()))) {
    return BadPartFile(StrCat("not a key part file (", file_bytes.size(), " bytes)"));
  }
  if (f.magic() != kPartFileMagic) return BadPartFile("missing the hsmsim-keypart marker");
  if (f.format_version() > kPartFileVersion) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kUnsupportedVersion,
                 StrCat("key part file format version ", f.format_version(),
                        " is newer than this build supports (", kPartFileVersion, ")"));
  }
  if (f.format_version() != kPartFileVersion) {
    return BadPartFile(StrCat("format version ", f.format_version(), " is not known"));
  }
  HSMSIM_RETURN_IF_ERROR(CheckKdf(f));
  if (f.salt().size() != kSaltSize || f.iv().size() != kGcmIvSize ||
      f.ciphertext().size() != kKeyPartSize || f.tag().size() != kGcmTagSize ||
      f.part_verification_pattern().size() != kVerificationPatternSize) {
    return BadPartFile("a field has the wrong length (the file is damaged)");
  }
  return f;
}

absl::StatusOr<SecretBytes> OpenKeyPartFile(std::string_view file_bytes,
                                            std::string_view password) {
  HSMSIM_ASSIGN_OR_RETURN(v1::KeyPartFile f, ParseKeyPartFile(file_bytes));
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes key, PasswordKey(f, password));
  std::string aad = PartFileAad(f);
  SecretBytes part(kKeyPartSize);
  absl::Status opened = AesGcmOpen(key, AsBytes(f.iv()), AsBytes(aad), AsBytes(f.ciphertext()),
                                   AsBytes(f.tag()), absl::MakeSpan(part));
  if (!opened.ok()) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kWrongPassword,
                 "key part file does not open: wrong password, or the file was altered");
  }
  VerificationPattern vp = ComputeVerificationPattern(part);
  if (!ConstantTimeEquals(vp, AsBytes(f.part_verification_pattern()))) {
    return BadPartFile("the part does not match its verification pattern");
  }
  return part;
}

}  // namespace hsmsim::crypto

#include "host/hsmctl/key_sources.h"

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "host/admin_public_key.h"
#include "host/password.h"
#include "host/pkcs11/card_admin_key.h"
#include "host/pkcs11/card_key_part.h"
#include "host/pkcs11/token_uri.h"

namespace hsmsim::hsmctl {
namespace {

bool SamePath(const std::string& a, const std::string& b) {
  if (a == b) return true;
  std::error_code ec1, ec2;
  auto ca = std::filesystem::weakly_canonical(a, ec1);
  auto cb = std::filesystem::weakly_canonical(b, ec2);
  return !ec1 && !ec2 && ca == cb;
}

}  // namespace

void AddPkcs11ModuleOption(CLI::App* cmd, Invocation& inv) {
  cmd->add_option("--pkcs11-module", inv.pkcs11_module,
                  "PKCS#11 module for pkcs11: URIs: a library path, or the name of a module "
                  "registered with p11-kit (default: $HSMSIM_PKCS11_MODULE, else every "
                  "registered module)");
}

host::pkcs11::CardSet& Cards(Invocation& inv) {
  if (inv.cards == nullptr) inv.cards = std::make_shared<host::pkcs11::CardSet>(inv.pkcs11_module);
  return *inv.cards;
}

absl::StatusOr<SecretBytes> PasswordForFile(Invocation& inv, const std::string& file) {
  for (const auto& [target, password_file] : inv.file_password_files) {
    if (SamePath(target, file)) {
      auto password = host::ResolvePassword(password_file, "");
      if (!password.ok()) return WithContext(password.status(), StrCat("password of ", file));
      return password;
    }
  }
  if (!inv.password_file.empty() || std::getenv(host::kPasswordEnv) != nullptr ||
      inv.password.has_value()) {
    HSMSIM_ASSIGN_OR_RETURN(std::string_view password, GetPassword(inv, "Password: "));
    return MakeSecret(password);
  }
  auto password = host::PromptSecret(StrCat("Password for ", file, ": "));
  if (!password.ok() || password->empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kNoPassword,
                 StrCat("no password for ", file, "; give --password-file ", file,
                        "=PWFILE, --password-file PWFILE or set ", host::kPasswordEnv));
  }
  return password;
}

absl::StatusOr<SecretBytes> NewFilePassword(Invocation& inv, const std::string& file,
                                            std::string_view prompt) {
  for (const auto& [target, password_file] : inv.file_password_files) {
    if (SamePath(target, file)) return host::ResolvePassword(password_file, "");
  }
  HSMSIM_ASSIGN_OR_RETURN(std::string_view password, GetPassword(inv, prompt, /*confirm=*/true));
  return MakeSecret(password);
}

absl::StatusOr<host::AdminKey> OpenAdminKey(Invocation& inv, const std::string& spec,
                                            const std::string& name) {
  if (host::pkcs11::IsPkcs11Uri(spec)) {
    return host::pkcs11::OpenCardAdminKey(Cards(inv), spec, name);
  }
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes password, PasswordForFile(inv, spec));
  HSMSIM_ASSIGN_OR_RETURN(host::AdminKey key, host::ReadAdminKeyFile(spec, AsStringView(password)));
  if (!name.empty() && name != key.name) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kBadAdminName,
        StrCat("--name applies to card keys; the key file ", spec, " names '", key.name, "'"));
  }
  return key;
}

absl::StatusOr<host::AdminKey> OpenAdminPublicKey(Invocation& inv, const std::string& spec,
                                                  const std::string& name) {
  if (!host::pkcs11::IsPkcs11Uri(spec)) {
    HSMSIM_ASSIGN_OR_RETURN(std::string text, host::ReadFileBytes(spec));
    if (host::IsAdminPublicKeyText(text)) return host::ParseAdminPublicKey(text, name, spec);
  }
  return OpenAdminKey(inv, spec, name);
}

absl::StatusOr<KeyParts> OpenKeyParts(Invocation& inv, const std::vector<std::string>& specs) {
  if (specs.empty() || specs.size() > kMaxKeyParts) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                 StrCat("--parts takes 1 to ", kMaxKeyParts,
                        " key parts (files or pkcs11: URIs), got ", specs.size()));
  }
  KeyParts out;
  SecretBytes xored(crypto::kKeyPartSize, 0);
  bool all_files = true;
  for (const std::string& spec : specs) {
    if (host::pkcs11::IsPkcs11Uri(spec)) {
      HSMSIM_ASSIGN_OR_RETURN(auto part, host::pkcs11::CardKeyPart::Open(Cards(inv), spec));
      auto shared = std::make_shared<host::pkcs11::CardKeyPart>(std::move(part));
      out.sources.push_back(shared->Describe());
      out.part_vps.push_back(crypto::AsString(shared->vp()));
      out.encryptors.push_back([shared](absl::Span<const uint8_t> importer_der) {
        return shared->EncryptToImporter(importer_der);
      });
      all_files = false;
      continue;
    }
    HSMSIM_ASSIGN_OR_RETURN(std::string bytes, host::ReadFileBytes(spec));
    HSMSIM_ASSIGN_OR_RETURN(SecretBytes password, PasswordForFile(inv, spec));
    auto part = crypto::OpenKeyPartFile(bytes, AsStringView(password));
    if (!part.ok()) return WithContext(part.status(), spec);
    for (size_t i = 0; i < crypto::kKeyPartSize; ++i) xored[i] ^= (*part)[i];
    auto shared = std::make_shared<SecretBytes>(std::move(*part));
    out.sources.push_back(spec);
    out.part_vps.push_back(crypto::AsString(crypto::ComputeVerificationPattern(*shared)));
    out.encryptors.push_back([shared](absl::Span<const uint8_t> importer_der) {
      return crypto::EncryptKeyPartToImporter(*shared, importer_der,
                                              crypto::OpenSslEntropyInstance());
    });
  }
  if (all_files) out.expected_vp = crypto::AsString(crypto::ComputeVerificationPattern(xored));
  return out;
}

}  // namespace hsmsim::hsmctl

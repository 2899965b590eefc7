#include "host/admin_public_key.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/openssl_ptr.h"

namespace hsmsim::host {
namespace {

using X509Ptr = std::unique_ptr<X509, crypto::OpenSslDeleter<X509_free>>;

constexpr std::string_view kPublicKeyBegin = "-----BEGIN PUBLIC KEY-----";
constexpr std::string_view kCertificateBegin = "-----BEGIN CERTIFICATE-----";
constexpr std::string_view kNamePrefix = "# name: ";

absl::Status BadFile(std::string_view source, std::string_view problem) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadPublicKeyFile,
               StrCat(source, ": ", problem));
}

// NameLine returns NAME of the first "# name: NAME" line before the PEM
// block at `block`, or "".
std::string NameLine(std::string_view text, size_t block) {
  size_t pos = 0;
  while (pos < block) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos || end > block) end = block;
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with(kNamePrefix)) return std::string(line.substr(kNamePrefix.size()));
    pos = end + 1;
  }
  return "";
}

// CommonName returns the certificate subject's CN, or "".
std::string CommonName(X509& cert) {
  X509_NAME* subject = X509_get_subject_name(&cert);
  const int index =
      subject == nullptr ? -1 : X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  const int length = data == nullptr ? -1 : ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return "";
  std::string name(reinterpret_cast<const char*>(utf8), static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return name;
}

}  // namespace

bool IsAdminPublicKeyText(std::string_view text) {
  return (text.find(kPublicKeyBegin) != std::string_view::npos ||
          text.find(kCertificateBegin) != std::string_view::npos) &&
         text.find("PRIVATE KEY-----") == std::string_view::npos;
}

absl::StatusOr<AdminKey> ParseAdminPublicKey(std::string_view text, std::string_view name,
                                             std::string_view source) {
  const size_t key_at = text.find(kPublicKeyBegin);
  const size_t cert_at = text.find(kCertificateBegin);
  const bool is_cert = key_at == std::string_view::npos;
  const size_t block = is_cert ? cert_at : key_at;
  if (block == std::string_view::npos) {
    return BadFile(source,
                   StrCat("holds neither '", kPublicKeyBegin, "' nor '", kCertificateBegin, "'"));
  }
  std::string_view pem = text.substr(block);
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return crypto::OpenSslError(reason::kCryptoFailed, "BIO_new_mem_buf");
  crypto::EvpPkeyPtr key;
  std::string found_name = NameLine(text, block);
  if (is_cert) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) {
      crypto::ClearOpenSslErrors();
      return BadFile(source, "the certificate block is damaged");
    }
    key.reset(X509_get_pubkey(cert.get()));
    if (found_name.empty()) found_name = CommonName(*cert);
  } else {
    key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  }
  if (key == nullptr) {
    crypto::ClearOpenSslErrors();
    return BadFile(source, "the public key block is damaged");
  }
  if (EVP_PKEY_is_a(key.get(), "EC") != 1) {
    return BadFile(source, "the key is not an EC key (administrators' keys are EC P-521)");
  }
  if (!name.empty()) found_name = std::string(name);
  if (found_name.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadAdminName,
                 StrCat(source, " names no administrator (no '# name: ' line",
                        is_cert ? ", no subject CN" : "", "): give --name NAME"));
  }
  auto admin = MakeAdminKey(std::move(found_name), std::move(key));
  if (!admin.ok() && ReasonOf(admin.status()) != reason::kBadAdminName) {
    crypto::ClearOpenSslErrors();
    return BadFile(source, StrCat("the key is not a P-521 key: ", admin.status().message()));
  }
  if (!admin.ok()) return WithContext(admin.status(), std::string(source));
  return admin;
}

absl::StatusOr<std::string> SerializeAdminPublicKey(const AdminKey& admin) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), admin.key.get()) != 1) {
    return crypto::OpenSslError(reason::kCryptoFailed, "PEM_write_bio_PUBKEY");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  if (size <= 0 || data == nullptr) {
    return crypto::OpenSslError(reason::kCryptoFailed, "BIO_get_mem_data");
  }
  return StrCat(kNamePrefix, admin.name, "\n", std::string_view(data, static_cast<size_t>(size)));
}

}  // namespace hsmsim::host

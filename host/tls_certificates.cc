#include "host/tls_certificates.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"

namespace hsmsim::host {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free>;
using X509Ptr = std::unique_ptr<X509, Free>;
using BioPtr = std::unique_ptr<BIO, Free>;

absl::Status CryptoFailed(std::string_view step) {
  const unsigned long err = ERR_get_error();
  char text[256] = "no OpenSSL error queued";
  if (err != 0) ERR_error_string_n(err, text, sizeof(text));
  ERR_clear_error();
  return Error(absl::StatusCode::kInternal, reason::kCryptoFailed,
               StrCat("making TLS certificates: ", step, ": ", text));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<TlsIdentity> ToPem(X509* cert, EVP_PKEY* key) {
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_secmem()));
  if (!cert_bio || !key_bio) return CryptoFailed("BIO_new");
  if (PEM_write_bio_X509(cert_bio.get(), cert) != 1) return CryptoFailed("PEM_write_bio_X509");
  if (PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return CryptoFailed("PEM_write_bio_PrivateKey");
  }
  TlsIdentity out;
  out.cert_pem = BioText(cert_bio.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(key_bio.get(), &data);
  out.key_pem = MakeSecret(std::string_view(data, static_cast<size_t>(n)));
  return out;
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

// NewCertificate makes a v3 certificate for `key` named CN=`common_name`
// with a random serial and `validity`; the issuer is set by the caller.
absl::StatusOr<X509Ptr> NewCertificate(EVP_PKEY* key, std::string_view common_name,
                                       const CertificateValidity& validity) {
  X509Ptr cert(X509_new());
  if (!cert) return CryptoFailed("X509_new");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return CryptoFailed("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  const bool serial_ok =
      bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  if (!serial_ok) return CryptoFailed("serial number");
  const std::string cn(common_name);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), validity.not_before_seconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), validity.not_after_seconds) == nullptr ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return CryptoFailed("filling the certificate");
  }
  return cert;
}

absl::StatusOr<PkeyPtr> NewKey() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return CryptoFailed("EVP_PKEY_Q_keygen P-256");
  return key;
}

}  // namespace

absl::StatusOr<TlsIdentity> MakeFleetCa(std::string_view common_name,
                                        CertificateValidity validity) {
  HSMSIM_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  HSMSIM_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, validity));
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1 ||
      !AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash")) {
    return CryptoFailed("CA extensions");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return CryptoFailed("X509_sign");
  return ToPem(cert.get(), key.get());
}

namespace {

// IssueWithSan is IssueCertificate with the subjectAltName `san` in
// OpenSSL's configuration syntax ("URI:...", "IP:..."; empty: none) and
// the extendedKeyUsage `ext_key_usage` ("serverAuth,clientAuth",
// "serverAuth"). BAD_TLS_FILES when `ca`'s certificate or key does not
// parse, or the key is not the certificate's.
absl::StatusOr<TlsIdentity> IssueWithSan(const TlsIdentity& ca, std::string_view common_name,
                                         const std::string& san, const char* ext_key_usage,
                                         const CertificateValidity& validity) {
  BioPtr cert_bio(BIO_new_mem_buf(ca.cert_pem.data(), static_cast<int>(ca.cert_pem.size())));
  BioPtr key_bio(BIO_new_mem_buf(ca.key_pem.data(), static_cast<int>(ca.key_pem.size())));
  X509Ptr ca_cert(cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)
                           : nullptr);
  PkeyPtr ca_key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr)
                         : nullptr);
  if (!ca_cert || !ca_key) {
    ERR_clear_error();
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 "the fleet CA's certificate or key is not PEM");
  }
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 "the fleet CA's key is not the key of its certificate");
  }
  HSMSIM_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  HSMSIM_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, validity));
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get())) != 1 ||
      !AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage, ext_key_usage) ||
      !AddExtension(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always")) {
    return CryptoFailed("certificate extensions");
  }
  if (!san.empty() && !AddExtension(cert.get(), ca_cert.get(), NID_subject_alt_name, san.c_str())) {
    return CryptoFailed("subjectAltName");
  }
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) return CryptoFailed("X509_sign");
  return ToPem(cert.get(), key.get());
}

}  // namespace

absl::StatusOr<TlsIdentity> IssueCertificate(const TlsIdentity& ca, std::string_view common_name,
                                             std::string_view unit_id,
                                             CertificateValidity validity) {
  return IssueWithSan(ca, common_name,
                      unit_id.empty() ? "" : StrCat("URI:", kUnitIdUriPrefix, ToHex(unit_id)),
                      "serverAuth,clientAuth", validity);
}

absl::StatusOr<TlsIdentity> IssueIpCertificate(const TlsIdentity& ca, std::string_view common_name,
                                               std::string_view ip, CertificateValidity validity) {
  if (ip.empty() || ip.find_first_not_of("0123456789abcdefABCDEF.:") != std::string_view::npos) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 StrCat("'", ip, "' is not an IP address for a certificate"));
  }
  // A server only: not a client credential a unit would accept.
  return IssueWithSan(ca, common_name, StrCat("IP:", ip), "serverAuth", validity);
}

std::string UnitIdOfCertificate(X509* cert) {
  if (cert == nullptr) return "";
  std::unique_ptr<GENERAL_NAMES, Free> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return "";
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = gn->d.uniformResourceIdentifier;
    std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                          static_cast<size_t>(ASN1_STRING_length(uri)));
    if (!text.starts_with(kUnitIdUriPrefix)) continue;
    absl::StatusOr<std::string> id = FromHex(text.substr(kUnitIdUriPrefix.size()));
    if (id.ok() && !id->empty()) return *std::move(id);
  }
  return "";
}

std::string UnitIdOfCertificatePem(std::string_view cert_pem) {
  BioPtr bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  return UnitIdOfCertificate(cert.get());
}

absl::Status WriteTlsIdentity(const TlsIdentity& identity, const std::string& cert_path,
                              const std::string& key_path) {
  HSMSIM_RETURN_IF_ERROR(
      WriteNewFile(key_path,
                   std::string_view(reinterpret_cast<const char*>(identity.key_pem.data()),
                                    identity.key_pem.size()),
                   0600));
  return WriteNewFile(cert_path, identity.cert_pem, 0644);
}

}  // namespace hsmsim::host

// TLS certificates of a fleet (issue 14, docs/tls.md): a fleet CA, one
// certificate per unit carrying its unit id, and hsmctl's client
// certificate. Keys are ECDSA P-256; certificates X.509 v3, PEM.
//
// A unit's certificate names its unit id in a subjectAltName URI,
// "urn:hsmsim:unit:<unit id in lower-case hex>" (kUnitIdUriPrefix). hsmctl
// compares that id with the one fleet.json pins before it sends anything.
//
// Thread-safety: every function is thread-safe (no shared state).
#ifndef HSMSIM_HOST_TLS_CERTIFICATES_H_
#define HSMSIM_HOST_TLS_CERTIFICATES_H_

#include <openssl/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"

namespace hsmsim::host {

inline constexpr std::string_view kUnitIdUriPrefix = "urn:hsmsim:unit:";

// A certificate and its private key, both PEM. The key is wiped when
// released (SecretBytes) and never logged.
struct TlsIdentity {
  std::string cert_pem;
  SecretBytes key_pem;
};

// Validity of a new certificate, in seconds from now (negative: in the
// past, so tests can make an expired certificate).
struct CertificateValidity {
  int64_t not_before_seconds = -3600;
  int64_t not_after_seconds = int64_t{10} * 365 * 24 * 3600;
};

// MakeFleetCa makes a self-signed CA certificate (basicConstraints CA:TRUE,
// keyCertSign) named CN=`common_name` and its new key. INTERNAL
// (CRYPTO_FAILED) naming the OpenSSL step on failure.
absl::StatusOr<TlsIdentity> MakeFleetCa(std::string_view common_name,
                                        CertificateValidity validity = {});

// IssueCertificate makes a new key and a certificate CN=`common_name`
// signed by `ca` (a MakeFleetCa result), usable for TLS server and client
// authentication. `unit_id` (bytes): when not empty, the certificate
// carries the subjectAltName URI kUnitIdUriPrefix + hex(unit_id).
// INVALID_ARGUMENT (BAD_TLS_FILES) when `ca` does not parse or its key is
// not its certificate's; CRYPTO_FAILED.
absl::StatusOr<TlsIdentity> IssueCertificate(const TlsIdentity& ca, std::string_view common_name,
                                             std::string_view unit_id,
                                             CertificateValidity validity = {});

// IssueIpCertificate is IssueCertificate for a TLS server known by its IP
// address (hsmctl console): the certificate carries the subjectAltName
// IP:`ip` (an IPv4 or IPv6 literal, without brackets), no unit id, and
// the extended key usage serverAuth only (a unit refuses it as a client
// certificate).
// INVALID_ARGUMENT (BAD_TLS_FILES) for an `ip` that is not an address (or
// a CA that does not parse); CRYPTO_FAILED.
absl::StatusOr<TlsIdentity> IssueIpCertificate(const TlsIdentity& ca, std::string_view common_name,
                                               std::string_view ip,
                                               CertificateValidity validity = {});

// UnitIdOfCertificate returns the unit id (bytes) a certificate names in
// its subjectAltName URI, or an empty string when it names none (or names
// one that is not hex).
std::string UnitIdOfCertificate(X509* cert);

// UnitIdOfCertificatePem is UnitIdOfCertificate for PEM text; empty when
// the text does not parse.
std::string UnitIdOfCertificatePem(std::string_view cert_pem);

// WriteTlsIdentity writes `identity` to `cert_path` (0644) and `key_path`
// (0600, whatever the umask); neither may exist (FILE_EXISTS), and a
// failure is FILE_WRITE_FAILED naming the path.
absl::Status WriteTlsIdentity(const TlsIdentity& identity, const std::string& cert_path,
                              const std::string& key_path);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_TLS_CERTIFICATES_H_

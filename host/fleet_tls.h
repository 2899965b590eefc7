// The TLS files of a local fleet (hsmctl fleet up --tls; docs/tls.md):
//
//   DIR/tls/ca.pem, ca.key           the fleet CA (ECDSA P-256)
//   DIR/tls/hsmctl.pem, hsmctl.key   hsmctl's client certificate
//   DIR/unitK/tls-cert.pem, tls-key.pem
//                                    unit K's certificate, naming its unit
//                                    id (host/tls_certificates.h)
//
// Directories 0700, keys 0600, certificates 0644. fleet.json names the CA
// and the client files relative to DIR.
#ifndef HSMSIM_HOST_FLEET_TLS_H_
#define HSMSIM_HOST_FLEET_TLS_H_

#include <string>

#include "absl/status/statusor.h"
#include "host/fleet_manifest.h"
#include "host/tls_certificates.h"

namespace hsmsim::host {

// A unit's TLS flags: absolute paths of its certificate, key and the CA.
struct UnitTlsFiles {
  std::string cert;
  std::string key;
  std::string ca;

  bool empty() const { return cert.empty(); }
};

// EnsureFleetTls makes DIR/tls with a new fleet CA and a client certificate
// for hsmctl, or keeps the ones there (a fleet brought up again), and
// returns their names relative to DIR. Errors: CRYPTO_FAILED,
// FILE_WRITE_FAILED, BAD_TLS_FILES for a DIR/tls that holds only some of
// them.
absl::StatusOr<FleetTlsFiles> EnsureFleetTls(const std::string& fleet_dir);

// EnsureUnitCertificate returns the TLS flags of the unit whose state is in
// `state_dir`: its certificate there when it names `unit_id` (bytes), else
// a new one issued by the fleet CA of `fleet_dir` for `unit_id` (an old one
// is replaced). Errors as EnsureFleetTls.
absl::StatusOr<UnitTlsFiles> EnsureUnitCertificate(const std::string& fleet_dir,
                                                   const FleetTlsFiles& files,
                                                   const std::string& unit_name,
                                                   const std::string& state_dir,
                                                   const std::string& unit_id);

// IssueRemoteUnitCertificate issues, with the fleet CA of `fleet_dir` (made
// by EnsureFleetTls when the fleet has none), a certificate named
// `unit_name` for the unit whose id is `unit_id` (bytes; hsmsim-unit
// --print-unit-id on that unit's host tells it), and writes the three files
// a unit on another host needs, as deploy/ expects them
// (docs/deployment.md): OUT/unit.crt (0644), OUT/unit.key (0600) and
// OUT/fleet-ca.crt (0644, the CA clients must chain to). OUT is created
// 0700 when missing. FILE_EXISTS when one of the three exists (nothing is
// written then); otherwise errors as EnsureFleetTls.
absl::Status IssueRemoteUnitCertificate(const std::string& fleet_dir, const FleetTlsFiles& files,
                                        const std::string& unit_name, const std::string& unit_id,
                                        const std::string& out_dir);

// IssueConsoleCertificate issues, with the fleet CA of `fleet_dir`
// (`files.ca` and DIR/tls/ca.key), a server certificate for hsmctl console
// listening on `ip` (an IP literal, without brackets; subjectAltName
// IP:`ip`). Nothing is written: the certificate and its key live as long
// as the console. NOT_FOUND (FILE_UNREADABLE) naming a CA file that cannot
// be read, BAD_TLS_FILES for one that is not PEM, CRYPTO_FAILED.
absl::StatusOr<TlsIdentity> IssueConsoleCertificate(const std::string& fleet_dir,
                                                    const FleetTlsFiles& files,
                                                    const std::string& ip);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_FLEET_TLS_H_

// The host's side of mutual TLS to a unit (docs/tls.md): hsmctl presents
// the fleet's client certificate, verifies the unit's certificate against
// the fleet CA (TLS 1.3), and checks that the unit id the certificate names
// (host/tls_certificates.h) is the one fleet.json pins, before any frame is
// sent. Host names are not checked: a unit is known by its unit id.
//
// Only unit_tls.cc includes the Asio SSL headers; UnitClient (unit_client.cc)
// uses a TlsClientStream (host/tls_client_stream.h) made from a
// TlsClientConfig.
//
// Thread-safety: a TlsClientConfig is immutable and may be shared by every
// client; a TlsClientStream is used on its io_context's thread only.
#ifndef HSMSIM_HOST_UNIT_TLS_H_
#define HSMSIM_HOST_UNIT_TLS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "host/fleet_manifest.h"

namespace hsmsim::host {

// TlsClientConfig: the fleet CA and hsmctl's client certificate and key.
class TlsClientConfig;

// LoadTlsClientConfig reads the PEM files `ca_file` (the CA units'
// certificates must chain to), `cert_file` and `key_file` (hsmctl's client
// certificate and its key). INVALID_ARGUMENT (BAD_TLS_FILES) naming the file
// and OpenSSL's words when one is missing, unreadable or not PEM, or the key
// does not match the certificate.
absl::StatusOr<std::shared_ptr<const TlsClientConfig>> LoadTlsClientConfig(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file);

// LoadFleetTls loads the TLS files `files` of the fleet in `fleet_dir`
// (paths relative to it) with LoadTlsClientConfig. Null when `files` is
// empty (a fleet without TLS).
absl::StatusOr<std::shared_ptr<const TlsClientConfig>> LoadFleetTls(const std::string& fleet_dir,
                                                                    const FleetTlsFiles& files);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_UNIT_TLS_H_

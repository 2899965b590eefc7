// FleetManifest: the fleet.json file that says which units make up a fleet.
//
//   {
//     "format": "hsmsim-fleet", "format_version": 1,
//     "instance": "prod-1",
//     "keystore": "/path/keystore.db",
//     "units": [
//       {"name": "unit1", "endpoint": "127.0.0.1:40123", "state_dir": "/path/unit1",
//        "unit_id": "9f0c...", "pid": 4242, "selected": true, "stopped": false,
//        "tls": true}
//     ],
//     "tls": {"ca": "tls/ca.pem", "client_cert": "tls/hsmctl.pem",
//             "client_key": "tls/hsmctl.key"}
//   }
//
// `tls` true: the unit speaks mutual TLS (docs/tls.md) and hsmctl connects
// with the fleet's "tls" files (paths relative to the fleet directory):
// the CA the units' certificates chain to, and hsmctl's client certificate
// and key. Absent or false: plaintext. A unit added with `fleet add` has
// no pid and no state_dir.
//
// `pid` is 0 (or absent) for a unit not launched by this host; `selected`
// false means `hsmctl unit rm` dropped it from the commands' selection (it
// keeps running and `fleet down` still stops it). `unit_id` (hex) pins the
// unit: learned at `fleet up` (or the first `fleet restart` of a manifest
// without it), changed only by `fleet restart --new-unit` and `unit
// replace`; hsmctl refuses a unit that answers with another id
// (host/pinned_unit_channel.h). Absent or empty: not pinned.
#ifndef HSMSIM_HOST_FLEET_MANIFEST_H_
#define HSMSIM_HOST_FLEET_MANIFEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hsmsim::host {

inline constexpr char kFleetManifestFile[] = "fleet.json";
inline constexpr int kFleetManifestVersion = 1;

struct FleetUnit {
  std::string name;
  std::string endpoint;  // HOST:PORT
  std::string state_dir;
  int pid = 0;
  bool selected = true;
  bool stopped = false;
  std::string unit_id{};  // bytes of the pinned unit id; empty: not pinned
  bool tls = false;       // the unit speaks mutual TLS
};

// The fleet's TLS files, relative to the fleet directory; all empty for a
// fleet without TLS.
struct FleetTlsFiles {
  std::string ca;
  std::string client_cert;
  std::string client_key;

  bool empty() const { return ca.empty() && client_cert.empty() && client_key.empty(); }
};

struct FleetManifest {
  std::string instance;
  std::string keystore;
  std::vector<FleetUnit> units;
  FleetTlsFiles tls;
  // True once SelectOnly replaced the selection for one command (hsmctl
  // --unit); never written to fleet.json, and a manifest with it set must
  // not be saved.
  bool selection_overridden = false;

  // SelectedUnits returns the units commands apply to.
  std::vector<const FleetUnit*> SelectedUnits() const;
  // LeftOut returns the names of the units not selected (fleet.json's
  // selection or --unit's), in fleet.json's order.
  std::vector<std::string> LeftOut() const;
  // FindUnit returns the unit called `name`, or nullptr.
  FleetUnit* FindUnit(std::string_view name);
  // SelectOnly selects exactly the units called `names` (hsmctl --unit) and
  // no other, in memory, and sets selection_overridden. Returns NOT_FOUND
  // (NO_SUCH_UNIT) naming every name fleet.json does not have, and changes
  // nothing then.
  absl::Status SelectOnly(const std::vector<std::string>& names);
  // SelectAdvice returns how to bring the units `left_out` into the
  // selection: `hsmctl unit add NAME...`, or, when the selection came from
  // --unit, to name them there too.
  std::string SelectAdvice(const std::vector<std::string>& left_out) const;
};

// ParseFleetManifest parses fleet.json text; `source` names the file in
// errors. Returns INVALID_ARGUMENT (BAD_MANIFEST) naming the first problem
// (not JSON, a missing or mistyped field, a duplicate unit name), and
// FAILED_PRECONDITION (UNSUPPORTED_MANIFEST_VERSION) for another version.
// A unit with "tls": true in a manifest without all three "tls" files is
// BAD_MANIFEST.
absl::StatusOr<FleetManifest> ParseFleetManifest(std::string_view text, std::string_view source);

// SerializeFleetManifest returns the JSON text (pretty-printed).
std::string SerializeFleetManifest(const FleetManifest& manifest);

// FleetManifestPath returns DIR/fleet.json.
std::string FleetManifestPath(const std::string& fleet_dir);

// LoadFleetManifest reads DIR/fleet.json. NOT_FOUND (NO_FLEET) when there is
// none, with a hint to run `hsmctl fleet up`.
absl::StatusOr<FleetManifest> LoadFleetManifest(const std::string& fleet_dir);

// SaveFleetManifest replaces DIR/fleet.json atomically (temp file, fsync,
// rename, fsync of the directory).
absl::Status SaveFleetManifest(const std::string& fleet_dir, const FleetManifest& manifest);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_FLEET_MANIFEST_H_

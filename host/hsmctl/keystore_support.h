// hsmctl plumbing for the commands that use key storage: the keystore's
// location, observing the selected units, progress display, base64.
#ifndef HSMSIM_HOST_HSMCTL_KEYSTORE_SUPPORT_H_
#define HSMSIM_HOST_HSMCTL_KEYSTORE_SUPPORT_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "host/batch_fanout.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/line_folder.h"
#include "host/keystore.h"
#include "host/rotation.h"

namespace CLI {
class App;
}  // namespace CLI

namespace hsmsim::hsmctl {

// KeystorePath returns the manifest's keystore, else FLEET_DIR/keystore.db.
std::string KeystorePath(const Invocation& inv, const host::FleetManifest& manifest);

// CheckKeystoreLocation accepts a SQLite file path or a postgresql:// URL
// that names no password. INVALID_ARGUMENT: NO_KEYSTORE when empty,
// KEYSTORE_URL_HAS_PASSWORD when the URL names a password (fleet.json would
// keep it; it belongs in a password file).
absl::Status CheckKeystoreLocation(const std::string& location);

// StoredKeystoreLocation is `location` as fleet.json keeps it: a URL as
// given, a file path made absolute (so every process finds the same file,
// whatever its working directory).
std::string StoredKeystoreLocation(const std::string& location);

// ShownKeystoreLocation is `location` as messages show it: a URL without
// any password.
std::string ShownKeystoreLocation(const std::string& location);

// AddSetKeystoreCommand registers hsmctl keys set-keystore LOCATION on `keys`.
void AddSetKeystoreCommand(CLI::App& keys, Invocation& inv);

// OpenKeystore opens the fleet's keystore (creating it when `create`).
absl::StatusOr<std::unique_ptr<host::Keystore>> OpenKeystore(const Invocation& inv,
                                                             const host::FleetManifest& manifest,
                                                             bool create);

// KeyCounts returns the keystore's counts per WKID, or none when the fleet
// has no keystore yet.
absl::StatusOr<std::vector<host::WkidPairCount>> KeyCounts(const Invocation& inv,
                                                           const host::FleetManifest& manifest);
// QuarantinedCounts returns the keystore's quarantined keys per WKID, or
// none when the fleet has no keystore yet.
absl::StatusOr<std::vector<host::WkidPairCount>> QuarantinedCounts(
    const Invocation& inv, const host::FleetManifest& manifest);

// ObserveAll reads GetInfo of every connection.
std::vector<host::UnitObservation> ObserveAll(std::vector<UnitConnection>& conns);

// Channels returns the connections' channels, for a host::BatchFanout.
std::vector<host::UnitChannel*> Channels(std::vector<UnitConnection>& conns);

// UnitPairs returns the connections' units and channels, for the host
// library's engines (RotationEngine, CreateKeys).
std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> UnitPairs(
    std::vector<UnitConnection>& conns);

// RefuseDuringRotation returns FAILED_PRECONDITION (ROTATION_IN_PROGRESS)
// when a rotation is journaled and not DONE (keys upgrade waits for it;
// keys create does not: host/key_creation.h).
absl::Status RefuseDuringRotation(host::Keystore& keystore);

// ProgressPrinter draws a progress bar on a terminal (stderr), or a plain
// line every 2 seconds otherwise. Silent with --json. With PublishTo it
// also publishes the progress for other processes (hsmctl console).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool quiet);
  void Update(const host::RotationProgress& p);
  void Finish();

  // PublishTo makes Update also write the progress to `path` (a rotation's:
  // ProgressFilePath), at most 4 times a second and at each change of
  // phase, atomically (a temporary file renamed over it): {"pid", "host"
  // (gethostname, as the rotation lock's holder records it), "phase", "keys_done", "keys_total",
  // "seconds", "keys_per_second", "eta_seconds", "keys_per_unit": {UNIT: keys re-encrypted in this
  // run}, "updated_at" (Unix seconds)}. A write that fails is skipped: progress only, never a
  // reason to stop. Temporary files of earlier publishers that died before their rename
  // (PATH.tmp.PID of a PID no longer running, e.g. an hsmctl killed mid-rotation) are removed here.
  void PublishTo(std::string path);

 private:
  void Publish(const host::RotationProgress& p, double rate, double eta);

  bool quiet_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_line_;
  std::string publish_path_;
  std::string published_phase_;
  std::chrono::steady_clock::time_point last_published_;
};

// ProgressFilePath is where a rotation of the fleet's keystore publishes its
// progress: KEYSTORE.progress.json beside the keystore.
std::string ProgressFilePath(const Invocation& inv, const host::FleetManifest& manifest);

// ReadPublishedProgress returns the fleet's published rotation progress
// (ProgressPrinter::PublishTo), or null when there is none, it is not a
// regular file of at most 64 KiB, or it does not parse with an integer
// "pid". Only "pid" (integer), "host" (a string of at most 255 bytes, or
// null), "keys_per_second" and "eta_seconds" (numbers
// or null) and "keys_per_unit" (at most 64 names of up to 64 bytes, integer
// counts) are returned: the file is not trusted. It outlives its rotation:
// check its pid and host against the rotation lock's holder
// (console::PublisherHoldsRotationLock).
json ReadPublishedProgress(const Invocation& inv);

std::string Base64Encode(std::string_view bytes);
absl::StatusOr<std::string> Base64Decode(std::string_view text);

// Command registration.
void AddKeysCommands(CLI::App& app, Invocation& inv);
void AddRotationCommands(CLI::App& app, Invocation& inv);
void AddBenchCommands(CLI::App& app, Invocation& inv);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_KEYSTORE_SUPPORT_H_

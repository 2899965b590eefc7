// Launching and stopping a local fleet of hsmsim-unit processes.
//
// Units run in the background in their own session (posix_spawn with
// POSIX_SPAWN_SETSID) so they outlive hsmctl; each writes its log to
// DIR/unitK/unit.log (0600) and keeps its state in DIR/unitK. DIR and DIR/unitK
// are created 0700. A unit gets an allow-listed environment, never hsmctl's
// whole one: HSMSIM_PASSWORD and any other secret stay with hsmctl.
#ifndef HSMSIM_HOST_FLEET_LAUNCHER_H_
#define HSMSIM_HOST_FLEET_LAUNCHER_H_

#include <chrono>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "host/fleet_manifest.h"

namespace hsmsim::host {

inline constexpr char kUnitBinaryEnv[] = "HSMSIM_UNIT_BINARY";

// LocateUnitBinary returns the hsmsim-unit to run: `flag` when not empty,
// else env HSMSIM_UNIT_BINARY, else SELF_DIR/../emulator/hsmsim-unit (the
// build tree layout), else hsmsim-unit on PATH. NOT_FOUND (NO_UNIT_BINARY)
// listing where it looked.
absl::StatusOr<std::string> LocateUnitBinary(const std::string& flag);

struct FleetLaunchOptions {
  std::string fleet_dir;
  int units = 3;
  std::string instance = "default";
  std::string unit_binary;
  std::chrono::milliseconds ready_timeout{20'000};
  // Start the units with --allow-fault-injection (tests, drills).
  bool allow_fault_injection = false;
  // LaunchFleet only: mutual TLS (hsmctl fleet up --tls, host/fleet_tls.h):
  // a fleet CA, a certificate per unit naming its unit id (read with
  // hsmsim-unit --print-unit-id before it is started) and hsmctl's client
  // certificate. RestartUnit keeps what fleet.json says of the unit.
  bool tls = false;
  // RestartUnit only: start the unit with --new-unit (a blank unit where a
  // unit's state is gone) and pin whatever unit id it answers with.
  bool new_unit = false;
  // Called with a line of progress ("unit2: listening on ...").
  std::function<void(const std::string&)> progress;
};

// LaunchFleet starts `units` units, waits until each answers GetInfo,
// assigns each to the instance (unsigned, as imprint mode allows; skipped
// when already assigned to it), then writes DIR/fleet.json, each unit's id
// pinned, and returns it. On any failure it stops the units it started and
// returns the error. A unit that exits while starting is UNAVAILABLE
// (UNIT_EXITED) at once, with how it ended and its own words from its log
// ("hsmsim-unit: REASON: message"). FAILED_PRECONDITION (FLEET_RUNNING) when
// DIR/fleet.json lists a unit that is still running.
absl::StatusOr<FleetManifest> LaunchFleet(const FleetLaunchOptions& options);

// RestartUnit starts unit `name` of the fleet in `options.fleet_dir` again
// on its state directory and its port (after a crash or a kill), waits until
// it answers, checks that it is the same unit (the unit id fleet.json pins;
// a manifest without one pins the id it answers with), and records the new
// pid in fleet.json. Errors: FAILED_PRECONDITION (UNIT_RUNNING) when it is
// still running; NOT_FOUND (NO_SUCH_UNIT) for a name not in the manifest;
// UNIT_EXITED at once, with the unit's own words, when it exits while
// starting (a damaged or missing state file); FAILED_PRECONDITION
// (UNIT_ID_MISMATCH) when it answers with another unit id: the process is
// stopped, never assigned to the instance, and fleet.json is unchanged.
// With options.new_unit the unit may start blank and its new id is pinned.
// Uses options.unit_binary, ready_timeout, allow_fault_injection, new_unit.
absl::StatusOr<FleetUnit> RestartUnit(const FleetLaunchOptions& options, const std::string& name);

// ProcessAlive is true when `pid` exists and is not a zombie.
bool ProcessAlive(int pid);

// IsUnitProcess is true when `pid` is alive and its command line names
// `state_dir` (guards against signalling a recycled pid).
bool IsUnitProcess(int pid, const std::string& state_dir);

// StopProcess sends SIGTERM, waits up to `grace`, then SIGKILL and waits
// again. Returns true when the process was gone in time without SIGKILL.
bool StopProcess(int pid, std::chrono::milliseconds grace);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_FLEET_LAUNCHER_H_

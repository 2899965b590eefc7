// hsmctl fleet up | down | status, and hsmctl unit rm.
#include <iostream>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/fleet_launcher.h"
#include "host/hsmctl/context.h"
#include "host/unit_client.h"

namespace hsmsim::hsmctl {
namespace {

struct FleetUpOptions {
  int units = 3;
  std::string instance = "default";
  std::string dir;
  std::string unit_binary;
  int ready_timeout_ms = 20'000;
  bool allow_fault_injection = false;
};

int RunFleetUp(Invocation& inv, const FleetUpOptions& o) {
  host::FleetLaunchOptions options;
  options.fleet_dir = o.dir.empty() ? FleetDir(inv) : o.dir;
  options.units = o.units;
  options.instance = o.instance;
  options.unit_binary = o.unit_binary;
  options.ready_timeout = std::chrono::milliseconds(o.ready_timeout_ms);
  options.allow_fault_injection = o.allow_fault_injection;
  if (!inv.json) options.progress = [](const std::string& line) { std::cout << line << "\n"; };
  auto manifest = host::LaunchFleet(options);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  if (inv.json) {
    std::cout << json::parse(host::SerializeFleetManifest(*manifest)).dump(2) << "\n";
  } else {
    std::cout << "fleet of " << manifest->units.size() << " units up, instance '"
              << manifest->instance << "', manifest " << host::FleetManifestPath(options.fleet_dir)
              << "\n";
  }
  return kExitOk;
}

int RunFleetRestart(Invocation& inv, const FleetUpOptions& o, const std::string& name) {
  host::FleetLaunchOptions options;
  options.fleet_dir = FleetDir(inv);
  options.unit_binary = o.unit_binary;
  options.ready_timeout = std::chrono::milliseconds(o.ready_timeout_ms);
  options.allow_fault_injection = o.allow_fault_injection;
  auto unit = host::RestartUnit(options, name);
  if (!unit.ok()) return Fail(inv, unit.status());
  if (inv.json) {
    std::cout << json{{"command", "fleet restart"},
                      {"ok", true},
                      {"unit", unit->name},
                      {"pid", unit->pid},
                      {"endpoint", unit->endpoint}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << unit->name << ": restarted, pid " << unit->pid << ", listening on "
              << unit->endpoint << "\n";
  }
  return kExitOk;
}

int RunFleetDown(Invocation& inv, int grace_ms) {
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  std::vector<UnitOutcome> outcomes;
  for (host::FleetUnit& unit : manifest->units) {
    UnitOutcome o{unit.name, unit.endpoint, absl::OkStatus(), "", json::object()};
    if (unit.pid <= 0) {
      o.text = "not launched by hsmctl (no pid); left alone";
    } else if (unit.stopped || !host::IsUnitProcess(unit.pid, unit.state_dir)) {
      o.text = StrCat("pid ", unit.pid, " already stopped");
      unit.stopped = true;
    } else {
      bool clean = host::StopProcess(unit.pid, std::chrono::milliseconds(grace_ms));
      o.text = StrCat("pid ", unit.pid, clean ? " stopped" : " killed (SIGKILL after timeout)");
      unit.stopped = true;
    }
    o.details["pid"] = unit.pid;
    o.details["stopped"] = unit.stopped;
    outcomes.push_back(std::move(o));
  }
  absl::Status saved = host::SaveFleetManifest(dir, *manifest);
  if (!saved.ok()) return Fail(inv, saved);
  return ReportOutcomes(inv, "fleet down", outcomes);
}

int RunFleetStatus(Invocation& inv) {
  auto manifest = host::LoadFleetManifest(FleetDir(inv));
  if (!manifest.ok()) return Fail(inv, manifest.status());
  host::UnitClientOptions options;
  options.timeout = std::chrono::milliseconds(inv.timeout_ms);
  options.idempotent_attempts = 1;
  std::vector<UnitOutcome> outcomes;
  for (const host::FleetUnit& unit : manifest->units) {
    UnitOutcome o{unit.name, unit.endpoint, absl::OkStatus(), "", json::object()};
    const bool alive = unit.pid > 0 && host::IsUnitProcess(unit.pid, unit.state_dir);
    auto client = host::UnitClient::Create(unit.name, unit.endpoint, options);
    absl::Status reach = client.ok() ? (*client)->GetInfo().status() : client.status();
    o.status = reach;
    o.details["pid"] = unit.pid;
    o.details["pid_alive"] = alive;
    o.details["selected"] = unit.selected;
    o.details["reachable"] = reach.ok();
    o.text = StrCat("reachable at ", unit.endpoint, ", pid ", unit.pid,
                    alive ? " alive" : " not running", unit.selected ? "" : ", not selected");
    outcomes.push_back(std::move(o));
  }
  return ReportOutcomes(inv, "fleet status", outcomes, json{{"instance", manifest->instance}});
}

int RunUnitRm(Invocation& inv, const std::string& name) {
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  host::FleetUnit* unit = manifest->FindUnit(name);
  if (unit == nullptr) {
    return Fail(inv, Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                           StrCat("the fleet ", dir, " has no unit '", name, "'")));
  }
  unit->selected = false;
  absl::Status saved = host::SaveFleetManifest(dir, *manifest);
  if (!saved.ok()) return Fail(inv, saved);
  if (inv.json) {
    std::cout << json{{"command", "unit rm"}, {"ok", true}, {"unit", name}}.dump(2) << "\n";
  } else {
    std::cout << name << ": removed from the selection (still running; `fleet down` stops it)\n";
  }
  return kExitOk;
}

}  // namespace

void AddFleetCommands(CLI::App& app, Invocation& inv) {
  CLI::App* fleet = app.add_subcommand("fleet", "Launch, stop and inspect a local fleet of units");
  fleet->require_subcommand(1);

  auto up_opts = std::make_shared<FleetUpOptions>();
  CLI::App* up = fleet->add_subcommand("up", "Launch N hsmsim-unit processes and write fleet.json");
  up->add_option("--units", up_opts->units, "Number of units")
      ->required()
      ->check(CLI::Range(1, 64));
  up->add_option("--instance", up_opts->instance, "Service instance to assign the units to")
      ->capture_default_str();
  up->add_option("--dir", up_opts->dir, "Fleet directory (default: the --fleet directory)");
  up->add_option("--unit-binary", up_opts->unit_binary,
                 "hsmsim-unit to run (default: $HSMSIM_UNIT_BINARY, else ../emulator/hsmsim-unit "
                 "next to hsmctl, else PATH)");
  up->add_option("--ready-timeout-ms", up_opts->ready_timeout_ms,
                 "How long to wait for every unit to answer")
      ->capture_default_str();
  up->add_flag("--allow-fault-injection", up_opts->allow_fault_injection,
               "Start the units with --allow-fault-injection (tests and drills; see hsmctl fault)");
  AddFleetOption(up, inv);
  AddJsonOption(up, inv);
  up->callback(
      [&inv, up_opts] { inv.action = [&inv, up_opts] { return RunFleetUp(inv, *up_opts); }; });

  auto restart_opts = std::make_shared<FleetUpOptions>();
  auto restart_name = std::make_shared<std::string>();
  CLI::App* restart = fleet->add_subcommand(
      "restart",
      "Start a unit that died (crash, kill -9, power loss) again on its state directory and port");
  restart->add_option("NAME", *restart_name, "Unit name, e.g. unit2")->required();
  restart->add_option("--unit-binary", restart_opts->unit_binary,
                      "hsmsim-unit to run (default as for fleet up)");
  restart
      ->add_option("--ready-timeout-ms", restart_opts->ready_timeout_ms,
                   "How long to wait for the unit to answer")
      ->capture_default_str();
  restart->add_flag("--allow-fault-injection", restart_opts->allow_fault_injection,
                    "Start the unit with --allow-fault-injection");
  AddFleetOption(restart, inv);
  AddJsonOption(restart, inv);
  restart->callback([&inv, restart_opts, restart_name] {
    inv.action = [&inv, restart_opts, restart_name] {
      return RunFleetRestart(inv, *restart_opts, *restart_name);
    };
  });

  auto grace_ms = std::make_shared<int>(10'000);
  CLI::App* down =
      fleet->add_subcommand("down", "Stop every launched unit (SIGTERM, then SIGKILL)");
  down->add_option("--grace-ms", *grace_ms, "Time to wait after SIGTERM before SIGKILL")
      ->capture_default_str();
  AddFleetOption(down, inv);
  AddJsonOption(down, inv);
  down->callback(
      [&inv, grace_ms] { inv.action = [&inv, grace_ms] { return RunFleetDown(inv, *grace_ms); }; });

  CLI::App* status = fleet->add_subcommand("status", "Per unit: reachable, pid alive");
  AddUnitOptions(status, inv);
  AddJsonOption(status, inv);
  status->callback([&inv] { inv.action = [&inv] { return RunFleetStatus(inv); }; });

  CLI::App* unit = app.add_subcommand("unit", "Change the fleet's selection of units");
  unit->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  CLI::App* rm = unit->add_subcommand(
      "rm", "Drop a unit from the selection in fleet.json (the unit is not stopped)");
  rm->add_option("NAME", *name, "Unit name, e.g. unit2")->required();
  AddFleetOption(rm, inv);
  AddJsonOption(rm, inv);
  rm->callback([&inv, name] { inv.action = [&inv, name] { return RunUnitRm(inv, *name); }; });
}

}  // namespace hsmsim::hsmctl

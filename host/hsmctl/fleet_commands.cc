// hsmctl fleet up | restart | start | down | status, and hsmctl unit rm | add |
// replace.
#include <iostream>

#include "absl/strings/str_join.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/fleet_launcher.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/json_reports.h"
#include "host/hsmctl/keystore_support.h"
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
  bool new_unit = false;  // fleet restart --new-unit
  std::string keystore;   // fleet up --keystore; empty: DIR/keystore.db
  bool tls = false;       // fleet up --tls
};

// NewUnitAdvice is what to do with a unit that has just been replaced by a
// new one, given its state.
std::string NewUnitAdvice(const std::string& name, bool imprint) {
  if (!imprint) return "";
  return StrCat(name,
                " is a new unit in imprint mode (no administrators, no master keys): set it up "
                "like the other units (hsmctl admin add, then hsmctl thresholds set) before it "
                "takes part; hsmctl recover names what it still needs");
}

int RunFleetUp(Invocation& inv, const FleetUpOptions& o) {
  host::FleetLaunchOptions options;
  options.fleet_dir = o.dir.empty() ? FleetDir(inv) : o.dir;
  options.units = o.units;
  options.instance = o.instance;
  options.unit_binary = o.unit_binary;
  options.ready_timeout = std::chrono::milliseconds(o.ready_timeout_ms);
  options.allow_fault_injection = o.allow_fault_injection;
  options.tls = o.tls;
  if (!inv.json) options.progress = [](const std::string& line) { std::cout << line << "\n"; };
  if (!o.keystore.empty()) {
    // Checked and created before any unit starts: a wrong URL or login
    // leaves nothing behind.
    if (absl::Status ok = CheckKeystoreLocation(o.keystore); !ok.ok()) return Fail(inv, ok);
    auto store = host::OpenKeystore(o.keystore, true);
    if (!store.ok()) return Fail(inv, store.status());
  }
  auto manifest = host::LaunchFleet(options);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  if (!o.keystore.empty()) {
    manifest->keystore = StoredKeystoreLocation(o.keystore);
    if (absl::Status saved = host::SaveFleetManifest(options.fleet_dir, *manifest); !saved.ok()) {
      return Fail(inv, saved);
    }
  }
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
  options.new_unit = o.new_unit;
  std::string was;
  host::FleetManifest before;
  if (auto manifest = host::LoadFleetManifest(options.fleet_dir); manifest.ok()) {
    if (const host::FleetUnit* u = manifest->FindUnit(name)) was = u->unit_id;
    before = *std::move(manifest);
  }
  auto unit = host::RestartUnit(options, name);
  if (!unit.ok()) return Fail(inv, unit.status());
  const bool replaced = !was.empty() && was != unit->unit_id;
  std::string advice;
  if (replaced) {
    auto client_options = FleetClientOptions(inv, before);
    auto client =
        client_options.ok() ? ConnectPinned(*unit, *client_options) : client_options.status();
    auto info = client.ok() ? (*client)->GetInfo() : client.status();
    advice = NewUnitAdvice(name, info.ok() && info->mode() == v1::MODE_IMPRINT);
  }
  if (inv.json) {
    json doc{{"command", "fleet restart"}, {"ok", true},
             {"unit", unit->name},         {"pid", unit->pid},
             {"endpoint", unit->endpoint}, {"unit_id", ToHex(unit->unit_id)},
             {"replaced", replaced}};
    if (replaced) doc["previous_unit_id"] = ToHex(was);
    if (!advice.empty()) doc["advice"] = advice;
    std::cout << doc.dump(2) << "\n";
  } else {
    std::cout << unit->name << ": " << (replaced ? "replaced by a new unit" : "restarted")
              << ", pid " << unit->pid << ", listening on " << unit->endpoint << ", unit id "
              << ToHex(unit->unit_id)
              << (replaced ? StrCat(" (was ", ToHex(was), ")") : std::string()) << "\n";
    if (!advice.empty()) std::cout << advice << "\n";
  }
  return kExitOk;
}

// RunUnitReplace pins the unit id that the unit now answering at NAME's
// address has: the operator's way to accept a replaced unit that runs.
int RunUnitReplace(Invocation& inv, const std::string& name) {
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  host::FleetUnit* unit = manifest->FindUnit(name);
  if (unit == nullptr) {
    return Fail(inv, Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                           StrCat("the fleet ", dir, " has no unit '", name, "'")));
  }
  auto options = FleetClientOptions(inv, *manifest);
  if (!options.ok()) return Fail(inv, options.status());
  if (!unit->tls) options->tls = nullptr;  // and over TLS any certificate's id: this learns it
  auto client = host::UnitClient::Create(unit->name, unit->endpoint, *options);
  if (!client.ok()) return Fail(inv, client.status());
  auto info = (*client)->GetInfo();  // deliberately not pinned: this learns the id
  if (!info.ok()) return Fail(inv, info.status());
  const std::string was = unit->unit_id;
  const bool changed = was != info->unit_id();
  if (changed) {
    unit->unit_id = info->unit_id();
    if (absl::Status saved = host::SaveFleetManifest(dir, *manifest); !saved.ok()) {
      return Fail(inv, saved);
    }
  }
  const std::string advice = NewUnitAdvice(name, info->mode() == v1::MODE_IMPRINT);
  if (inv.json) {
    json doc{{"command", "unit replace"},
             {"ok", true},
             {"unit", name},
             {"unit_id", ToHex(info->unit_id())},
             {"previous_unit_id", ToHex(was)},
             {"changed", changed}};
    if (!advice.empty()) doc["advice"] = advice;
    std::cout << doc.dump(2) << "\n";
  } else {
    if (changed) {
      std::cout << name << ": now pinned to unit id " << ToHex(info->unit_id()) << " (was "
                << (was.empty() ? std::string("not pinned") : ToHex(was)) << ")\n";
    } else {
      std::cout << name << ": already pinned to unit id " << ToHex(info->unit_id()) << "\n";
    }
    if (!advice.empty()) std::cout << advice << "\n";
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

// StatusOfUnit reads one unit for fleet status: reachable, or stopped on
// purpose (fleet down marked it and its process is gone: not an error), or
// unreachable.
UnitOutcome StatusOfUnit(const host::FleetUnit& unit, const host::UnitClientOptions& options) {
  UnitOutcome o{unit.name, unit.endpoint, absl::OkStatus(), "", json::object()};
  const bool alive = unit.pid > 0 && host::IsUnitProcess(unit.pid, unit.state_dir);
  auto client = ConnectPinned(unit, options);
  absl::Status reach = client.ok() ? (*client)->GetInfo().status() : client.status();
  const bool stopped = !reach.ok() && unit.stopped && !alive && host::IsUnreachable(reach);
  o.status = stopped ? absl::OkStatus() : reach;
  o.details["pid"] = unit.pid;
  o.details["pid_alive"] = alive;
  o.details["selected"] = unit.selected;
  o.details["tls"] = unit.tls;
  o.details["reachable"] = reach.ok();
  o.details["stopped"] = stopped;
  o.details["state"] = reach.ok() ? "running" : stopped ? "stopped" : "unreachable";
  const std::string selected = unit.selected ? "" : ", not selected";
  if (stopped) {
    o.text = StrCat("stopped (fleet down), pid ", unit.pid,
                    " not running; hsmctl fleet start starts it again", selected);
  } else if (unit.pid <= 0) {
    o.text = StrCat("reachable at ", unit.endpoint, " (added with fleet add, not launched here)",
                    unit.tls ? ", mutual TLS" : "", selected);
  } else {
    o.text = StrCat("reachable at ", unit.endpoint, ", pid ", unit.pid,
                    alive ? " alive" : " not running", unit.tls ? ", mutual TLS" : "", selected);
  }
  return o;
}

// FleetStatusOutcomes reads every unit of `manifest` for fleet status.
std::vector<UnitOutcome> FleetStatusOutcomes(const Invocation& inv,
                                             const host::FleetManifest& manifest) {
  auto options = FleetClientOptions(inv, manifest);
  if (options.ok()) options->idempotent_attempts = 1;
  std::vector<UnitOutcome> outcomes;
  for (const host::FleetUnit& unit : manifest.units) {
    if (!options.ok()) {
      outcomes.push_back(
          UnitOutcome{unit.name, unit.endpoint, options.status(), "", json::object()});
      continue;
    }
    outcomes.push_back(StatusOfUnit(unit, *options));
  }
  return outcomes;
}

int RunFleetStatus(Invocation& inv) {
  auto manifest = host::LoadFleetManifest(FleetDir(inv));
  if (!manifest.ok()) return Fail(inv, manifest.status());
  return ReportOutcomes(inv, "fleet status", FleetStatusOutcomes(inv, *manifest),
                        json{{"instance", manifest->instance}});
}

// RunFleetStart starts every unit of a stopped fleet again on its state
// directory and port, unit by unit as fleet restart does (each must answer
// with its pinned unit id); a running unit is left alone and reported.
int RunFleetStart(Invocation& inv, const FleetUpOptions& o) {
  host::FleetLaunchOptions options;
  options.fleet_dir = FleetDir(inv);
  options.unit_binary = o.unit_binary;
  options.ready_timeout = std::chrono::milliseconds(o.ready_timeout_ms);
  options.allow_fault_injection = o.allow_fault_injection;
  auto manifest = host::LoadFleetManifest(options.fleet_dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  std::vector<UnitOutcome> outcomes;
  for (const host::FleetUnit& unit : manifest->units) {
    UnitOutcome out{unit.name, unit.endpoint, absl::OkStatus(), "", json::object()};
    if (unit.pid <= 0) {
      out.text = "not launched by hsmctl (no pid); left alone";
      out.details["started"] = false;
    } else if (host::IsUnitProcess(unit.pid, unit.state_dir)) {
      out.text = StrCat("already running, pid ", unit.pid);
      out.details["started"] = false;
      out.details["already"] = true;
      out.details["pid"] = unit.pid;
    } else {
      auto started = host::RestartUnit(options, unit.name);
      out.status = started.status();
      if (started.ok()) {
        out.endpoint = started->endpoint;
        out.text = StrCat("started, pid ", started->pid, ", listening on ", started->endpoint,
                          ", unit id ", ToHex(started->unit_id));
        out.details["started"] = true;
        out.details["pid"] = started->pid;
        out.details["unit_id"] = ToHex(started->unit_id);
      }
    }
    outcomes.push_back(std::move(out));
  }
  return ReportOutcomes(inv, "fleet start", outcomes, json{{"instance", manifest->instance}});
}

// SelectUnits sets `selected` of every unit `names` names in fleet.json
// (unit add: true, unit rm: false), all or nothing: a name fleet.json does
// not have changes nothing (NO_SUCH_UNIT, naming it). Returns each unit's
// outcome (a unit already in that state reports "already"), or the error.
absl::StatusOr<std::vector<UnitOutcome>> SelectUnits(const Invocation& inv,
                                                     const std::vector<std::string>& names,
                                                     bool selected) {
  const std::string dir = FleetDir(inv);
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, host::LoadFleetManifest(dir));
  std::vector<std::string> unknown;
  for (const std::string& name : names) {
    if (manifest.FindUnit(name) == nullptr) unknown.push_back(name);
  }
  if (!unknown.empty()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                 StrCat("the fleet ", dir, " has no unit ", absl::StrJoin(unknown, ", "),
                        "; nothing was changed"));
  }
  std::vector<UnitOutcome> outcomes;
  bool changed = false;
  for (const std::string& name : names) {
    host::FleetUnit* unit = manifest.FindUnit(name);
    const bool already = unit->selected == selected;
    changed = changed || !already;
    unit->selected = selected;
    UnitOutcome o{name, unit->endpoint, absl::OkStatus(), "", json::object()};
    o.details["already"] = already;
    o.details["selected"] = selected;
    o.text = already    ? (selected ? "already selected" : "already not selected")
             : selected ? "added to the selection"
                        : "removed from the selection (still running; `fleet down` stops it)";
    outcomes.push_back(std::move(o));
  }
  if (changed) HSMSIM_RETURN_IF_ERROR(host::SaveFleetManifest(dir, manifest));
  return outcomes;
}

// RunUnitSelect is unit add (`selected`) and unit rm: SelectUnits, reported.
int RunUnitSelect(Invocation& inv, const std::vector<std::string>& names, bool selected) {
  auto outcomes = SelectUnits(inv, names, selected);
  if (!outcomes.ok()) return Fail(inv, outcomes.status());
  return ReportOutcomes(inv, selected ? "unit add" : "unit rm", *outcomes);
}

// AddUnitSubcommands registers hsmctl unit rm | add | replace.
void AddUnitSubcommands(CLI::App& app, Invocation& inv) {
  CLI::App* unit =
      app.add_subcommand("unit", "Change the fleet's selection of units and the units it pins");
  unit->require_subcommand(1);
  auto names = std::make_shared<std::vector<std::string>>();
  CLI::App* rm = unit->add_subcommand(
      "rm",
      "Drop units from the selection in fleet.json (the units are not stopped); all or nothing");
  rm->add_option("NAME", *names, "Unit names, e.g. unit2 unit3")->required();
  AddFleetOption(rm, inv);
  AddJsonOption(rm, inv);
  rm->callback(
      [&inv, names] { inv.action = [&inv, names] { return RunUnitSelect(inv, *names, false); }; });

  CLI::App* add = unit->add_subcommand(
      "add",
      "Put units of fleet.json back in the selection (after hsmctl unit rm); all or nothing");
  add->add_option("NAME", *names, "Unit names, e.g. unit2 unit3")->required();
  AddFleetOption(add, inv);
  AddJsonOption(add, inv);
  add->callback(
      [&inv, names] { inv.action = [&inv, names] { return RunUnitSelect(inv, *names, true); }; });

  auto name = std::make_shared<std::string>();

  CLI::App* replace = unit->add_subcommand(
      "replace",
      "Accept the unit now answering at NAME's address as NAME: pin its unit id in fleet.json "
      "(after a unit was replaced on purpose; hsmctl refuses a unit whose id is not the pinned "
      "one)");
  replace->add_option("NAME", *name, "Unit name, e.g. unit2")->required();
  AddNamedUnitOptions(replace, inv);
  AddJsonOption(replace, inv);
  replace->callback(
      [&inv, name] { inv.action = [&inv, name] { return RunUnitReplace(inv, *name); }; });
}

// AddFleetStart registers `hsmctl fleet start`.
void AddFleetStart(CLI::App* fleet, Invocation& inv) {
  auto start_opts = std::make_shared<FleetUpOptions>();
  CLI::App* start = fleet->add_subcommand(
      "start",
      "Start a stopped fleet again (after fleet down): every unit that is not running, on its "
      "state directory and port, checked against its pinned unit id");
  start->add_option("--unit-binary", start_opts->unit_binary,
                    "hsmsim-unit to run (default as for fleet up)");
  start
      ->add_option("--ready-timeout-ms", start_opts->ready_timeout_ms,
                   "How long to wait for each unit to answer")
      ->capture_default_str()
      ->check(CLI::Range(1, 3'600'000));
  start->add_flag("--allow-fault-injection", start_opts->allow_fault_injection,
                  "Start the units with --allow-fault-injection");
  AddFleetOption(start, inv);
  AddJsonOption(start, inv);
  start->callback([&inv, start_opts] {
    inv.action = [&inv, start_opts] { return RunFleetStart(inv, *start_opts); };
  });
}

}  // namespace

absl::StatusOr<json> UnitSelectReport(const Invocation& inv, const std::vector<std::string>& names,
                                      bool selected) {
  HSMSIM_ASSIGN_OR_RETURN(std::vector<UnitOutcome> outcomes, SelectUnits(inv, names, selected));
  return OutcomesJson(selected ? "unit add" : "unit rm", outcomes);
}

absl::StatusOr<json> FleetStatusReport(const Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, host::LoadFleetManifest(FleetDir(inv)));
  return OutcomesJson("fleet status", FleetStatusOutcomes(inv, manifest),
                      json{{"instance", manifest.instance}});
}

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
      ->capture_default_str()
      ->check(CLI::Range(1, 3'600'000));
  up->add_flag("--allow-fault-injection", up_opts->allow_fault_injection,
               "Start the units with --allow-fault-injection (tests and drills; see hsmctl fault)");
  up->add_option("--keystore", up_opts->keystore,
                 "Where the fleet keeps its keys: a SQLite file, or a PostgreSQL database "
                 "(postgresql://USER@HOST:PORT/DB; password from PGPASSFILE, ~/.pgpass or "
                 "PGPASSWORD, never in the URL), created if new; else DIR/keystore.db");
  up->add_flag("--tls", up_opts->tls,
               "Mutual TLS: make a fleet CA, a certificate per unit naming its unit id and one "
               "for hsmctl (in the fleet directory; docs/tls.md), and start the units with them");
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
      ->capture_default_str()
      ->check(CLI::Range(1, 3'600'000));
  restart->add_flag("--allow-fault-injection", restart_opts->allow_fault_injection,
                    "Start the unit with --allow-fault-injection");
  restart->add_flag("--new-unit", restart_opts->new_unit,
                    "Replace the unit on purpose: where its state is gone, start a new, blank "
                    "unit (hsmsim-unit --new-unit) and pin its new unit id in fleet.json. "
                    "Without it a unit that comes back with another unit id is stopped and "
                    "refused (UNIT_ID_MISMATCH)");
  AddNamedUnitOptions(restart, inv);
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
      ->capture_default_str()
      ->check(CLI::Range(0, 3'600'000));
  AddFleetOption(down, inv);
  AddJsonOption(down, inv);
  down->callback(
      [&inv, grace_ms] { inv.action = [&inv, grace_ms] { return RunFleetDown(inv, *grace_ms); }; });

  AddFleetStart(fleet, inv);
  AddRemoteUnitCommands(fleet, inv);

  CLI::App* status = fleet->add_subcommand("status", "Per unit: running, stopped or unreachable");
  AddNamedUnitOptions(status, inv);
  AddJsonOption(status, inv);
  status->callback([&inv] { inv.action = [&inv] { return RunFleetStatus(inv); }; });

  AddUnitSubcommands(app, inv);
}

}  // namespace hsmsim::hsmctl

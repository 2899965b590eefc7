// hsmctl fleet add | rm: units that hsmctl did not launch (another host, or
// started by hand), reached at HOST:PORT, plaintext or mutual TLS
// (docs/tls.md). fleet add pins the unit id the unit answers with at first
// contact; from then on every command refuses a unit that answers (or
// whose certificate names) another id.
#include <filesystem>
#include <iostream>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/fleet_tls.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/json_reports.h"
#include "host/hsmctl/keystore_support.h"
#include "host/signed_command.h"
#include "host/unit_client.h"

namespace hsmsim::hsmctl {
namespace {

// RefuseWhileRotating is ROTATION_IN_PROGRESS while the fleet's keystore
// journals a rotation that is not DONE: the rotation works on the fleet's
// units as they were when it started.
absl::Status RefuseWhileRotating(const Invocation& inv, const host::FleetManifest& manifest,
                                 std::string_view command) {
  auto keystore = OpenKeystore(inv, manifest, /*create=*/false);
  if (!keystore.ok() && ReasonOf(keystore.status()) == reason::kNoKeystore) {
    return absl::OkStatus();  // no keystore yet: no rotation either
  }
  HSMSIM_RETURN_IF_ERROR(keystore.status());
  return WithContext(RefuseDuringRotation(**keystore),
                     StrCat(command, " changes the fleet's units; refused, nothing changed"));
}

// FirstContact reads the unit id of the unit at `unit.endpoint` (over TLS
// with any certificate of the fleet CA when unit.tls), then connects again
// pinned to it, so that a TLS unit's certificate must name that same id. A
// unit assigned to no instance yet is assigned to the fleet's. Returns its
// GetInfo then.
absl::StatusOr<v1::GetInfoResponse> FirstContact(const Invocation& inv,
                                                 const host::FleetManifest& manifest,
                                                 host::FleetUnit& unit) {
  HSMSIM_ASSIGN_OR_RETURN(host::UnitClientOptions options, FleetClientOptions(inv, manifest));
  if (unit.tls && options.tls == nullptr) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 StrCat("the fleet ", FleetDir(inv),
                        " has no TLS files (fleet.json \"tls\"): --tls needs a fleet made with "
                        "hsmctl fleet up --tls"));
  }
  if (!unit.tls) options.tls = nullptr;
  HSMSIM_ASSIGN_OR_RETURN(auto client, host::UnitClient::Create(unit.name, unit.endpoint, options));
  HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, client->GetInfo());
  unit.unit_id = info.unit_id();
  HSMSIM_ASSIGN_OR_RETURN(auto pinned, ConnectPinned(unit, options));
  HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse again, pinned->GetInfo());
  if (!again.instance().empty() || manifest.instance.empty()) return again;
  // A unit not yet assigned to a service instance joins the fleet's, as
  // fleet up assigns the units it starts (a unit in imprint mode takes the
  // command unsigned).
  v1::Command op;
  op.mutable_assign_instance()->set_instance(manifest.instance);
  if (auto assigned = host::IssueCommand(*pinned, again, op, {}); !assigned.ok()) {
    return WithContext(
        assigned.status(),
        StrCat("assigning ", unit.name, " to the fleet's instance '", manifest.instance, "'"));
  }
  return pinned->GetInfo();
}

int RunFleetAdd(Invocation& inv, const std::string& name, const std::string& endpoint, bool tls) {
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  if (manifest->FindUnit(name) != nullptr) {
    return Fail(inv, Error(absl::StatusCode::kInvalidArgument, reason::kUnitNameTaken,
                           StrCat("the fleet ", dir, " already has a unit named '", name,
                                  "'; choose another name, or hsmctl fleet rm it first")));
  }
  if (absl::Status s = RefuseWhileRotating(inv, *manifest, "fleet add"); !s.ok()) {
    return Fail(inv, s);
  }
  host::FleetUnit unit;
  unit.name = name;
  unit.endpoint = endpoint;
  unit.tls = tls;
  auto info = FirstContact(inv, *manifest, unit);
  if (!info.ok()) return Fail(inv, WithContext(info.status(), StrCat("fleet add ", name)));
  for (const host::FleetUnit& other : manifest->units) {
    if (other.unit_id == unit.unit_id) {
      return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kUnitIdMismatch,
                             StrCat("the unit at ", endpoint, " is unit id ", ToHex(unit.unit_id),
                                    ", which the fleet already has as ", other.name,
                                    "; nothing was changed")));
    }
  }
  manifest->units.push_back(unit);
  if (absl::Status saved = host::SaveFleetManifest(dir, *manifest); !saved.ok()) {
    return Fail(inv, saved);
  }
  UnitOutcome o{name, endpoint, absl::OkStatus(), "", json::object()};
  o.details["unit_id"] = ToHex(unit.unit_id);
  o.details["tls"] = tls;
  o.details["instance"] = info->instance();
  o.text = StrCat("added, unit id ", ToHex(unit.unit_id), " pinned, ",
                  tls ? "mutual TLS" : "plaintext", ", instance '", info->instance(), "'");
  return ReportOutcomes(inv, "fleet add", {o});
}

int RunFleetRm(Invocation& inv, const std::string& name) {
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  const host::FleetUnit* unit = manifest->FindUnit(name);
  if (unit == nullptr) {
    return Fail(inv, Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit,
                           StrCat("the fleet ", dir, " has no unit named '", name, "'")));
  }
  if (unit->pid > 0 || !unit->state_dir.empty()) {
    return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kUnitLaunchedHere,
                           StrCat(name, " was launched by hsmctl fleet up (state directory ",
                                  unit->state_dir,
                                  "); fleet rm removes only units added with fleet add. hsmctl "
                                  "unit rm drops it from the selection, fleet down stops it")));
  }
  if (absl::Status s = RefuseWhileRotating(inv, *manifest, "fleet rm"); !s.ok()) {
    return Fail(inv, s);
  }
  UnitOutcome o{name, unit->endpoint, absl::OkStatus(), "", json::object()};
  o.details["unit_id"] = ToHex(unit->unit_id);
  o.text = StrCat("removed from fleet.json (unit id ", ToHex(unit->unit_id),
                  "); the unit itself is untouched");
  std::erase_if(manifest->units, [&](const host::FleetUnit& u) { return u.name == name; });
  if (absl::Status saved = host::SaveFleetManifest(dir, *manifest); !saved.ok()) {
    return Fail(inv, saved);
  }
  return ReportOutcomes(inv, "fleet rm", {o});
}

// RunIssueCert issues a certificate for a unit on another host (fleet
// issue-cert), with the fleet CA (made, and named in fleet.json, when the
// fleet has none yet).
int RunIssueCert(Invocation& inv, const std::string& name, const std::string& unit_id_hex,
                 const std::string& out_dir) {
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  auto unit_id = FromHex(unit_id_hex);
  if (!unit_id.ok() || unit_id->size() != 16) {  // firmware/limits.h kUnitIdSize
    return Fail(inv, Error(absl::StatusCode::kInvalidArgument, reason::kBadHex,
                           "--unit-id must be the unit id, 32 hex digits, as hsmsim-unit "
                           "--print-unit-id prints it"));
  }
  auto files = host::EnsureFleetTls(dir);
  if (!files.ok()) return Fail(inv, files.status());
  if (manifest->tls.empty()) {
    manifest->tls = *files;
    if (absl::Status saved = host::SaveFleetManifest(dir, *manifest); !saved.ok()) {
      return Fail(inv, saved);
    }
  }
  if (absl::Status issued = host::IssueRemoteUnitCertificate(dir, *files, name, *unit_id, out_dir);
      !issued.ok()) {
    return Fail(inv, issued);
  }
  namespace fs = std::filesystem;
  const std::string cert = (fs::path(out_dir) / "unit.crt").string();
  if (inv.json) {
    std::cout << json{{"command", "fleet issue-cert"},
                      {"ok", true},
                      {"unit", name},
                      {"unit_id", ToHex(*unit_id)},
                      {"cert", cert},
                      {"key", (fs::path(out_dir) / "unit.key").string()},
                      {"ca", (fs::path(out_dir) / "fleet-ca.crt").string()}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "issued " << cert << " for unit " << name << " (unit id " << ToHex(*unit_id)
              << "), with unit.key and fleet-ca.crt beside it; copy them to "
              << "the unit's host (docs/deployment.md), then: hsmctl fleet add " << name
              << " HOST:PORT --tls\n";
  }
  return kExitOk;
}

}  // namespace

void AddRemoteUnitCommands(CLI::App* fleet, Invocation& inv) {
  auto name = std::make_shared<std::string>();
  auto endpoint = std::make_shared<std::string>();
  auto tls = std::make_shared<bool>(false);
  CLI::App* add = fleet->add_subcommand(
      "add",
      "Add a unit hsmctl did not launch (another host, or started by hand) at HOST:PORT, and pin "
      "the unit id it answers with");
  add->add_option("NAME", *name, "Unit name, e.g. remote1")->required();
  add->add_option("ENDPOINT", *endpoint, "HOST:PORT the unit listens on")->required();
  add->add_flag("--tls", *tls,
                "The unit speaks mutual TLS: connect with the fleet's TLS files (a fleet made "
                "with fleet up --tls); its certificate must name the unit id it answers with");
  AddNamedUnitOptions(add, inv);
  AddJsonOption(add, inv);
  add->callback([&inv, name, endpoint, tls] {
    inv.action = [&inv, name, endpoint, tls] { return RunFleetAdd(inv, *name, *endpoint, *tls); };
  });

  CLI::App* rm = fleet->add_subcommand(
      "rm", "Remove a unit added with fleet add from fleet.json (the unit is not touched)");
  rm->add_option("NAME", *name, "Unit name, e.g. remote1")->required();
  AddFleetOption(rm, inv);
  AddJsonOption(rm, inv);
  rm->callback([&inv, name] { inv.action = [&inv, name] { return RunFleetRm(inv, *name); }; });

  auto cert_name = std::make_shared<std::string>();
  auto unit_id = std::make_shared<std::string>();
  auto out_dir = std::make_shared<std::string>();
  CLI::App* issue = fleet->add_subcommand(
      "issue-cert",
      "Issue, with the fleet CA, a TLS certificate for a unit on another host: OUT/unit.crt, "
      "OUT/unit.key and OUT/fleet-ca.crt, for hsmsim-unit --tls-cert/--tls-key/--tls-ca");
  issue->add_option("NAME", *cert_name, "Unit name, e.g. remote1 (the certificate's CN)")
      ->required();
  issue
      ->add_option("--unit-id", *unit_id,
                   "The unit's id in hex: hsmsim-unit --print-unit-id --state-dir DIR on its host")
      ->required();
  issue->add_option("--out", *out_dir, "Directory for the three files (created 0700 if missing)")
      ->required();
  AddFleetOption(issue, inv);
  AddJsonOption(issue, inv);
  issue->callback([&inv, cert_name, unit_id, out_dir] {
    inv.action = [&inv, cert_name, unit_id, out_dir] {
      return RunIssueCert(inv, *cert_name, *unit_id, *out_dir);
    };
  });
}

}  // namespace hsmsim::hsmctl

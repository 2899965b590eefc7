// hsmctl status and hsmctl compare: the "Master keys" view of the units.
#include <functional>
#include <iostream>
#include <map>
#include <sstream>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/json_reports.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::hsmctl {
namespace {

// kImprintWarning marks a unit in imprint mode: until `thresholds set`, it
// takes an unsigned AddAdmin (and RemoveAdmin, Zeroize) from any process
// that can open a connection to it.
constexpr char kImprintWarning[] =
    "imprint mode: open to anyone who can reach it (unsigned admin add); finish the ceremony "
    "with hsmctl thresholds set";

json RegisterJson(const v1::MasterKeyRegisterInfo& r, bool with_parts) {
  json j = {{"state", std::string(wire::RegisterStateName(r.state()))},
            {"verification_pattern", ToHex(r.verification_pattern())}};
  if (with_parts) {
    j["parts_loaded"] = r.parts_loaded();
    j["parts_total"] = r.parts_total();
  }
  return j;
}

json InfoJson(const v1::GetInfoResponse& info) {
  json admins = json::array();
  for (const v1::AdministratorInfo& a : info.administrators()) {
    admins.push_back({{"name", a.name()}, {"key_id", ToHex(a.key_id())}});
  }
  json j = {{"unit_id", ToHex(info.unit_id())},
            {"firmware_version", info.firmware_version()},
            {"instance", info.instance()},
            {"mode", std::string(wire::ModeName(info.mode()))},
            {"open_to_anyone", info.mode() == v1::MODE_IMPRINT},
            {"administrators", admins},
            {"signature_threshold", info.signature_threshold()},
            {"revocation_threshold", info.revocation_threshold()},
            {"transaction_counter", info.transaction_counter()},
            {"has_importer_key", !info.importer_public_key().empty()},
            {"registers",
             {{"new", RegisterJson(info.new_register(), true)},
              {"current", RegisterJson(info.current_register(), false)},
              {"old", RegisterJson(info.old_register(), false)}}}};
  if (info.mode() == v1::MODE_IMPRINT) j["warning"] = kImprintWarning;
  return j;
}

std::string RegisterLine(std::string_view label, const v1::MasterKeyRegisterInfo& r, bool full,
                         bool with_parts) {
  std::string line = StrCat("  ", label, wire::RegisterStateName(r.state()));
  if (with_parts && r.state() == v1::REGISTER_PARTIALLY_LOADED) {
    line += StrCat(" (", r.parts_loaded(), "/", r.parts_total(), " parts)");
  }
  if (!r.verification_pattern().empty())
    line += StrCat("  VP ", VpHex(r.verification_pattern(), full));
  return line;
}

std::string InfoText(const UnitConnection& c, const v1::GetInfoResponse& info, bool full) {
  std::ostringstream out;
  out << c.unit.name << "  id " << ToHex(info.unit_id()) << "  at " << c.unit.endpoint << "\n";
  out << "  instance: " << (info.instance().empty() ? "(none)" : info.instance())
      << "  mode: " << std::string(wire::ModeName(info.mode()))
      << "  firmware: " << info.firmware_version() << "\n";
  if (info.mode() == v1::MODE_IMPRINT) out << "  WARNING: " << kImprintWarning << "\n";
  out << "  administrators (" << info.administrators_size() << "):";
  for (const v1::AdministratorInfo& a : info.administrators()) {
    out << " " << a.name() << " [" << ToHex(a.key_id()).substr(0, full ? 64 : 16) << "]";
  }
  out << "\n  thresholds: signature " << info.signature_threshold() << ", revocation "
      << info.revocation_threshold() << "  transaction counter: " << info.transaction_counter()
      << "\n";
  out << RegisterLine("NEW:     ", info.new_register(), full, true) << "\n";
  out << RegisterLine("CURRENT: ", info.current_register(), full, false) << "\n";
  out << RegisterLine("OLD:     ", info.old_register(), full, false);
  return out.str();
}

// UnitAnswer sees one unit's GetInfo answer as StatusOutcomes reads it.
using UnitAnswer =
    std::function<void(const UnitConnection&, const absl::StatusOr<v1::GetInfoResponse>&)>;

// StatusOutcomes reads GetInfo of every connection, in order, and returns
// each unit's outcome for the status report (details: InfoJson); `each`
// (when set) sees every answer as it arrives.
std::vector<UnitOutcome> StatusOutcomes(std::vector<UnitConnection>& conns,
                                        const UnitAnswer& each) {
  std::vector<UnitOutcome> outcomes;
  for (UnitConnection& c : conns) {
    UnitOutcome o{c.unit.name, c.unit.endpoint, absl::OkStatus(), "", json::object()};
    auto info = c.client->GetInfo();
    o.status = info.status();
    if (info.ok()) o.details = InfoJson(*info);
    outcomes.push_back(std::move(o));
    if (each) each(c, info);
  }
  return outcomes;
}

int RunStatus(Invocation& inv, bool full) {
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  UnitAnswer print = [full](const UnitConnection& c,
                            const absl::StatusOr<v1::GetInfoResponse>& info) {
    if (info.ok()) {
      std::cout << InfoText(c, *info, full) << "\n";
    } else {
      std::cout << c.unit.name << ": FAILED: " << ReasonOf(info.status()) << ": "
                << UnitLineMessage(c.unit.name, std::string(info.status().message())) << "\n";
    }
  };
  std::vector<UnitOutcome> outcomes = StatusOutcomes(*conns, inv.json ? nullptr : print);
  if (inv.json) return ReportOutcomes(inv, "status", outcomes);
  for (const UnitOutcome& o : outcomes) {
    if (!o.status.ok()) return ExitCodeFor(o.status);
  }
  return kExitOk;
}

// Compared fields: name → value per unit, as text.
std::map<std::string, std::string> ComparableFields(const v1::GetInfoResponse& info) {
  std::map<std::string, std::string> f;
  f["instance"] = info.instance();
  f["mode"] = std::string(wire::ModeName(info.mode()));
  std::map<std::string, std::string> admins;  // key id → name, sorted
  for (const v1::AdministratorInfo& a : info.administrators()) admins[ToHex(a.key_id())] = a.name();
  std::string list;
  for (const auto& [id, name] : admins)
    list += StrCat(list.empty() ? "" : ",", name, "[", id.substr(0, 16), "]");
  f["administrators"] = list;
  f["signature_threshold"] = StrCat(info.signature_threshold());
  f["revocation_threshold"] = StrCat(info.revocation_threshold());
  auto reg = [](const v1::MasterKeyRegisterInfo& r) {
    return StrCat(wire::RegisterStateName(r.state()), " ", ToHex(r.verification_pattern()));
  };
  f["new_register"] = reg(info.new_register());
  f["current_register"] = reg(info.current_register());
  f["old_register"] = reg(info.old_register());
  return f;
}

int RunCompare(Invocation& inv) {
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> per_unit;
  absl::Status failure = absl::OkStatus();
  json errors = json::array();
  for (UnitConnection& c : *conns) {
    auto info = c.client->GetInfo();
    if (!info.ok()) {
      if (failure.ok() || host::IsUnreachable(info.status())) failure = info.status();
      errors.push_back({{"unit", c.unit.name}, {"error", StatusJson(info.status())}});
      if (!inv.json) {
        std::cout << c.unit.name << ": FAILED: " << ReasonOf(info.status()) << ": "
                  << UnitLineMessage(c.unit.name, std::string(info.status().message())) << "\n";
      }
      continue;
    }
    per_unit.emplace_back(c.unit.name, ComparableFields(*info));
  }
  json differ = json::object();
  std::vector<std::string> same;
  if (!per_unit.empty()) {
    for (const auto& [field, first] : per_unit.front().second) {
      bool all_same = true;
      json values = json::object();
      for (const auto& [unit, fields] : per_unit) {
        values[unit] = fields.at(field);
        if (fields.at(field) != first) all_same = false;
      }
      if (all_same) {
        same.push_back(field);
      } else {
        differ[field] = values;
      }
    }
  }
  const int code = !failure.ok() ? ExitCodeFor(failure) : differ.empty() ? kExitOk : kExitRefused;
  if (inv.json) {
    std::cout << json{{"command", "compare"},
                      {"ok", code == kExitOk},
                      {"same", same},
                      {"differ", differ},
                      {"errors", errors}}
                     .dump(2)
              << "\n";
    return code;
  }
  for (const std::string& field : same) std::cout << field << ": same on all units\n";
  for (const auto& [field, values] : differ.items()) {
    std::cout << field << ": DIFFERS\n";
    for (const auto& [unit, value] : values.items()) {
      std::cout << "  " << unit << ": " << value.get<std::string>() << "\n";
    }
  }
  return code;
}

}  // namespace

absl::StatusOr<json> UnitStatusReport(const Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(std::vector<UnitConnection> conns, ConnectSelected(inv));
  return OutcomesJson("status", StatusOutcomes(conns, nullptr));
}

void AddStatusCommands(CLI::App& app, Invocation& inv) {
  auto full = std::make_shared<bool>(false);
  CLI::App* status = app.add_subcommand(
      "status",
      "Per selected unit: id, mode, administrators, thresholds, registers and VPs, "
      "transaction counter");
  status->add_flag("--long", *full, "Show whole verification patterns and key ids");
  AddUnitOptions(status, inv);
  AddJsonOption(status, inv);
  status->callback([&inv, full] { inv.action = [&inv, full] { return RunStatus(inv, *full); }; });

  CLI::App* compare = app.add_subcommand(
      "compare", "Show which fields differ across the selected units (exit 1 if any differ)");
  AddUnitOptions(compare, inv);
  AddJsonOption(compare, inv);
  compare->callback([&inv] { inv.action = [&inv] { return RunCompare(inv); }; });
}

}  // namespace hsmsim::hsmctl

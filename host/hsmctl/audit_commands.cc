#include "host/hsmctl/audit_commands.h"

#include <iostream>
#include <memory>

#include "common/status.h"
#include "common/str_cat.h"
#include "host/audit_log.h"
#include "host/hsmctl/json_reports.h"

namespace hsmsim::hsmctl {
namespace {

int RunVerify(Invocation& inv) {
  auto report = AuditVerifyReport(inv);
  if (!report.ok()) return Fail(inv, report.status());
  if (inv.json) {
    std::cout << report->dump(2) << "\n";
  } else {
    std::cout << "audit log intact: " << (*report)["events"].get<int64_t>() << " event(s), head "
              << (*report)["head"].get<std::string>() << "\n";
  }
  return kExitOk;
}

// EventLine is one event of `audit show`: SEQ TIME UNIT COMMAND OUTCOME
// [signed by NAME, ...].
std::string EventLine(const json& event) {
  std::string line = StrCat("#", event.value("seq", int64_t{0}), " ", event.value("time", ""), " ",
                            event.value("unit", ""), " ", event.value("command", ""), " ");
  line += event.value("ok", false)
              ? std::string("ok")
              : StrCat("FAILED: ", event.value("reason", ""), ": ", event.value("message", ""));
  std::string names;
  for (const json& signer : event.value("signers", json::array())) {
    names += (names.empty() ? "" : ", ") + signer.value("name", "");
  }
  if (!names.empty()) line += " (signed by " + names + ")";
  return line;
}

int RunShow(Invocation& inv, int last) {
  auto report = AuditShowReport(inv, last);
  if (!report.ok()) return Fail(inv, report.status());
  if (inv.json) {
    std::cout << report->dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "audit log intact: " << (*report)["events"].get<int64_t>() << " event(s), head "
            << (*report)["head"].get<std::string>() << "; the last "
            << (*report)["last_events"].size() << ", newest first:\n";
  for (const json& event : (*report)["last_events"]) std::cout << EventLine(event) << "\n";
  return kExitOk;
}

}  // namespace

absl::StatusOr<json> AuditShowReport(const Invocation& inv, int last) {
  HSMSIM_ASSIGN_OR_RETURN(host::AuditSummary summary,
                          host::VerifyAuditLog(FleetDir(inv), static_cast<size_t>(last)));
  json events = json::array();
  for (auto it = summary.last_lines.rbegin(); it != summary.last_lines.rend(); ++it) {
    // Verified above: every line is a JSON object.
    events.push_back(json::parse(*it));
  }
  return json{{"command", "audit show"},
              {"ok", true},
              {"events", summary.events},
              {"head", summary.head_hash},
              {"last_events", std::move(events)}};
}

absl::StatusOr<json> AuditVerifyReport(const Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(host::AuditSummary summary, host::VerifyAuditLog(FleetDir(inv)));
  return json{{"command", "audit verify"},
              {"ok", true},
              {"events", summary.events},
              {"head", summary.head_hash}};
}

void InstallAuditLog(const std::string& fleet_dir) {
  static std::unique_ptr<host::AuditLog> log;
  if (log != nullptr) return;
  log = std::make_unique<host::AuditLog>(fleet_dir);
  host::SetCommandObserver(log.get());
}

void AddAuditCommands(CLI::App& app, Invocation& inv) {
  CLI::App* audit = app.add_subcommand("audit", "The ceremony audit log of the fleet");
  audit->require_subcommand(1);
  CLI::App* verify = audit->add_subcommand(
      "verify",
      "Check the hash chain of FLEET/audit.jsonl: a removed, reordered or edited line fails");
  AddFleetOption(verify, inv);
  AddJsonOption(verify, inv);
  verify->callback([&inv] { inv.action = [&inv] { return RunVerify(inv); }; });
  auto last = std::make_shared<int>(20);
  CLI::App* show = audit->add_subcommand(
      "show",
      "Check the audit log as verify does, then list its last events, newest first: time, unit, "
      "command, outcome, signers, registers before and after");
  show->add_option("--last", *last, "How many of the last events to list")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  AddFleetOption(show, inv);
  AddJsonOption(show, inv);
  show->callback([&inv, last] { inv.action = [&inv, last] { return RunShow(inv, *last); }; });
}

}  // namespace hsmsim::hsmctl

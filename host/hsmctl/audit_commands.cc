#include "host/hsmctl/audit_commands.h"

#include <iostream>
#include <memory>

#include "common/status.h"
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

}  // namespace

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
}

}  // namespace hsmsim::hsmctl

#include "host/hsmctl/audit_commands.h"

#include <iostream>
#include <memory>

#include "common/status.h"
#include "host/audit_log.h"

namespace hsmsim::hsmctl {
namespace {

int RunVerify(Invocation& inv) {
  auto summary = host::VerifyAuditLog(FleetDir(inv));
  if (!summary.ok()) return Fail(inv, summary.status());
  if (inv.json) {
    std::cout << json{{"command", "audit verify"},
                      {"ok", true},
                      {"events", summary->events},
                      {"head", summary->head_hash}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "audit log intact: " << summary->events << " event(s), head " << summary->head_hash
              << "\n";
  }
  return kExitOk;
}

}  // namespace

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

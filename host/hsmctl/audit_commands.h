// hsmctl audit verify, and the audit log every command writes
// (host/audit_log.h).
#ifndef HSMSIM_HOST_HSMCTL_AUDIT_COMMANDS_H_
#define HSMSIM_HOST_HSMCTL_AUDIT_COMMANDS_H_

#include <string>

#include "host/hsmctl/context.h"

namespace hsmsim::hsmctl {

// InstallAuditLog makes every later command of this hsmctl append to the
// audit log of `fleet_dir` (once per process; later calls do nothing).
void InstallAuditLog(const std::string& fleet_dir);

// AddAuditCommands registers `hsmctl audit verify` and `audit show`.
void AddAuditCommands(CLI::App& app, Invocation& inv);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_AUDIT_COMMANDS_H_

// Signed administrative commands: the host half of the unit's
// HandleSignedCommand. A command names the unit id and the unit's current
// transaction counter; it is serialized once and every administrator signs
// exactly those bytes (ECDSA P-521, SHA-512).
#ifndef HSMSIM_HOST_SIGNED_COMMAND_H_
#define HSMSIM_HOST_SIGNED_COMMAND_H_

#include <vector>

#include "absl/status/statusor.h"
#include "host/admin_key_file.h"
#include "host/unit_channel.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

// SignCommand serializes `command` (deterministically) and adds one
// signature per key in `signers` (none: an unsigned command, as imprint mode
// allows for some operations). Returns INTERNAL if serialization or signing
// fails.
absl::StatusOr<v1::SignedCommand> SignCommand(const v1::Command& command,
                                              const std::vector<const AdminKey*>& signers);

// IssueCommand reads the unit's id and transaction counter, fills them into
// `op` (a Command with only its op set), signs it with `signers` and sends it
// once. Returns the unit's state after the command, or the transport error or
// the unit's refusal (code and reason kept).
absl::StatusOr<v1::CommandResponse> IssueCommand(UnitChannel& client, v1::Command op,
                                                 const std::vector<const AdminKey*>& signers);

// IssueCommand as above with an already-read GetInfo (saves a round trip).
absl::StatusOr<v1::CommandResponse> IssueCommand(UnitChannel& client,
                                                 const v1::GetInfoResponse& info, v1::Command op,
                                                 const std::vector<const AdminKey*>& signers);

// CommandObserver sees every command IssueCommand sends and the unit's
// answer (the ceremony audit log, host/audit_log.h). `unit` is the client's
// unit name, `before` the state the command was built on.
class CommandObserver {
 public:
  virtual ~CommandObserver() = default;
  virtual void OnCommand(const std::string& unit, const v1::GetInfoResponse& before,
                         const v1::Command& command, const std::vector<const AdminKey*>& signers,
                         const absl::StatusOr<v1::CommandResponse>& result) = 0;
};

// SetCommandObserver installs `observer` (not owned; nullptr for none) for
// every later IssueCommand of the process and returns the previous one. The
// observer must be thread-safe when commands are issued from threads.
CommandObserver* SetCommandObserver(CommandObserver* observer);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_SIGNED_COMMAND_H_

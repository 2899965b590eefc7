// The documents hsmctl's commands print with --json, computed without
// printing anything: each command prints its own, and hsmctl console
// serves the same documents to the browser (docs/console.md). One function
// per document, so the command and the console cannot drift apart.
//
// Each function returns the command's document on success, or the error
// that stops the command (which the command prints with Fail and the
// console serves as FailureJson). None prints, prompts or signs; only
// UnitSelectReport changes anything (fleet.json).
#ifndef HSMSIM_HOST_HSMCTL_JSON_REPORTS_H_
#define HSMSIM_HOST_HSMCTL_JSON_REPORTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/hsmctl/context.h"

namespace hsmsim::hsmctl {

// UnitSelectReport is `hsmctl unit add NAME... --json` (`selected`) or
// `hsmctl unit rm NAME... --json`: it changes fleet.json's selection, all or
// nothing, and returns what it did per unit. Errors: LoadFleetManifest's,
// NOT_FOUND (NO_SUCH_UNIT) naming the names fleet.json does not have
// (nothing changed), SaveFleetManifest's.
absl::StatusOr<json> UnitSelectReport(const Invocation& inv, const std::vector<std::string>& names,
                                      bool selected);

// FleetStatusReport is `hsmctl fleet status --json`: every unit of
// fleet.json, running, stopped or unreachable. Errors: LoadFleetManifest's.
absl::StatusOr<json> FleetStatusReport(const Invocation& inv);

// UnitStatusReport is `hsmctl status --json`: per selected unit its id,
// mode, administrators, thresholds, registers and VPs (a unit that does not
// answer is a unit with "ok": false). Errors: LoadSelection's.
absl::StatusOr<json> UnitStatusReport(const Invocation& inv);

// RotationStatusReport is `hsmctl mk rotate --status --json`: the journal,
// the rotation lock's holder and the last rotation error, from the keystore
// alone. Errors: the manifest's and the keystore's.
absl::StatusOr<json> RotationStatusReport(const Invocation& inv);

// RecoverLookReport is `hsmctl recover --json` without --apply: the
// situation the fleet is in, why, and the safe action. Opens (creating it
// when missing, as recover does) the keystore. Errors: the manifest's and
// the keystore's.
absl::StatusOr<json> RecoverLookReport(Invocation& inv);

// AuditVerifyReport is `hsmctl audit verify --json`: the number of events
// and the head of the ceremony audit log's hash chain. Errors:
// VerifyAuditLog's (NO_AUDIT_LOG, AUDIT_LOG_TAMPERED, ...).
absl::StatusOr<json> AuditVerifyReport(const Invocation& inv);

// AuditShowReport is `hsmctl audit show --last N --json`: what
// AuditVerifyReport returns, and "last_events": the last `last` (1..1000)
// events of the verified log, newest first, each the log's line as stored
// (host/audit_log.h: no key material, PIN or password). Errors:
// VerifyAuditLog's.
absl::StatusOr<json> AuditShowReport(const Invocation& inv, int last);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_JSON_REPORTS_H_

// The reports of hsmctl mk rotate and hsmctl recover, and the one place
// that renders them as text or as JSON (docs/cli.md). The commands compute
// a report; these functions print it and return the exit code.
//
// The JSON documents are part of hsmctl's interface: tests and scripts
// parse them, so their fields do not change.
#ifndef HSMSIM_HOST_HSMCTL_ROTATION_REPORT_H_
#define HSMSIM_HOST_HSMCTL_ROTATION_REPORT_H_

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "host/hsmctl/context.h"
#include "host/keystore.h"
#include "host/recovery.h"
#include "host/rotation.h"

namespace hsmsim::hsmctl {

// What mk rotate did: refused by pre-checks, or ran (to the end or to an
// error) with a journal.
struct RotateReport {
  // Failed pre-checks: nothing was changed, and the rest is unset.
  std::vector<host::Finding> prechecks;
  host::RotationJournal journal;
  host::RotationReport figures;
  absl::Status status = absl::OkStatus();  // the engine's outcome
};

// RenderRotateStart prints, in text mode only, the line that opens a
// rotation: the pre-checks passed on `units` unit(s) and what is rotated
// (`resumed`: where an interrupted rotation continues).
void RenderRotateStart(const Invocation& inv, const host::RotationJournal& journal, size_t units,
                       bool resumed);

// RenderRotate prints the report and returns the exit code: 0 when the
// rotation finished, 3 when a failed pre-check found a unit unreachable,
// else 1 (or ExitCodeFor the engine's error).
int RenderRotate(const Invocation& inv, const RotateReport& report);

// RenderJoin prints what mk rotate --join did as this worker (`figures`),
// the journal `journal` after it and its outcome `status`, as text or as
// the JSON document {"command": "mk rotate --join", "ok", "phase",
// "target_vp", "keys_total", "keys_done", "keys_rewrapped",
// "ranges_claimed", "reencrypt_seconds", "reencrypt_keys_per_second"
// [, "error"]}. Returns 0, or ExitCodeFor(status).
int RenderJoin(const Invocation& inv, const host::RotationJournal& journal,
               const host::RotationReport& figures, const absl::Status& status);

// RenderDryRun prints what `command` (mk rotate or mk rotate --resume)
// would do with --dry-run: the rotation from journal.source_vp to
// journal.target_vp and the plan's steps, units and key counts, as text or
// as the JSON document {"command", "ok": true, "dry_run": true, "phase",
// "source_vp", "target_vp", "plan"} (docs/cli.md). Returns 0.
int RenderDryRun(const Invocation& inv, std::string_view command,
                 const host::RotationJournal& journal, const host::RotationPlan& plan);

// What recover saw, decided and (with --apply) did.
struct RecoverReport {
  std::vector<host::UnitObservation> observed;
  std::vector<host::WkidPairCount> counts;
  std::optional<host::RotationJournal> journal;  // as read, before --apply
  host::RecoveryDecision decision;
  // --apply only: whether an action ran, the journal after it, its figures
  // and its outcome.
  bool apply_attempted = false;
  // --apply --dry-run: nothing was changed; `plan` is what --apply would do
  // (when `status` is OK).
  bool dry_run = false;
  host::RotationPlan plan;
  host::RotationJournal applied_journal;
  host::RotationReport figures;
  absl::Status status = absl::OkStatus();
};

// RenderRecoverLook prints, in text mode only, what recover saw and decided
// (before --apply runs, so the operator reads it first).
void RenderRecoverLook(const Invocation& inv, const RecoverReport& report);

// RecoverJson returns the JSON document of recover (RenderRecover adds
// "ok", "report" and "error" after --apply, or the plan after --apply
// --dry-run): what it saw, the situation, why, and the safe action.
json RecoverJson(const RecoverReport& report);

// RenderRecover prints the rest of the report (the whole JSON document with
// --json) and returns the exit code: without an applied action 0 when there
// is nothing to do or the fleet is ready to rotate, else 1; after --apply 0
// on success, else ExitCodeFor the error; after --apply --dry-run the plan,
// and 0 when --apply could run, else ExitCodeFor its refusal.
int RenderRecover(const Invocation& inv, const RecoverReport& report);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_ROTATION_REPORT_H_

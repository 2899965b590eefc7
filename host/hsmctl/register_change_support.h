// hsmctl plumbing for the commands that change master key registers or
// administrators: read the rotation journal when the fleet has a keystore,
// ask the register change guard (host/register_change_guard.h), and report
// a unit already in the wanted state as "already".
#ifndef HSMSIM_HOST_HSMCTL_REGISTER_CHANGE_SUPPORT_H_
#define HSMSIM_HOST_HSMCTL_REGISTER_CHANGE_SUPPORT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/hsmctl/context.h"
#include "host/keystore.h"
#include "host/register_change_guard.h"
#include "host/rotation.h"

namespace hsmsim::hsmctl {

// ReadJournalIfAny returns the keystore's rotation journal; std::nullopt
// when the fleet has no keystore yet or never rotated; the keystore's error
// when it cannot be read.
absl::StatusOr<std::optional<host::RotationJournal>> ReadJournalIfAny(
    const Invocation& inv, const host::FleetManifest& manifest);

// GuardRegisterChange reads the journal (ReadJournalIfAny) and returns
// host::CheckSelection's refusal for `change` on `manifest`, or
// host::CheckRegisterChange's on the `observed` units, or OK. `journal_out` (may be null) receives
// the journal. A caller that already has them passes `instance`
// (ObserveInstance) and `counts` (KeyCounts); null: read here when needed
// (units left out of the selection).
absl::Status GuardRegisterChange(const Invocation& inv, const host::FleetManifest& manifest,
                                 const std::vector<host::UnitObservation>& observed,
                                 const host::RequestedChange& change,
                                 std::optional<host::RotationJournal>* journal_out = nullptr,
                                 const std::vector<host::UnitObservation>* instance = nullptr,
                                 const std::vector<host::WkidPairCount>* counts = nullptr);

// ObserveInstance returns the state of every unit of `manifest`
// (fleet.json, the instance), in its order: a selected unit's from
// `selected` (ObserveAll of the command's connections), the others read
// here with GetInfo only, through a pinned connection of their own, never
// changed. A unit that does not answer carries its error (the interlock
// counts it as unknown).
std::vector<host::UnitObservation> ObserveInstance(
    const Invocation& inv, const std::vector<host::UnitObservation>& selected,
    const host::FleetManifest& manifest);

// ReportAlready fills a unit's outcome for a unit that already is in the
// state the command wants: text "already <what>", JSON "already": true.
// Returns OK (the unit counts as a success).
absl::Status ReportAlready(UnitOutcome& outcome, const std::string& what);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_REGISTER_CHANGE_SUPPORT_H_

#include "host/hsmctl/register_change_support.h"

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/hsmctl/keystore_support.h"

namespace hsmsim::hsmctl {

absl::StatusOr<std::optional<host::RotationJournal>> ReadJournalIfAny(
    const Invocation& inv, const host::FleetManifest& manifest) {
  auto store = OpenKeystore(inv, manifest, false);
  if (!store.ok()) {
    if (ReasonOf(store.status()) == reason::kNoKeystore) {
      return std::optional<host::RotationJournal>();
    }
    return store.status();
  }
  return (*store)->ReadJournal();
}

absl::Status GuardRegisterChange(const Invocation& inv, const host::FleetManifest& manifest,
                                 const std::vector<host::UnitObservation>& observed,
                                 const host::RequestedChange& change,
                                 std::optional<host::RotationJournal>* journal_out) {
  HSMSIM_ASSIGN_OR_RETURN(std::optional<host::RotationJournal> journal,
                          ReadJournalIfAny(inv, manifest));
  host::RegisterChangeVerdict verdict = host::CheckSelection(manifest, change);
  if (verdict.allowed()) verdict = host::CheckRegisterChange(journal, observed, change);
  if (journal_out != nullptr) *journal_out = std::move(journal);
  return verdict.status;
}

absl::Status ReportAlready(UnitOutcome& outcome, const std::string& what) {
  outcome.details["already"] = true;
  outcome.text = StrCat("already ", what);
  return absl::OkStatus();
}

}  // namespace hsmsim::hsmctl

#include "host/hsmctl/register_change_support.h"

#include <algorithm>
#include <chrono>

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
                                 std::optional<host::RotationJournal>* journal_out,
                                 const std::vector<host::UnitObservation>* instance,
                                 const std::vector<host::WkidPairCount>* counts) {
  HSMSIM_ASSIGN_OR_RETURN(std::optional<host::RotationJournal> journal,
                          ReadJournalIfAny(inv, manifest));
  // With units left out (fleet.json or --unit), the guard still reads them:
  // a split of the fleet's CURRENT keys shows only over every unit.
  std::vector<host::UnitObservation> all;
  std::vector<host::WkidPairCount> key_counts;
  if (!manifest.LeftOut().empty()) {
    all = instance != nullptr ? *instance : ObserveInstance(inv, observed, manifest);
    if (change.command == host::OperatorCommand::kSetImmediate) {
      if (counts != nullptr) {
        key_counts = *counts;
      } else {
        HSMSIM_ASSIGN_OR_RETURN(key_counts, KeyCounts(inv, manifest));
      }
    }
  }
  host::RegisterChangeVerdict verdict = host::CheckSelection(manifest, change, all, key_counts);
  if (verdict.allowed()) verdict = host::CheckRegisterChange(journal, observed, change, all);
  if (journal_out != nullptr) *journal_out = std::move(journal);
  return verdict.status;
}

std::vector<host::UnitObservation> ObserveInstance(
    const Invocation& inv, const std::vector<host::UnitObservation>& selected,
    const host::FleetManifest& manifest) {
  // A fleet whose TLS files cannot be read: every unit not already seen is
  // unknown, with that error.
  absl::StatusOr<host::UnitClientOptions> loaded = FleetClientOptions(inv, manifest);
  host::UnitClientOptions options = loaded.ok() ? *loaded : host::UnitClientOptions{};
  options.idempotent_attempts = 1;  // a peek: a unit that does not answer is unknown
  std::vector<host::UnitObservation> out;
  for (const host::FleetUnit& unit : manifest.units) {
    auto seen = std::find_if(selected.begin(), selected.end(), [&](const host::UnitObservation& o) {
      return o.unit.name == unit.name;
    });
    if (seen != selected.end()) {
      out.push_back(*seen);
      continue;
    }
    auto client = loaded.ok() ? ConnectPinned(unit, options) : loaded.status();
    out.push_back(
        host::UnitObservation{unit, client.ok() ? (*client)->GetInfo() : client.status()});
  }
  return out;
}

absl::Status ReportAlready(UnitOutcome& outcome, const std::string& what) {
  outcome.details["already"] = true;
  outcome.text = StrCat("already ", what);
  return absl::OkStatus();
}

}  // namespace hsmsim::hsmctl

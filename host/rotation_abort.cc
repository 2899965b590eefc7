#include "host/rotation_abort.h"

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/master_key_id.h"
#include "host/recovery.h"
#include "host/register_change_guard.h"

namespace hsmsim::host {

absl::Status CheckAbort(const std::optional<RotationJournal>& journal,
                        const std::vector<UnitObservation>& units,
                        const std::vector<WkidPairCount>& counts) {
  if (!RotationOpen(journal)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoRotationInProgress,
                 "there is no open rotation to abort");
  }
  std::string promoted;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) {
      return WithContext(u.info.status(),
                         StrCat("cannot abort: unit ", u.unit.name,
                                " does not answer and might have promoted the target key; start "
                                "it (hsmctl fleet restart ",
                                u.unit.name, ") and run the command again"));
    }
    if (ClassifyUnit(u, journal->source_vp, journal->target_vp) == UnitRotationState::kPromoted) {
      promoted += StrCat(promoted.empty() ? "" : ", ", u.unit.name);
    }
  }
  if (!promoted.empty() || journal->phase == RotationPhase::kFinalizing) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationPromoted,
                 StrCat("cannot abort the rotation to ", ShortId(journal->target_vp), ": ",
                        promoted.empty() ? std::string("the journal says every unit")
                                         : StrCat("unit(s) ", promoted),
                        " already promoted it (set immediate done) and use it as CURRENT. Finish "
                        "the rotation instead: hsmctl recover, then hsmctl recover --apply"));
  }
  // Once the pending blobs under the target are gone, each key is only its
  // blob: it must be under a key some unit holds.
  const std::string target_wkid = WkidOfVp(journal->target_vp);
  std::vector<WkidPairCount> after;
  for (WkidPairCount c : counts) {
    if (SameId(c.pending_wkid, target_wkid)) c.pending_wkid.clear();
    after.push_back(std::move(c));
  }
  const auto at_risk = KeysAtRisk(after, HeldWkids(units));
  if (at_risk.empty()) return absl::OkStatus();
  int64_t total = 0;
  std::string list;
  for (const auto& [wkid, n] : at_risk) {
    total += n;
    list += StrCat(list.empty() ? "" : "; ", n, " under WKID ", wkid);
  }
  return Error(absl::StatusCode::kFailedPrecondition, reason::kInterlock,
               StrCat("cannot abort: afterwards ", total,
                      " stored key(s) would be under a master key no unit holds (", list,
                      "); nothing was changed. Run hsmctl recover"));
}

absl::StatusOr<AbortReport> AbortRotation(Keystore& keystore,
                                          const std::vector<UnitObservation>& units) {
  HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> journal, keystore.ReadJournal());
  HSMSIM_ASSIGN_OR_RETURN(std::vector<WkidPairCount> counts, keystore.CountByWkid());
  HSMSIM_RETURN_IF_ERROR(CheckAbort(journal, units, counts));
  AbortReport report;
  report.journal = *journal;
  HSMSIM_ASSIGN_OR_RETURN(report.pending_dropped,
                          keystore.AbandonRotation(WkidOfVp(journal->target_vp)));
  return report;
}

}  // namespace hsmsim::host

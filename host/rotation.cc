#include "host/rotation.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/batch_fanout.h"
#include "host/internal/keystore_text.h"
#include "host/master_key_id.h"
#include "host/pending_writer.h"
#include "host/rewrap_prefetch.h"
#include "host/signed_command.h"
#include "host/straggler_upgrade.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/enum_names.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::host {
namespace {

using Clock = std::chrono::steady_clock;

// Pages of keys read ahead of the re-encryption fan-out (each a batch), and
// re-encrypted batches waiting for the keystore writer.
constexpr size_t kPrefetchPages = 4;
constexpr size_t kWriterQueue = 4;
// A rotation worker's range of key ids, in batches (RotationOptions::range_keys).
constexpr int64_t kBatchesPerRange = 8;

// NameFailedKeys puts the keys' names into what `failed` names: the
// rotation reads the keys to re-encrypt without their names
// (Keystore::ReadToReencrypt), so the few it names (at most
// kMaxNamedFailedKeys; named[i] is problems[i], FailedKeys keeps them in
// step) are read here, one key each. Best effort: the names are only for
// the message, so a keystore error (likely when re-encryption itself
// stopped on one) leaves the rest as they were and is not returned: it
// must neither hide the run's own error nor keep the refused keys from
// being recorded.
void NameFailedKeys(Keystore& keystore, FailedKeys& failed) {
  for (size_t i = 0; i < failed.named.size() && i < failed.problems.size(); ++i) {
    const BlobProblem& p = failed.problems[i];
    absl::StatusOr<std::vector<StoredKey>> key = keystore.ReadPage(p.id - 1, 1);
    if (!key.ok()) return;
    if (key->empty() || (*key)[0].id != p.id) continue;  // keys are never deleted
    failed.named[i] = StrCat((*key)[0].name, " (", p.reason, ")");
  }
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Finding UnitFinding(const std::string& unit, std::string check, std::string_view reason,
                    std::string message) {
  return Finding{
      unit, check,
      Error(absl::StatusCode::kFailedPrecondition, reason, StrCat("unit ", unit, ": ", message))};
}

}  // namespace

std::string_view UnitRotationStateName(UnitRotationState state) {
  switch (state) {
    case UnitRotationState::kReady:
      return "READY";
    case UnitRotationState::kPromoted:
      return "PROMOTED";
    case UnitRotationState::kNewLost:
      return "NEW_LOST";
    case UnitRotationState::kUnrecognized:
      return "UNRECOGNIZED";
    case UnitRotationState::kUnreachable:
      return "UNREACHABLE";
  }
  return "UNKNOWN";
}

UnitRotationState ClassifyUnit(const UnitObservation& unit, std::string_view source_vp,
                               std::string_view target_vp) {
  if (!unit.info.ok()) return UnitRotationState::kUnreachable;
  const v1::GetInfoResponse& info = *unit.info;
  const auto& cur = info.current_register();
  const auto& nw = info.new_register();
  if (cur.state() == v1::REGISTER_VALID && SameId(cur.verification_pattern(), target_vp)) {
    return UnitRotationState::kPromoted;
  }
  if (cur.state() != v1::REGISTER_VALID || !SameId(cur.verification_pattern(), source_vp)) {
    return UnitRotationState::kUnrecognized;
  }
  if (nw.state() == v1::REGISTER_FULL_COMMITTED && SameId(nw.verification_pattern(), target_vp)) {
    return UnitRotationState::kReady;
  }
  return UnitRotationState::kNewLost;
}

std::optional<SplitCurrent> FindSplitCurrent(const std::vector<UnitObservation>& units) {
  SplitCurrent split;
  std::vector<std::string> keys;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) continue;
    const auto& cur = u.info->current_register();
    if (cur.state() != v1::REGISTER_VALID) continue;
    const std::string& vp = cur.verification_pattern();
    split.units.push_back(StrCat(u.unit.name, " CURRENT VP ", ShortId(vp)));
    if (std::none_of(keys.begin(), keys.end(),
                     [&](const std::string& k) { return SameId(k, vp); })) {
      keys.push_back(vp);
    }
  }
  if (keys.size() < 2) return std::nullopt;
  if (keys.size() > 2) return split;
  // shows(a, b): some unit shows a set immediate from a to b.
  auto shows = [&](const std::string& a, const std::string& b) {
    return std::any_of(units.begin(), units.end(), [&](const UnitObservation& u) {
      if (!u.info.ok()) return false;
      const auto& cur = u.info->current_register();
      const auto& old = u.info->old_register();
      const auto& nw = u.info->new_register();
      return (SameId(cur.verification_pattern(), b) && old.state() == v1::REGISTER_VALID &&
              SameId(old.verification_pattern(), a)) ||
             (SameId(cur.verification_pattern(), a) && nw.state() == v1::REGISTER_FULL_COMMITTED &&
              SameId(nw.verification_pattern(), b));
    });
  };
  const bool forward = shows(keys[0], keys[1]);
  const bool backward = shows(keys[1], keys[0]);
  if (forward == backward) return split;
  split.source_vp = forward ? keys[0] : keys[1];
  split.target_vp = forward ? keys[1] : keys[0];
  return split;
}

std::vector<UnitObservation> Observe(const FleetManifest& manifest,
                                     const std::vector<UnitChannel*>& clients) {
  std::vector<UnitObservation> out;
  auto selected = manifest.SelectedUnits();
  for (size_t i = 0; i < selected.size() && i < clients.size(); ++i) {
    out.push_back(UnitObservation{*selected[i], clients[i]->GetInfo()});
  }
  return out;
}

namespace {

// NotSelectedMessage says that `u`, listed in fleet.json, is not selected:
// the instance fleet.json names and, when `seen` (its observation; may be
// null) answered, the instance the unit itself reports.
std::string NotSelectedMessage(const FleetManifest& manifest, const FleetUnit& u,
                               const UnitObservation* seen) {
  std::string own = "its own instance is unknown (not asked)";
  if (seen != nullptr && !seen->info.ok()) {
    own = StrCat("its own instance is unknown (it does not answer: ", ReasonOf(seen->info.status()),
                 ")");
  } else if (seen != nullptr && seen->info->instance() == manifest.instance) {
    own = StrCat("it reports instance '", seen->info->instance(), "' too");
  } else if (seen != nullptr) {
    own = StrCat("it reports instance '", seen->info->instance(), "' itself");
  }
  return StrCat("is listed in fleet.json, whose instance is '", manifest.instance,
                "', but is not selected (", own,
                "); a rotation needs every unit fleet.json lists (",
                manifest.SelectAdvice({u.name}), ", or move it to another fleet)");
}

// CheckReachableUnits adds the findings of checks 1 and 2 (every unit of the
// one service instance selected, reachable, of that instance, not in
// imprint mode) and returns the selected units that answered. `units` may
// hold observations of units that are not selected: they only name their
// own instance in the UNIT_NOT_SELECTED finding.
std::vector<const UnitObservation*> CheckReachableUnits(const FleetManifest& manifest,
                                                        const std::vector<UnitObservation>& units,
                                                        std::vector<Finding>& findings) {
  // 1. Every unit of the one service instance is selected, and no other.
  for (const FleetUnit& u : manifest.units) {
    if (u.selected) continue;
    auto seen = std::find_if(units.begin(), units.end(),
                             [&](const UnitObservation& o) { return o.unit.name == u.name; });
    findings.push_back(
        UnitFinding(u.name, "all-units-selected", reason::kUnitNotSelected,
                    NotSelectedMessage(manifest, u, seen == units.end() ? nullptr : &*seen)));
  }
  std::vector<const UnitObservation*> up;
  for (const UnitObservation& u : units) {
    if (!u.unit.selected) continue;  // seen for its instance only
    if (!u.info.ok()) {
      findings.push_back(Finding{u.unit.name, "reachable", u.info.status()});
      continue;
    }
    up.push_back(&u);
    if (u.info->instance() != manifest.instance) {
      findings.push_back(UnitFinding(
          u.unit.name, "one-instance", reason::kWrongInstance,
          StrCat("is assigned to instance '", u.info->instance(), "', not '", manifest.instance,
                 "'; units of more than one service instance are selected")));
    }
    // 2. No unit in imprint mode.
    if (u.info->mode() != v1::MODE_NORMAL) {
      findings.push_back(UnitFinding(u.unit.name, "not-imprint", reason::kImprintMode,
                                     "is in imprint mode; set its signature thresholds first"));
    }
  }
  return up;
}

// CheckThresholds adds the findings of check 3 (equal signature thresholds)
// and returns the first unit's threshold. REQUIRES: !up.empty().
uint32_t CheckThresholds(const std::vector<const UnitObservation*>& up,
                         std::vector<Finding>& findings) {
  const uint32_t threshold = up[0]->info->signature_threshold();
  for (const UnitObservation* u : up) {
    if (u->info->signature_threshold() != threshold) {
      findings.push_back(UnitFinding(
          u->unit.name, "equal-thresholds", reason::kThresholdsDiffer,
          StrCat("has signature threshold ", u->info->signature_threshold(), ", unit ",
                 up[0]->unit.name, " has ", threshold, "; signature thresholds must be equal")));
    }
  }
  return threshold;
}

// CheckAdministrators adds the findings of check 4: a common set of
// administrators, large enough for `threshold`, with the signers in it.
// REQUIRES: !up.empty().
void CheckAdministrators(const std::vector<const UnitObservation*>& up, uint32_t threshold,
                         const std::vector<const AdminKey*>& signers,
                         std::vector<Finding>& findings) {
  std::set<std::string> common;
  for (const auto& a : up[0]->info->administrators()) common.insert(a.key_id());
  for (const UnitObservation* u : up) {
    std::set<std::string> mine;
    for (const auto& a : u->info->administrators()) mine.insert(a.key_id());
    std::set<std::string> both;
    for (const std::string& id : common) {
      if (mine.count(id)) both.insert(id);
    }
    common = std::move(both);
  }
  if (common.size() < std::max<uint32_t>(threshold, 1)) {
    findings.push_back(Finding{
        "fleet", "common-administrators",
        Error(absl::StatusCode::kFailedPrecondition, reason::kNoCommonAdministrators,
              StrCat("the units share ", common.size(),
                     " administrator(s); a common set of at least the signature threshold (",
                     threshold, ") must be installed in every unit"))});
  }
  if (signers.empty()) {
    findings.push_back(Finding{"fleet", "signers",
                               Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
                                     "set immediate must be signed: pass --sign with an "
                                     "administrator key file installed on every unit")});
  }
  for (const AdminKey* s : signers) {
    if (!common.count(crypto::AsString(s->key_id))) {
      findings.push_back(
          Finding{"fleet", "signers",
                  Error(absl::StatusCode::kFailedPrecondition, reason::kSignerNotCommon,
                        StrCat("administrator '", s->name,
                               "' (--sign) is not installed on every unit of the fleet"))});
    }
  }
}

// CheckMasterKeyRegisters adds the findings of checks 5 (CURRENT VALID
// everywhere with the same VP) and 6 (NEW FULL_COMMITTED everywhere with one
// VP, different from CURRENT's). REQUIRES: !up.empty().
void CheckMasterKeyRegisters(const std::vector<const UnitObservation*>& up,
                             std::vector<Finding>& findings) {
  const std::string& cur_vp = up[0]->info->current_register().verification_pattern();
  for (const UnitObservation* u : up) {
    const auto& cur = u->info->current_register();
    if (cur.state() != v1::REGISTER_VALID) {
      findings.push_back(
          UnitFinding(u->unit.name, "current-valid", reason::kCurrentNotValid,
                      StrCat("CURRENT register is ", wire::RegisterStateName(cur.state()),
                             "; every CURRENT register must be VALID")));
    } else if (!SameId(cur.verification_pattern(), cur_vp)) {
      findings.push_back(
          UnitFinding(u->unit.name, "current-same-vp", reason::kCurrentVpDiffers,
                      StrCat("CURRENT VP ", ShortId(cur.verification_pattern()),
                             " differs from unit ", up[0]->unit.name, "'s ", ShortId(cur_vp))));
    }
  }
  const std::string& new_vp = up[0]->info->new_register().verification_pattern();
  for (const UnitObservation* u : up) {
    const auto& nw = u->info->new_register();
    if (nw.state() != v1::REGISTER_FULL_COMMITTED) {
      findings.push_back(UnitFinding(
          u->unit.name, "new-committed", reason::kNewNotCommitted,
          StrCat("NEW register is ", wire::RegisterStateName(nw.state()),
                 "; every NEW register must be FULL_COMMITTED (hsmctl mk load, mk commit)")));
    } else if (!SameId(nw.verification_pattern(), new_vp)) {
      findings.push_back(
          UnitFinding(u->unit.name, "new-same-vp", reason::kNewVpDiffers,
                      StrCat("NEW VP ", ShortId(nw.verification_pattern()), " differs from unit ",
                             up[0]->unit.name, "'s ", ShortId(new_vp))));
    } else if (SameId(nw.verification_pattern(),
                      u->info->current_register().verification_pattern())) {
      findings.push_back(UnitFinding(u->unit.name, "new-differs", reason::kNewEqualsCurrent,
                                     "NEW holds the same key as CURRENT; load a new key"));
    }
  }
}

}  // namespace

std::vector<Finding> PrecheckRotation(const FleetManifest& manifest,
                                      const std::vector<UnitObservation>& units,
                                      const std::vector<const AdminKey*>& signers) {
  std::vector<Finding> findings;
  const std::vector<const UnitObservation*> up = CheckReachableUnits(manifest, units, findings);
  if (up.empty()) return findings;
  const uint32_t threshold = CheckThresholds(up, findings);
  CheckAdministrators(up, threshold, signers, findings);
  CheckMasterKeyRegisters(up, findings);
  return findings;
}

std::vector<Finding> PrecheckKeystore(const std::vector<WkidPairCount>& counts,
                                      std::string_view source_wkid, std::string_view target_wkid) {
  std::vector<Finding> findings;
  std::map<std::string, int64_t> stranded;
  for (const WkidPairCount& c : counts) {
    if (!SameId(c.wkid, source_wkid) && !SameId(c.wkid, target_wkid)) stranded[c.wkid] += c.count;
  }
  for (const auto& [wkid, count] : stranded) {
    findings.push_back(
        Finding{"keystore", "keys-under-current",
                Error(absl::StatusCode::kFailedPrecondition, reason::kKeysUnderOtherKey,
                      StrCat(count, " stored key(s) are under master key WKID ", ToHex(wkid),
                             ", which is not CURRENT; re-encrypt them first (hsmctl keys upgrade) "
                             "or they would be stranded"))});
  }
  return findings;
}

RotationEngine::RotationEngine(Keystore& keystore,
                               std::vector<std::pair<FleetUnit, UnitChannel*>> units,
                               std::vector<const AdminKey*> signers, RotationOptions options)
    : keystore_(keystore),
      units_(std::move(units)),
      signers_(std::move(signers)),
      options_(std::move(options)) {}

void RotationEngine::Say(std::string_view line) {
  if (options_.say) options_.say(line);
}

absl::Status RotationEngine::Checkpoint(std::string_view point, int64_t keys_done) {
  if (!options_.checkpoint) return absl::OkStatus();
  return options_.checkpoint(point, keys_done);
}

std::vector<UnitObservation> RotationEngine::ObserveUnits() {
  std::vector<UnitObservation> out;
  for (auto& [unit, channel] : units_) out.push_back(UnitObservation{unit, channel->GetInfo()});
  return out;
}

std::vector<UnitChannel*> RotationEngine::ReadyUnits(const RotationJournal& journal,
                                                     absl::Status* unreachable) {
  std::vector<UnitChannel*> ready;
  std::vector<UnitObservation> observed = ObserveUnits();
  for (size_t i = 0; i < observed.size(); ++i) {
    const UnitObservation& o = observed[i];
    UnitRotationState st = ClassifyUnit(o, journal.source_vp, journal.target_vp);
    if (st == UnitRotationState::kReady) {
      ready.push_back(units_[i].second);
    } else {
      if (!o.info.ok() && IsUnreachable(o.info.status()) && unreachable->ok()) {
        *unreachable = o.info.status();
      }
      Say(StrCat("unit ", o.unit.name,
                 " takes no part in re-encryption: ", UnitRotationStateName(st),
                 o.info.ok() ? "" : StrCat(" (", o.info.status().message(), ")")));
    }
  }
  return ready;
}

bool RotationEngine::EveryUnitPromoted(const RotationJournal& journal) {
  std::vector<UnitObservation> observed = ObserveUnits();
  return !observed.empty() &&
         std::all_of(observed.begin(), observed.end(), [&](const UnitObservation& o) {
           return ClassifyUnit(o, journal.source_vp, journal.target_vp) ==
                  UnitRotationState::kPromoted;
         });
}

void RotationEngine::ReportProgress(const RotationJournal& journal, double seconds,
                                    std::string_view phase) {
  if (options_.progress) {
    options_.progress(RotationProgress{journal.keys_done, journal.keys_total, seconds,
                                       std::string(phase), keys_per_unit_});
  }
}

absl::StatusOr<RotationJournal> RotationEngine::Begin(std::string source_vp,
                                                      std::string target_vp) {
  RotationJournal journal;
  journal.phase = RotationPhase::kReencrypting;
  journal.source_vp = std::move(source_vp);
  journal.target_vp = std::move(target_vp);
  HSMSIM_ASSIGN_OR_RETURN(journal.keys_total, keystore_.CountKeys());
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  // As stored: with the start the store set, which names the rotation.
  HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> written, keystore_.ReadJournal());
  if (written.has_value()) journal = *std::move(written);
  HSMSIM_RETURN_IF_ERROR(Checkpoint("journal-written", 0));
  return journal;
}

absl::Status RotationEngine::Reencrypt(RotationJournal& journal, RotationReport& report) {
  absl::Status unreachable = absl::OkStatus();
  std::vector<UnitChannel*> ready = ReadyUnits(journal, &unreachable);
  if (ready.empty()) {
    if (unreachable.ok() && EveryUnitPromoted(journal)) {
      // Set immediate ran on every unit before re-encryption finished (an
      // older hsmctl, a forced or a direct unit command): the keys not yet
      // re-encrypted are under every unit's OLD register now, and
      // finalization moves them OLD -> CURRENT.
      Say(StrCat("every unit already promoted ", ShortId(journal.target_vp), " with ",
                 journal.keys_total - journal.keys_done,
                 " key(s) not re-encrypted; they are re-encrypted OLD -> CURRENT"));
      RefreshKeysDone(journal);
      journal.phase = RotationPhase::kFinalizing;
      return keystore_.WriteJournal(journal);
    }
    return NoUnitError(unreachable);
  }
  const auto start = Clock::now();
  report.keys_already_done = journal.keys_done;
  FailedKeys failed;
  // On a keystore that several workers share (mk rotate --join), this run
  // leads: it claims ranges with them, then, once its own batches are
  // stored, reads every key still to do (the keys whose batches a dead
  // worker never stored, keys outside every range).
  shared_keystore_ = false;
  absl::Status ran = ReencryptOn(ready, journal, report, failed,
                                 options_.keystore_threads ? WorkerRole::kLead : WorkerRole::kOnly);
  RefreshKeysDone(journal);
  if (ran.ok() && shared_keystore_) {
    ran = ReencryptOn(ready, journal, report, failed, WorkerRole::kSweep);
    RefreshKeysDone(journal);
  }
  report.reencrypt_seconds += SecondsSince(start);
  NameFailedKeys(keystore_, failed);
  ReportProgress(journal, SecondsSince(start), "re-encrypting");
  // Record which keys the units refused, so that hsmctl recover names them
  // and keys quarantine can set them aside. A run that went through every
  // key replaces what earlier runs recorded.
  if (ran.ok()) HSMSIM_RETURN_IF_ERROR(keystore_.ClearBlobProblems());
  HSMSIM_RETURN_IF_ERROR(keystore_.RecordBlobProblems(failed.problems));
  HSMSIM_RETURN_IF_ERROR(ran);
  if (failed.count > 0) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kKeysNotReencrypted,
        StrCat(failed.count, " key(s) could not be re-encrypted (", failed.List(),
               "); nothing was promoted. Those blobs are damaged or under another key: restore "
               "them, or set them aside with hsmctl keys quarantine NAME... (they keep their "
               "blobs), then hsmctl mk rotate --resume; hsmctl recover names them all"));
  }
  journal.phase = RotationPhase::kReencrypted;
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  Say(kRewrapDoneMessage);
  return Checkpoint("reencrypted", journal.keys_done);
}

void RotationEngine::RefreshKeysDone(RotationJournal& journal) {
  // Other workers' stores count in the journal too.
  if (absl::StatusOr<std::optional<RotationJournal>> now = keystore_.ReadJournal();
      now.ok() && SameRotationState(journal, *now)) {
    journal.keys_done = (*now)->keys_done;
  }
}

absl::Status RotationEngine::NoUnitError(const absl::Status& unreachable) {
  // A unit that did not answer might have taken part: report that (exit 3),
  // not a refusal.
  if (!unreachable.ok()) {
    return WithContext(unreachable, "no unit can re-encrypt; run hsmctl recover to see why");
  }
  return Error(absl::StatusCode::kUnavailable, reason::kNoUnitAvailable,
               "no unit holds CURRENT and a committed NEW of this rotation; run hsmctl "
               "recover to see why");
}

absl::Status RotationEngine::Join(RotationJournal& journal, RotationReport& report) {
  if (journal.phase != RotationPhase::kReencrypting) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoReencryptionToJoin,
                 StrCat("the rotation to ", ShortId(journal.target_vp), " is ",
                        RotationPhaseName(journal.phase),
                        ": its re-encryption is over, so there is nothing to join "
                        "(hsmctl mk rotate --status shows it)"));
  }
  absl::Status unreachable = absl::OkStatus();
  std::vector<UnitChannel*> ready = ReadyUnits(journal, &unreachable);
  if (ready.empty()) return NoUnitError(unreachable);
  const auto start = Clock::now();
  FailedKeys failed;
  absl::Status ran = ReencryptOn(ready, journal, report, failed, WorkerRole::kJoined);
  report.reencrypt_seconds += SecondsSince(start);
  if (ReasonOf(ran) == reason::kJournalChanged) {
    // The lead moved on (or the rotation was abandoned) while this worker's
    // last batches were in flight: they were not stored, and are not needed.
    HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> now, keystore_.ReadJournal());
    Say(StrCat("the rotation journal changed while this worker re-encrypted (now ",
               internal::DescribeJournal(now), "); its last batches were not stored"));
    if (now.has_value()) journal = *now;
    return absl::OkStatus();
  }
  // The rotation is still this one: what the units refused is recorded
  // (recorded after a change, it would name keys of another rotation).
  NameFailedKeys(keystore_, failed);
  HSMSIM_RETURN_IF_ERROR(keystore_.RecordBlobProblems(failed.problems));
  HSMSIM_RETURN_IF_ERROR(ran);
  if (failed.count > 0) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kKeysNotReencrypted,
        StrCat(failed.count, " key(s) could not be re-encrypted (", failed.List(),
               "); they are recorded, and the lead's rotation stops at them too: restore them, "
               "or set them aside with hsmctl keys quarantine NAME...; hsmctl recover names "
               "them all"));
  }
  if (absl::StatusOr<std::optional<RotationJournal>> now = keystore_.ReadJournal();
      now.ok() && now->has_value()) {
    journal = **now;
  }
  Say(StrCat("worker done: ", report.keys_rewrapped, " key(s) re-encrypted in ",
             report.ranges_claimed,
             " range(s); no range is left to claim. The lead (hsmctl mk "
             "rotate) finishes the rotation"));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<RewrapClaiming>> RotationEngine::OpenClaiming(
    const RotationJournal& journal, WorkerRole role) {
  if (role == WorkerRole::kOnly || role == WorkerRole::kSweep) {
    return std::optional<RewrapClaiming>();
  }
  absl::StatusOr<std::unique_ptr<RewrapClaims>> opened = keystore_.OpenRewrapClaims();
  if (!opened.ok() && role == WorkerRole::kLead &&
      ReasonOf(opened.status()) == reason::kKeystoreNotShared) {
    return std::optional<RewrapClaiming>();  // one worker: this one
  }
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<RewrapClaims> claims, std::move(opened));
  const int64_t range_ids = options_.range_keys > 0
                                ? options_.range_keys
                                : static_cast<int64_t>(options_.batch_size) * kBatchesPerRange;
  HSMSIM_ASSIGN_OR_RETURN(const int64_t unfinished, claims->Plan(journal, range_ids));
  const RotationLockHolder self = RotationLockHolder::Self("");
  RewrapClaiming c;
  c.claims = std::move(claims);
  c.journal = journal;
  c.worker = StrCat("pid ", self.pid, " on ", self.host);
  // While other workers hold every range left, the operator's interrupt
  // still stops this one (the checkpoint "claim-wait", on the reader's
  // thread).
  c.before_wait = [this] { return Checkpoint("claim-wait", 0); };
  Say(StrCat(role == WorkerRole::kLead ? "lead" : "worker", " ", c.worker, ": ", unfinished,
             " range(s) of key ids left to claim"));
  return std::optional<RewrapClaiming>(std::move(c));
}

absl::Status RotationEngine::ReencryptOn(const std::vector<UnitChannel*>& ready,
                                         RotationJournal& journal, RotationReport& report,
                                         FailedKeys& failed, WorkerRole role) {
  const std::string source_wkid = WkidOfVp(journal.source_vp);
  const std::string target_wkid = WkidOfVp(journal.target_vp);
  const auto start = Clock::now();
  auto last_progress = start - std::chrono::seconds(10);
  BatchFanoutOptions fanout_options;
  fanout_options.in_flight_per_lane = options_.in_flight_per_unit;
  fanout_options.activity = "re-encryption";
  fanout_options.hint = "fix the units, then hsmctl mk rotate --resume";
  BatchFanout fanout(ready, fanout_options);
  RewrapBatches batches(RewrapKind::kCurrentToNew, options_.batch_size);
  fanout.SetSplit([&batches](const BatchFanout::Batch& b) { return batches.Split(b); });
  // The keys to re-encrypt are read on a thread of their own when the
  // keystore gives it a connection; else here, between batches. With
  // several workers (a keystore with RewrapClaims), that thread claims
  // ranges of keys.
  std::unique_ptr<RewrapPrefetcher> prefetch;
  HSMSIM_ASSIGN_OR_RETURN(std::optional<RewrapClaiming> claiming, OpenClaiming(journal, role));
  const bool shared = claiming.has_value() || role == WorkerRole::kSweep;
  if (claiming.has_value()) shared_keystore_ = true;
  if (options_.keystore_threads || shared) {
    if (absl::StatusOr<std::unique_ptr<Keystore>> reader = keystore_.Reopen(); reader.ok()) {
      if (claiming.has_value()) {
        prefetch = std::make_unique<RewrapPrefetcher>(std::move(*reader), source_wkid, target_wkid,
                                                      options_.batch_size, kPrefetchPages,
                                                      std::move(*claiming));
      } else {
        prefetch = std::make_unique<RewrapPrefetcher>(std::move(*reader), source_wkid, target_wkid,
                                                      options_.batch_size, kPrefetchPages);
      }
    } else if (shared) {
      return reader.status();
    }
  }
  // With the reads on their own connection, this one is the writer's: the
  // re-encrypted batches are stored on a thread of their own, each followed
  // by its checkpoint, while this thread drives the fan-out.
  std::unique_ptr<PendingWriter> writer;
  auto after_store = [this](int64_t done) { return Checkpoint("reencrypt-batch-stored", done); };
  if (prefetch && shared) {
    // A joined worker's checkpoints count its own keys.
    writer = std::make_unique<PendingWriter>(keystore_,
                                             role == WorkerRole::kJoined ? 0 : journal.keys_done,
                                             kWriterQueue, after_store, journal);
  } else if (prefetch) {
    writer =
        std::make_unique<PendingWriter>(keystore_, journal.keys_done, kWriterQueue, after_store);
  }
  int64_t after_id = 0;
  auto next = [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
    std::vector<StoredKey> page;
    if (prefetch) {
      HSMSIM_ASSIGN_OR_RETURN(page, prefetch->Take(batches.batch_size()));
    } else {
      HSMSIM_ASSIGN_OR_RETURN(page, keystore_.ReadToReencrypt(after_id, batches.batch_size(),
                                                              source_wkid, target_wkid));
    }
    if (page.empty()) return std::nullopt;
    after_id = page.back().id;
    return batches.Make(page);
  };
  auto handle = [&](size_t lane, const BatchFanout::Batch& batch,
                    v1::Response& response) -> absl::Status {
    HSMSIM_ASSIGN_OR_RETURN(
        std::vector<RewrappedKey> rewrapped,
        TakeRewrapped(RewrapKind::kCurrentToNew, response, batches.Keys(batch.tag), target_wkid,
                      fanout.channel(lane).name(), failed));
    batches.Forget(batch.tag);
    keys_per_unit_[fanout.channel(lane).name()] += static_cast<int64_t>(rewrapped.size());
    if (writer) {
      if (absl::Status queued = writer->Push(std::move(rewrapped)); !queued.ok()) {
        fanout.Stop(queued);
      }
      journal.keys_done = writer->keys_done();
    } else if (absl::Status stored = StoreRewrapped(rewrapped, journal, report); !stored.ok()) {
      fanout.Stop(stored);
    }
    if (SecondsSince(last_progress) >= 0.2) {
      last_progress = Clock::now();
      ReportProgress(journal, SecondsSince(start), "re-encrypting");
    }
    return absl::OkStatus();
  };
  absl::Status ran = fanout.Run(next, handle, options_.say);
  if (prefetch) report.ranges_claimed += prefetch->ranges_claimed();
  if (!writer) return ran;
  // What is queued is stored (also after a unit's error: the progress is
  // kept), unless the writer stopped on its own error or checkpoint.
  absl::Status stored = writer->Finish();
  journal.keys_done = writer->keys_done();
  report.keys_rewrapped += writer->keys_stored();
  return stored.ok() ? ran : stored;
}

absl::Status RotationEngine::StoreRewrapped(const std::vector<RewrappedKey>& rewrapped,
                                            RotationJournal& journal, RotationReport& report) {
  if (rewrapped.empty()) return absl::OkStatus();
  HSMSIM_RETURN_IF_ERROR(keystore_.StorePending(rewrapped));
  journal.keys_done += static_cast<int64_t>(rewrapped.size());
  report.keys_rewrapped += static_cast<int64_t>(rewrapped.size());
  return Checkpoint("reencrypt-batch-stored", journal.keys_done);
}

absl::Status RotationEngine::Promote(RotationJournal& journal, RotationReport& report) {
  const auto start = Clock::now();
  std::vector<UnitObservation> observed = ObserveUnits();
  // Decide for every unit before touching any.
  for (const UnitObservation& o : observed) {
    UnitRotationState st = ClassifyUnit(o, journal.source_vp, journal.target_vp);
    if (st == UnitRotationState::kUnreachable) {
      return WithContext(o.info.status(),
                         "cannot promote: a unit does not answer; start it and resume");
    }
    if (st == UnitRotationState::kNewLost || st == UnitRotationState::kUnrecognized) {
      return Error(
          absl::StatusCode::kFailedPrecondition, reason::kNewRegisterLost,
          StrCat("unit ", o.unit.name, " is ", UnitRotationStateName(st),
                 ": its NEW register no longer holds the target key ", ShortId(journal.target_vp),
                 ". Do not promote it; reload the same key parts on it first "
                 "(hsmctl recover --apply --parts ...)"));
    }
  }
  if (journal.phase != RotationPhase::kPromoting) {
    journal.phase = RotationPhase::kPromoting;
    HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  }
  HSMSIM_RETURN_IF_ERROR(Checkpoint("promoting", journal.keys_done));
  for (size_t i = 0; i < observed.size(); ++i) {
    const UnitObservation& o = observed[i];
    if (ClassifyUnit(o, journal.source_vp, journal.target_vp) == UnitRotationState::kPromoted) {
      report.skipped_units.push_back(o.unit.name);
      Say(StrCat("unit ", o.unit.name, ": already promoted (CURRENT ", ShortId(journal.target_vp),
                 ")"));
      continue;
    }
    v1::Command op;
    op.mutable_set_immediate();
    auto result = IssueCommand(*units_[i].second, *o.info, op, signers_);
    if (!result.ok()) {
      // The unit may have promoted and lost only the reply, or someone else
      // promoted it since it was observed: look before declaring failure.
      auto again = units_[i].second->GetInfo();
      if (again.ok() && ClassifyUnit(UnitObservation{o.unit, again}, journal.source_vp,
                                     journal.target_vp) == UnitRotationState::kPromoted) {
        if (ReasonOf(result.status()) == reason::kCounterMismatch) {
          // The unit refused this command unseen (its counter had moved):
          // this run's set immediate did not happen; another command
          // promoted the unit since it was observed.
          Say(StrCat("unit ", o.unit.name,
                     ": already promoted by another command (this set immediate was refused: ",
                     ReasonOf(result.status()), ")"));
          report.skipped_units.push_back(o.unit.name);
        } else {
          Say(StrCat("unit ", o.unit.name, ": promoted (",
                     IsUnreachable(result.status())
                         ? std::string("the reply was lost")
                         : StrCat("then answered ", ReasonOf(result.status())),
                     ")"));
          report.promoted_units.push_back(o.unit.name);
        }
        continue;
      }
      return WithContext(result.status(),
                         StrCat("set immediate on unit ", o.unit.name,
                                " failed; run hsmctl recover to see what is safe"));
    }
    Say(StrCat("unit ", o.unit.name, ": set immediate: CURRENT ", ShortId(journal.target_vp),
               ", OLD ", ShortId(journal.source_vp)));
    report.promoted_units.push_back(o.unit.name);
    HSMSIM_RETURN_IF_ERROR(
        Checkpoint("unit-promoted", static_cast<int64_t>(report.promoted_units.size())));
  }
  journal.phase = RotationPhase::kFinalizing;
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  HSMSIM_RETURN_IF_ERROR(Checkpoint("promoted", journal.keys_done));
  report.promote_seconds += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status RotationEngine::Finalize(RotationJournal& journal, RotationReport& report) {
  const auto start = Clock::now();
  const std::string source_wkid = WkidOfVp(journal.source_vp);
  const std::string target_wkid = WkidOfVp(journal.target_vp);
  // One transaction: the keystore switches to the generation of the
  // re-encrypted blobs (a resumed finalize finds nothing pending left).
  HSMSIM_ASSIGN_OR_RETURN(const int64_t promoted, keystore_.PromotePending(target_wkid));
  if (promoted > 0) {
    HSMSIM_RETURN_IF_ERROR(Checkpoint("finalize-chunk", promoted));
    if (options_.progress) {
      options_.progress(
          RotationProgress{promoted, journal.keys_total, SecondsSince(start), "finalizing"});
    }
  }
  // Keys that stayed under the source key (nothing should, as workloads wait
  // for the rotation; a damaged or interrupted run can leave some) are now
  // under every unit's OLD register: move them OLD -> CURRENT. When every
  // key had a pending blob there is none, and no pass over the keystore
  // looks for them (keys created since are made under the target).
  HSMSIM_ASSIGN_OR_RETURN(const int64_t keys, keystore_.CountKeys());
  if (promoted < keys) {
    HSMSIM_RETURN_IF_ERROR(MoveStragglers(source_wkid, target_wkid, report));
    HSMSIM_RETURN_IF_ERROR(SayQuarantined(source_wkid));
  }
  journal.phase = RotationPhase::kDone;
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  HSMSIM_RETURN_IF_ERROR(Checkpoint("done", promoted));
  report.finalize_seconds += SecondsSince(start);
  Say(StrCat("keystore finalized: ", promoted, " key(s) now under ", ShortId(journal.target_vp),
             report.stragglers_moved > 0 ? StrCat(", ", report.stragglers_moved, " moved from OLD")
                                         : std::string()));
  return absl::OkStatus();
}

absl::Status RotationEngine::MoveStragglers(std::string_view source_wkid,
                                            std::string_view target_wkid, RotationReport& report) {
  std::vector<UnitChannel*> channels;
  for (auto& [unit, channel] : units_) channels.push_back(channel);
  StragglerOptions options;
  options.batch_size = options_.batch_size;
  options.in_flight_per_unit = options_.in_flight_per_unit;
  options.say = options_.say;
  absl::StatusOr<StragglerReport> moved =
      UpgradeStragglers(keystore_, channels, source_wkid, target_wkid, options);
  if (!moved.ok()) return WithContext(moved.status(), "re-encrypting OLD -> CURRENT");
  report.stragglers_moved += moved->moved;
  HSMSIM_RETURN_IF_ERROR(keystore_.RecordBlobProblems(moved->failed.problems));
  if (moved->failed.count > 0) {
    Say(StrCat(moved->failed.count,
               " key(s) could not be re-encrypted OLD -> CURRENT and stay "
               "under OLD: ",
               moved->failed.List()));
  }
  return absl::OkStatus();
}

absl::Status RotationEngine::SayQuarantined(std::string_view source_wkid) {
  HSMSIM_ASSIGN_OR_RETURN(std::vector<WkidPairCount> quarantined, keystore_.CountQuarantined());
  for (const WkidPairCount& q : quarantined) {
    if (!SameId(q.wkid, source_wkid)) continue;
    Say(StrCat(q.count, " quarantined key(s) stay under WKID ", ToHex(q.wkid),
               " (now OLD); the interlock keeps that master key while they exist "
               "(hsmctl keys list shows them)"));
  }
  return absl::OkStatus();
}

absl::Status RotationEngine::Run(RotationJournal& journal, RotationReport& report) {
  if (journal.phase == RotationPhase::kReencrypting) {
    HSMSIM_RETURN_IF_ERROR(Reencrypt(journal, report));
  } else if (journal.phase == RotationPhase::kReencrypted) {
    Say(kRewrapDoneMessage);
  }
  if (journal.phase == RotationPhase::kReencrypted || journal.phase == RotationPhase::kPromoting) {
    HSMSIM_RETURN_IF_ERROR(Promote(journal, report));
  }
  if (journal.phase == RotationPhase::kFinalizing) {
    HSMSIM_RETURN_IF_ERROR(Finalize(journal, report));
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::host

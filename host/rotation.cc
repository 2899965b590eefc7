#include "host/rotation.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/signed_command.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/enum_names.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::host {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Short(std::string_view vp) { return vp.empty() ? "-" : ToHex(vp).substr(0, 16); }

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
  if (cur.state() == v1::REGISTER_VALID && cur.verification_pattern() == target_vp) {
    return UnitRotationState::kPromoted;
  }
  if (cur.state() != v1::REGISTER_VALID || cur.verification_pattern() != source_vp) {
    return UnitRotationState::kUnrecognized;
  }
  if (nw.state() == v1::REGISTER_FULL_COMMITTED && nw.verification_pattern() == target_vp) {
    return UnitRotationState::kReady;
  }
  return UnitRotationState::kNewLost;
}

std::vector<UnitObservation> Observe(const FleetManifest& manifest,
                                     const std::vector<UnitClient*>& clients) {
  std::vector<UnitObservation> out;
  auto selected = manifest.SelectedUnits();
  for (size_t i = 0; i < selected.size() && i < clients.size(); ++i) {
    out.push_back(UnitObservation{*selected[i], clients[i]->GetInfo()});
  }
  return out;
}

std::vector<Finding> PrecheckRotation(const FleetManifest& manifest,
                                      const std::vector<UnitObservation>& units,
                                      const std::vector<const AdminKey*>& signers) {
  std::vector<Finding> findings;
  // 1. Every unit of the one service instance is selected, and no other.
  for (const FleetUnit& u : manifest.units) {
    if (!u.selected) {
      findings.push_back(UnitFinding(
          u.name, "all-units-selected", "UNIT_NOT_SELECTED",
          StrCat("belongs to instance '", manifest.instance,
                 "' but is not selected; a rotation needs every unit of the instance (add it "
                 "back to fleet.json or move it to another fleet)")));
    }
  }
  std::vector<const UnitObservation*> up;
  for (const UnitObservation& u : units) {
    if (!u.info.ok()) {
      findings.push_back(Finding{u.unit.name, "reachable", u.info.status()});
      continue;
    }
    up.push_back(&u);
    if (u.info->instance() != manifest.instance) {
      findings.push_back(UnitFinding(
          u.unit.name, "one-instance", "WRONG_INSTANCE",
          StrCat("is assigned to instance '", u.info->instance(), "', not '", manifest.instance,
                 "'; units of more than one service instance are selected")));
    }
    // 2. No unit in imprint mode.
    if (u.info->mode() != v1::MODE_NORMAL) {
      findings.push_back(UnitFinding(u.unit.name, "not-imprint", "IMPRINT_MODE",
                                     "is in imprint mode; set its signature thresholds first"));
    }
  }
  if (up.empty()) return findings;
  // 3. Equal signature thresholds.
  const uint32_t threshold = up[0]->info->signature_threshold();
  for (const UnitObservation* u : up) {
    if (u->info->signature_threshold() != threshold) {
      findings.push_back(UnitFinding(
          u->unit.name, "equal-thresholds", "THRESHOLDS_DIFFER",
          StrCat("has signature threshold ", u->info->signature_threshold(), ", unit ",
                 up[0]->unit.name, " has ", threshold, "; signature thresholds must be equal")));
    }
  }
  // 4. A common set of administrators, large enough for the threshold, with
  //    the signers in it.
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
        Error(absl::StatusCode::kFailedPrecondition, "NO_COMMON_ADMINISTRATORS",
              StrCat("the units share ", common.size(),
                     " administrator(s); a common set of at least the signature threshold (",
                     threshold, ") must be installed in every unit"))});
  }
  if (signers.empty()) {
    findings.push_back(Finding{"fleet", "signers",
                               Error(absl::StatusCode::kFailedPrecondition, "NO_SIGNERS",
                                     "set immediate must be signed: pass --sign with an "
                                     "administrator key file installed on every unit")});
  }
  for (const AdminKey* s : signers) {
    if (!common.count(crypto::AsString(s->key_id))) {
      findings.push_back(
          Finding{"fleet", "signers",
                  Error(absl::StatusCode::kFailedPrecondition, "SIGNER_NOT_COMMON",
                        StrCat("administrator '", s->name,
                               "' (--sign) is not installed on every unit of the fleet"))});
    }
  }
  // 5. CURRENT VALID everywhere with the same VP.
  const std::string& cur_vp = up[0]->info->current_register().verification_pattern();
  for (const UnitObservation* u : up) {
    const auto& cur = u->info->current_register();
    if (cur.state() != v1::REGISTER_VALID) {
      findings.push_back(
          UnitFinding(u->unit.name, "current-valid", "CURRENT_NOT_VALID",
                      StrCat("CURRENT register is ", wire::RegisterStateName(cur.state()),
                             "; every CURRENT register must be VALID")));
    } else if (cur.verification_pattern() != cur_vp) {
      findings.push_back(
          UnitFinding(u->unit.name, "current-same-vp", "CURRENT_VP_DIFFERS",
                      StrCat("CURRENT VP ", Short(cur.verification_pattern()),
                             " differs from unit ", up[0]->unit.name, "'s ", Short(cur_vp))));
    }
  }
  // 6. NEW FULL_COMMITTED everywhere with one VP, different from CURRENT's.
  const std::string& new_vp = up[0]->info->new_register().verification_pattern();
  for (const UnitObservation* u : up) {
    const auto& nw = u->info->new_register();
    if (nw.state() != v1::REGISTER_FULL_COMMITTED) {
      findings.push_back(UnitFinding(
          u->unit.name, "new-committed", "NEW_NOT_COMMITTED",
          StrCat("NEW register is ", wire::RegisterStateName(nw.state()),
                 "; every NEW register must be FULL_COMMITTED (hsmctl mk load, mk commit)")));
    } else if (nw.verification_pattern() != new_vp) {
      findings.push_back(
          UnitFinding(u->unit.name, "new-same-vp", "NEW_VP_DIFFERS",
                      StrCat("NEW VP ", Short(nw.verification_pattern()), " differs from unit ",
                             up[0]->unit.name, "'s ", Short(new_vp))));
    } else if (nw.verification_pattern() == u->info->current_register().verification_pattern()) {
      findings.push_back(UnitFinding(u->unit.name, "new-differs", "NEW_EQUALS_CURRENT",
                                     "NEW holds the same key as CURRENT; load a new key"));
    }
  }
  return findings;
}

std::vector<Finding> PrecheckKeystore(const std::vector<WkidPairCount>& counts,
                                      std::string_view source_wkid, std::string_view target_wkid) {
  std::vector<Finding> findings;
  std::map<std::string, int64_t> stranded;
  for (const WkidPairCount& c : counts) {
    if (c.wkid != source_wkid && c.wkid != target_wkid) stranded[c.wkid] += c.count;
  }
  for (const auto& [wkid, count] : stranded) {
    findings.push_back(
        Finding{"keystore", "keys-under-current",
                Error(absl::StatusCode::kFailedPrecondition, "KEYS_UNDER_OTHER_KEY",
                      StrCat(count, " stored key(s) are under master key WKID ", ToHex(wkid),
                             ", which is not CURRENT; re-encrypt them first (hsmctl keys upgrade) "
                             "or they would be stranded"))});
  }
  return findings;
}

RotationEngine::RotationEngine(Keystore& keystore,
                               std::vector<std::pair<FleetUnit, UnitClient*>> units,
                               std::vector<const AdminKey*> signers, RotationOptions options)
    : keystore_(keystore),
      units_(std::move(units)),
      signers_(std::move(signers)),
      options_(std::move(options)) {}

void RotationEngine::Say(std::string_view line) {
  if (options_.say) options_.say(line);
}

void RotationEngine::Checkpoint(std::string_view point, int64_t keys_done) {
  if (options_.checkpoint) options_.checkpoint(point, keys_done);
}

std::vector<UnitObservation> RotationEngine::ObserveUnits() {
  std::vector<UnitObservation> out;
  for (auto& [unit, client] : units_) out.push_back(UnitObservation{unit, client->GetInfo()});
  return out;
}

namespace {

// One batch of keys on its way through a unit.
struct Batch {
  std::vector<int64_t> ids;
  std::vector<std::string> names;
  v1::Request request;
  int attempts = 0;
};

struct Completion {
  size_t unit = 0;
  std::shared_ptr<Batch> batch;
  absl::StatusOr<v1::Response> result;
};

struct UnitLane {
  std::string name;
  UnitClient* client = nullptr;
  int in_flight = 0;
  int consecutive_failures = 0;
  bool usable = true;
  std::string why_unusable;
};

}  // namespace

absl::Status RotationEngine::Reencrypt(RotationJournal& journal, RotationReport& report) {
  const std::string source_wkid = WkidOfVp(journal.source_vp);
  const std::string target_wkid = WkidOfVp(journal.target_vp);
  std::vector<UnitLane> lanes;
  const std::vector<UnitObservation> observed = ObserveUnits();
  for (const UnitObservation& o : observed) {
    UnitRotationState st = ClassifyUnit(o, journal.source_vp, journal.target_vp);
    auto it = std::find_if(units_.begin(), units_.end(),
                           [&](const auto& u) { return u.first.name == o.unit.name; });
    if (st == UnitRotationState::kReady) {
      UnitLane lane;
      lane.name = o.unit.name;
      lane.client = it->second;
      lanes.push_back(std::move(lane));
    } else {
      Say(StrCat("unit ", o.unit.name,
                 " takes no part in re-encryption: ", UnitRotationStateName(st),
                 o.info.ok() ? "" : StrCat(" (", o.info.status().message(), ")")));
    }
  }
  if (lanes.empty()) {
    // A unit that did not answer might have taken part: report that (exit 3),
    // not a refusal.
    for (const UnitObservation& o : observed) {
      if (!o.info.ok() && IsUnreachable(o.info.status())) {
        return WithContext(o.info.status(),
                           "no unit can re-encrypt; run hsmctl recover to see why");
      }
    }
    return Error(absl::StatusCode::kUnavailable, "NO_UNIT_AVAILABLE",
                 "no unit holds CURRENT and a committed NEW of this rotation; run hsmctl "
                 "recover to see why");
  }

  const auto start = Clock::now();
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Completion> completions;  // guarded by mu
  std::deque<std::shared_ptr<Batch>> retry;
  int64_t after_id = 0;
  bool exhausted = false;
  int in_flight = 0;
  absl::Status stop = absl::OkStatus();
  std::vector<std::string> failed_keys;
  int64_t failed_count = 0;
  const int64_t already = journal.keys_done;
  auto last_progress = Clock::now() - std::chrono::seconds(10);

  auto send = [&](size_t lane, std::shared_ptr<Batch> batch) {
    ++lanes[lane].in_flight;
    ++in_flight;
    lanes[lane].client->CallAsync(batch->request, [&, lane, batch](absl::StatusOr<v1::Response> r) {
      std::lock_guard<std::mutex> lock(mu);
      completions.push_back(Completion{lane, batch, std::move(r)});
      cv.notify_one();
    });
  };
  auto pick_lane = [&]() -> int {
    int best = -1;
    for (size_t i = 0; i < lanes.size(); ++i) {
      if (!lanes[i].usable || lanes[i].in_flight >= options_.in_flight_per_unit) continue;
      if (best < 0 || lanes[i].in_flight < lanes[best].in_flight) best = static_cast<int>(i);
    }
    return best;
  };
  auto next_batch = [&]() -> absl::StatusOr<std::shared_ptr<Batch>> {
    if (!retry.empty()) {
      auto b = retry.front();
      retry.pop_front();
      return b;
    }
    if (exhausted) return std::shared_ptr<Batch>();
    HSMSIM_ASSIGN_OR_RETURN(auto page, keystore_.ReadNeedingRewrap(after_id, options_.batch_size,
                                                                   source_wkid, target_wkid));
    if (page.empty()) {
      exhausted = true;
      return std::shared_ptr<Batch>();
    }
    auto b = std::make_shared<Batch>();
    auto* req = b->request.mutable_reencrypt_batch();
    req->mutable_blobs()->Reserve(static_cast<int>(page.size()));
    for (StoredKey& k : page) {
      b->ids.push_back(k.id);
      b->names.push_back(std::move(k.name));
      req->add_blobs(std::move(k.blob));
    }
    after_id = b->ids.back();
    return b;
  };

  while (true) {
    // Keep every usable unit busy.
    while (stop.ok()) {
      int lane = pick_lane();
      if (lane < 0) break;
      auto batch = next_batch();
      if (!batch.ok()) {
        stop = batch.status();
        break;
      }
      if (*batch == nullptr) break;
      send(static_cast<size_t>(lane), *batch);
    }
    if (in_flight == 0) break;
    Completion c;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !completions.empty(); });
      c = std::move(completions.front());
      completions.pop_front();
    }
    --in_flight;
    UnitLane& lane = lanes[c.unit];
    --lane.in_flight;
    absl::Status batch_status =
        c.result.ok() ? wire::FromWireStatus(c.result->status()) : c.result.status();
    std::vector<RewrappedKey> rewrapped;
    if (batch_status.ok()) {
      const auto& results = c.result->reencrypt_batch().results();
      if (results.size() != static_cast<int>(c.batch->ids.size())) {
        batch_status = Error(absl::StatusCode::kInternal, "BAD_RESPONSE",
                             StrCat("unit ", lane.name, " answered ", results.size(),
                                    " results for ", c.batch->ids.size(), " blobs"));
      }
      for (int i = 0; batch_status.ok() && i < results.size(); ++i) {
        const v1::BlobResult& r = results[i];
        if (r.outcome() == v1::BLOB_FAILED) {
          ++failed_count;
          if (failed_keys.size() < 10) {
            failed_keys.push_back(StrCat(c.batch->names[i], " (", r.status().reason(), ")"));
          }
          continue;
        }
        // Never store a blob under anything but the target key: a unit whose
        // NEW differs must not strand keys.
        auto parsed = wire::ParseBlob(AsBytes(r.blob()));
        if (!parsed.ok() || crypto::AsString(parsed->wkid) != target_wkid) {
          batch_status = Error(
              absl::StatusCode::kDataLoss, "WRONG_TARGET_KEY",
              StrCat("unit ", lane.name, " returned a blob that is not under the target WKID ",
                     ToHex(target_wkid), "; its NEW register holds another key"));
          rewrapped.clear();
          break;
        }
        rewrapped.push_back(RewrappedKey{c.batch->ids[i], r.blob(), target_wkid});
      }
    }
    if (!batch_status.ok()) {
      ++lane.consecutive_failures;
      const bool transport = IsUnreachable(batch_status);
      if (!transport || lane.consecutive_failures >= 3) {
        lane.usable = false;
        lane.why_unusable = std::string(batch_status.message());
        Say(StrCat("unit ", lane.name, " dropped from re-encryption: ", ReasonOf(batch_status),
                   ": ", batch_status.message()));
      }
      ++c.batch->attempts;
      if (c.batch->attempts > static_cast<int>(lanes.size()) * 3) {
        stop = WithContext(batch_status, "re-encryption stopped: a batch failed on every unit");
      } else {
        retry.push_back(c.batch);
      }
      bool any_usable =
          std::any_of(lanes.begin(), lanes.end(), [](const UnitLane& l) { return l.usable; });
      if (!any_usable && stop.ok()) {
        // The last unit dropped did not answer: keep its UNIT_UNREACHABLE or
        // UNIT_TIMEOUT (exit 3); every unit refused: NO_UNIT_AVAILABLE (exit 1).
        const std::string why =
            StrCat("re-encryption stopped: no unit is usable (last: unit ", lane.name, ": ",
                   batch_status.message(), "); fix the units, then hsmctl mk rotate --resume");
        stop = transport ? Error(batch_status.code(), ReasonOf(batch_status), why)
                         : Error(absl::StatusCode::kUnavailable, "NO_UNIT_AVAILABLE", why);
      }
      continue;
    }
    lane.consecutive_failures = 0;
    if (!rewrapped.empty()) {
      absl::Status stored = keystore_.StorePending(rewrapped);
      if (!stored.ok() && stop.ok()) stop = stored;
      journal.keys_done += static_cast<int64_t>(rewrapped.size());
      report.keys_rewrapped += static_cast<int64_t>(rewrapped.size());
      if (stored.ok()) Checkpoint("reencrypt-batch-stored", journal.keys_done);
    }
    if (options_.progress && SecondsSince(last_progress) >= 0.2) {
      last_progress = Clock::now();
      options_.progress(RotationProgress{journal.keys_done, journal.keys_total, SecondsSince(start),
                                         "re-encrypting"});
    }
  }
  report.keys_already_done = already;
  report.reencrypt_seconds += SecondsSince(start);
  if (options_.progress) {
    options_.progress(RotationProgress{journal.keys_done, journal.keys_total, SecondsSince(start),
                                       "re-encrypting"});
  }
  HSMSIM_RETURN_IF_ERROR(stop);
  if (failed_count > 0) {
    std::string list;
    for (const auto& k : failed_keys) list += StrCat(list.empty() ? "" : ", ", k);
    return Error(absl::StatusCode::kFailedPrecondition, "KEYS_NOT_REENCRYPTED",
                 StrCat(failed_count, " key(s) could not be re-encrypted (", list,
                        failed_count > 10 ? ", ..." : "",
                        "); nothing was promoted. Those blobs are damaged or under another key."));
  }
  journal.phase = RotationPhase::kReencrypted;
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  Say(kRewrapDoneMessage);
  Checkpoint("reencrypted", journal.keys_done);
  return absl::OkStatus();
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
          absl::StatusCode::kFailedPrecondition, "NEW_REGISTER_LOST",
          StrCat("unit ", o.unit.name, " is ", UnitRotationStateName(st),
                 ": its NEW register no longer holds the target key ", Short(journal.target_vp),
                 ". Do not promote it; reload the same key parts on it first "
                 "(hsmctl recover --apply --parts ...)"));
    }
  }
  if (journal.phase != RotationPhase::kPromoting) {
    journal.phase = RotationPhase::kPromoting;
    HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  }
  Checkpoint("promoting", journal.keys_done);
  for (size_t i = 0; i < observed.size(); ++i) {
    const UnitObservation& o = observed[i];
    if (ClassifyUnit(o, journal.source_vp, journal.target_vp) == UnitRotationState::kPromoted) {
      report.skipped_units.push_back(o.unit.name);
      Say(StrCat("unit ", o.unit.name, ": already promoted (CURRENT ", Short(journal.target_vp),
                 ")"));
      continue;
    }
    v1::Command op;
    op.mutable_set_immediate();
    auto result = IssueCommand(*units_[i].second, *o.info, op, signers_);
    if (!result.ok()) {
      // The unit may have promoted and lost only the reply: look before
      // declaring failure.
      auto again = units_[i].second->GetInfo();
      if (again.ok() && ClassifyUnit(UnitObservation{o.unit, again}, journal.source_vp,
                                     journal.target_vp) == UnitRotationState::kPromoted) {
        Say(StrCat("unit ", o.unit.name, ": promoted (the reply was lost)"));
        report.promoted_units.push_back(o.unit.name);
        continue;
      }
      return WithContext(result.status(),
                         StrCat("set immediate on unit ", o.unit.name,
                                " failed; run hsmctl recover to see what is safe"));
    }
    Say(StrCat("unit ", o.unit.name, ": set immediate: CURRENT ", Short(journal.target_vp),
               ", OLD ", Short(journal.source_vp)));
    report.promoted_units.push_back(o.unit.name);
    Checkpoint("unit-promoted", static_cast<int64_t>(report.promoted_units.size()));
  }
  journal.phase = RotationPhase::kFinalizing;
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  Checkpoint("promoted", journal.keys_done);
  report.promote_seconds += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status RotationEngine::Finalize(RotationJournal& journal, RotationReport& report) {
  const auto start = Clock::now();
  const std::string source_wkid = WkidOfVp(journal.source_vp);
  const std::string target_wkid = WkidOfVp(journal.target_vp);
  int64_t promoted = 0;
  while (true) {
    HSMSIM_ASSIGN_OR_RETURN(int64_t n, keystore_.PromotePending(target_wkid, 20'000));
    if (n == 0) break;
    promoted += n;
    Checkpoint("finalize-chunk", promoted);
    if (options_.progress) {
      options_.progress(
          RotationProgress{promoted, journal.keys_total, SecondsSince(start), "finalizing"});
    }
  }
  // Keys that stayed under the source key (nothing should, as workloads wait
  // for the rotation; a damaged or interrupted run can leave some) are now
  // under every unit's OLD register: move them OLD -> CURRENT.
  int64_t after_id = 0;
  size_t next_unit = 0;
  while (true) {
    HSMSIM_ASSIGN_OR_RETURN(auto page,
                            keystore_.ReadUnder(after_id, options_.batch_size, source_wkid));
    if (page.empty()) break;
    after_id = page.back().id;
    v1::Request request;
    for (const StoredKey& k : page) request.mutable_reencrypt_from_old()->add_blobs(k.blob);
    absl::StatusOr<v1::Response> response =
        Error(absl::StatusCode::kUnavailable, "NO_UNIT_AVAILABLE", "no unit answered");
    for (size_t tries = 0; tries < units_.size(); ++tries) {
      response = units_[next_unit++ % units_.size()].second->Call(request);
      if (response.ok() && response->status().code() == 0) break;
    }
    if (!response.ok()) return WithContext(response.status(), "re-encrypting OLD -> CURRENT");
    HSMSIM_RETURN_IF_ERROR(wire::FromWireStatus(response->status()));
    std::vector<RewrappedKey> moved;
    const auto& results = response->reencrypt_from_old().results();
    for (int i = 0; i < results.size() && i < static_cast<int>(page.size()); ++i) {
      if (results[i].outcome() == v1::BLOB_FAILED) {
        Say(StrCat("key ", page[i].name,
                   " could not be re-encrypted OLD -> CURRENT: ", results[i].status().reason()));
        continue;
      }
      moved.push_back(RewrappedKey{page[i].id, results[i].blob(), target_wkid});
    }
    HSMSIM_RETURN_IF_ERROR(keystore_.ReplaceBlobs(moved));
    report.stragglers_moved += static_cast<int64_t>(moved.size());
  }
  journal.phase = RotationPhase::kDone;
  HSMSIM_RETURN_IF_ERROR(keystore_.WriteJournal(journal));
  Checkpoint("done", promoted);
  report.finalize_seconds += SecondsSince(start);
  Say(StrCat("keystore finalized: ", promoted, " key(s) now under ", Short(journal.target_vp),
             report.stragglers_moved > 0 ? StrCat(", ", report.stragglers_moved, " moved from OLD")
                                         : std::string()));
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

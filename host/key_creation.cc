#include "host/key_creation.h"

#include <algorithm>
#include <map>

#include "common/check.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/master_key_id.h"
#include "host/rewrap_batch.h"
#include "host/store_thread.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/packed_blobs.h"

namespace hsmsim::host {
namespace {

bool RotationOpen(const std::optional<RotationJournal>& journal) {
  return journal.has_value() && journal->phase != RotationPhase::kDone;
}

// NoUnitCan returns the error of a plan without units: a unit's transport
// error when one did not answer (it might have taken part), else a refusal.
absl::Status NoUnitCan(const absl::Status& unreachable, const std::vector<std::string>& notes) {
  if (!unreachable.ok()) {
    return WithContext(unreachable, "no unit can create keys; run hsmctl recover to see why");
  }
  std::string why;
  for (const std::string& n : notes) why += StrCat(why.empty() ? "" : "; ", n);
  return Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
               StrCat("no unit can create keys (", why,
                      "); nothing was created. Run hsmctl recover to see why"));
}

// PlanWithoutRotation: every answering unit must hold the same CURRENT.
absl::StatusOr<KeyCreationPlan> PlanWithoutRotation(const std::vector<UnitObservation>& units,
                                                    KeyCreationPlan plan) {
  std::map<std::string, std::vector<std::string>> by_vp;  // CURRENT VP -> units
  absl::Status unreachable = absl::OkStatus();
  std::string vp;
  for (const UnitObservation& o : units) {
    plan.routes.push_back(KeyRoute::kNone);
    if (!o.info.ok()) {
      if (unreachable.ok()) unreachable = o.info.status();
      plan.notes.push_back(StrCat("unit ", o.unit.name, " takes no part: it did not answer (",
                                  o.info.status().message(), ")"));
      continue;
    }
    const auto& cur = o.info->current_register();
    if (cur.state() != v1::REGISTER_VALID) {
      plan.notes.push_back(StrCat("unit ", o.unit.name, " takes no part: no VALID CURRENT"));
      continue;
    }
    by_vp[cur.verification_pattern()].push_back(o.unit.name);
    vp = cur.verification_pattern();
    plan.routes.back() = KeyRoute::kUnderTarget;
  }
  if (by_vp.size() > 1) {
    std::string who;
    for (const auto& [v, names] : by_vp) {
      std::string list;
      for (const std::string& n : names) list += StrCat(list.empty() ? "" : ", ", n);
      who += StrCat(who.empty() ? "" : "; ", list, " hold CURRENT ", ShortId(v));
    }
    return Error(absl::StatusCode::kFailedPrecondition, reason::kCurrentVpDiffers,
                 StrCat("the units disagree on CURRENT (", who,
                        ") and no rotation is journaled: new keys would be stored under two "
                        "master keys; nothing was created. Bring every unit to one CURRENT "
                        "first: run hsmctl recover to see how"));
  }
  if (by_vp.empty()) return NoUnitCan(unreachable, plan.notes);
  plan.target_wkid = WkidOfVp(vp);
  return plan;
}

// PlanDuringRotation: READY units first (keys usable on every unit until the
// rotation ends), promoted units once none is READY.
absl::StatusOr<KeyCreationPlan> PlanDuringRotation(const std::vector<UnitObservation>& units,
                                                   KeyCreationPlan plan) {
  const RotationJournal& j = *plan.journal;
  plan.source_wkid = WkidOfVp(j.source_vp);
  plan.target_wkid = WkidOfVp(j.target_vp);
  std::vector<UnitRotationState> states;
  for (const UnitObservation& o : units) {
    states.push_back(ClassifyUnit(o, j.source_vp, j.target_vp));
  }
  const bool any_ready =
      j.phase != RotationPhase::kFinalizing &&
      std::find(states.begin(), states.end(), UnitRotationState::kReady) != states.end();
  absl::Status unreachable = absl::OkStatus();
  bool any = false;
  for (size_t i = 0; i < units.size(); ++i) {
    const UnitObservation& o = units[i];
    KeyRoute route = KeyRoute::kNone;
    std::string why;
    if (states[i] == UnitRotationState::kReady && j.phase != RotationPhase::kFinalizing) {
      route = KeyRoute::kPendingTarget;
    } else if (states[i] == UnitRotationState::kPromoted && !any_ready) {
      route = KeyRoute::kUnderTarget;
    } else if (states[i] == UnitRotationState::kPromoted) {
      why =
          "already promoted; new keys go to the units not yet promoted, so that every unit "
          "can use them until the rotation finishes";
    } else {
      why = std::string(UnitRotationStateName(states[i]));
      if (!o.info.ok()) {
        why += StrCat(" (", o.info.status().message(), ")");
        if (unreachable.ok()) unreachable = o.info.status();
      }
    }
    plan.routes.push_back(route);
    any = any || route != KeyRoute::kNone;
    if (route == KeyRoute::kNone) {
      plan.notes.push_back(StrCat("unit ", o.unit.name, " takes no part in key creation: ", why));
    }
  }
  if (!any) return NoUnitCan(unreachable, plan.notes);
  return plan;
}

// PlaceAnswer turns one GenerateKeys answer of unit `channel` (route
// `route`) to a request for the key ids `asked` into keystore rows that end under
// the plan's target, appended to `out`: blobs under the target as they are,
// blobs under the source re-encrypted to the target on the same unit as
// their pending blob. Returns INTERNAL (BAD_RESPONSE) for an answer without
// the packed form, with another number of blobs or a blob for another key id, DATA_LOSS
// (WRONG_TARGET_KEY) for a blob under any other key, FAILED_PRECONDITION
// (KEYS_NOT_REENCRYPTED) when the unit refuses to re-encrypt one, or the
// unit's error; nothing of the answer may be stored then (PlaceKeys takes it
// out of `out` again).
absl::Status PlaceAnswer(UnitChannel& channel, KeyRoute route, const KeyCreationPlan& plan,
                         const v1::GenerateKeysResponse& generated,
                         absl::Span<const std::string_view> asked, std::vector<PlacedKey>& out) {
  auto blobs = generated.has_packed()
                   ? wire::UnpackBlobs(generated.packed())
                   : absl::StatusOr<std::vector<std::string_view>>(
                         absl::InternalError("an answer without the packed form it was asked for"));
  if (!blobs.ok() || blobs->size() != asked.size()) {
    return Error(
        absl::StatusCode::kInternal, reason::kBadResponse,
        StrCat("unit ", channel.name(), " answered GenerateKeys for ", asked.size(), " keys with ",
               blobs.ok() ? StrCat(blobs->size(), " blobs") : std::string(blobs.status().message()),
               "; nothing of its answer was stored"));
  }
  std::vector<StoredKey> to_rewrap;  // id = index into `out`
  for (size_t i = 0; i < blobs->size(); ++i) {
    std::string blob((*blobs)[i]);
    HSMSIM_ASSIGN_OR_RETURN(wire::ParsedBlob parsed, wire::ParseBlob(AsBytes(blob)));
    // Each blob must be the key asked for at its place: a unit must not
    // store keys under names outside those reserved for this run.
    if (parsed.key_id != asked[i]) {
      return Error(absl::StatusCode::kInternal, reason::kBadResponse,
                   StrCat("unit ", channel.name(),
                          " answered GenerateKeys with a blob for another "
                          "key at place ",
                          i + 1, "; nothing of its answer was stored"));
    }
    // Copied out before `blob` is moved: `parsed` points into it.
    std::string name(parsed.key_id);
    std::string wkid(crypto::AsString(parsed.wkid));
    if (route == KeyRoute::kPendingTarget && SameId(wkid, plan.source_wkid)) {
      to_rewrap.push_back(
          StoredKey{static_cast<int64_t>(out.size()), name, blob, wkid, "", "", "", false});
    } else if (!SameId(wkid, plan.target_wkid)) {
      return Error(absl::StatusCode::kDataLoss, reason::kWrongTargetKey,
                   StrCat("unit ", channel.name(), " made key '", name, "' under WKID ",
                          ToHex(wkid), ", not under the target ", ToHex(plan.target_wkid),
                          " (its CURRENT changed since it was observed); nothing of its answer "
                          "was stored"));
    }
    out.push_back(PlacedKey{std::move(name), std::move(blob), std::move(wkid), "", ""});
  }
  if (to_rewrap.empty()) return absl::OkStatus();
  RewrapKeys keys;
  v1::Request request = MakeRewrapRequest(RewrapKind::kCurrentToNew, to_rewrap, keys);
  absl::StatusOr<v1::Response> response = channel.Call(std::move(request));
  HSMSIM_RETURN_IF_ERROR(ResponseStatus(response, channel.name()));
  FailedKeys failed;
  HSMSIM_ASSIGN_OR_RETURN(std::vector<RewrappedKey> rewrapped,
                          TakeRewrapped(RewrapKind::kCurrentToNew, *response, keys,
                                        plan.target_wkid, channel.name(), failed));
  if (failed.count > 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeysNotReencrypted,
                 StrCat("unit ", channel.name(), " could not re-encrypt ", failed.count,
                        " new key(s) to the rotation's target (", failed.List(),
                        "); nothing of its answer was stored"));
  }
  for (RewrappedKey& r : rewrapped) {
    PlacedKey& k = out[static_cast<size_t>(r.id)];
    k.pending_blob = std::move(r.blob);
    k.pending_wkid = std::move(r.wkid);
  }
  return absl::OkStatus();
}

// PlaceKeys is PlaceAnswer that leaves `out` as it was on error.
absl::Status PlaceKeys(UnitChannel& channel, KeyRoute route, const KeyCreationPlan& plan,
                       const v1::GenerateKeysResponse& generated,
                       absl::Span<const std::string_view> asked, std::vector<PlacedKey>& out) {
  const size_t before = out.size();
  absl::Status placed = PlaceAnswer(channel, route, plan, generated, asked, out);
  if (!placed.ok()) out.resize(before);
  return placed;
}

// RunPlan makes the keys still to make under `plan`. The chunks are stored
// on a thread of their own (a StoreThread), in the order they were made,
// while this thread drives the fan-out; `report` counts what that thread
// stored. Returns the first error (JOURNAL_CHANGED when the plan is stale);
// the chunks made before a unit's error are still stored.
absl::Status RunPlan(Keystore& keystore, const std::vector<UnitChannel*>& channels,
                     const KeyCreationPlan& plan, const KeyCreationSpec& spec,
                     KeyCreationReport& report, const std::function<void(int64_t)>& progress) {
  const int64_t to_make = spec.count - report.created;
  HSMSIM_ASSIGN_OR_RETURN(int64_t first, keystore.ReserveKeyNumbers(spec.prefix, to_make));
  std::vector<UnitChannel*> lanes;
  std::vector<KeyRoute> lane_routes;
  for (size_t i = 0; i < channels.size(); ++i) {
    if (plan.routes[i] == KeyRoute::kNone) continue;
    lanes.push_back(channels[i]);
    lane_routes.push_back(plan.routes[i]);
  }
  BatchFanoutOptions options;
  options.in_flight_per_lane = spec.in_flight_per_unit;
  options.retry_elsewhere = false;  // keys create reports the unit's error
  options.activity = "key generation";
  BatchFanout fanout(lanes, options);
  // Counted on the writer's thread once a chunk is stored, read here after
  // it finished.
  int64_t stored = 0;
  int64_t stored_with_pending = 0;
  StoreThread<std::vector<PlacedKey>> writer(
      spec.store_queue, [&](std::vector<PlacedKey>& chunk) -> absl::Status {
        HSMSIM_RETURN_IF_ERROR(keystore.AddKeysPlanned(chunk, plan.journal));
        stored += static_cast<int64_t>(chunk.size());
        for (const PlacedKey& k : chunk) stored_with_pending += k.pending_blob.empty() ? 0 : 1;
        return absl::OkStatus();
      });
  int64_t next = 0;
  int64_t made = 0;  // handed to the writer
  std::vector<PlacedKey> chunk;
  auto next_batch = [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
    if (next >= to_make) return std::nullopt;
    BatchFanout::Batch batch;
    v1::GenerateKeysRequest* generate = batch.request.mutable_generate_keys();
    generate->set_algorithm(v1::KEY_ALGORITHM_AES_256);
    const int64_t n = std::min<int64_t>(to_make - next, spec.keys_per_request);
    wire::PackedBlobsWriter key_ids(*generate->mutable_packed_key_ids(), static_cast<size_t>(n),
                                    static_cast<size_t>(n) * (spec.prefix.size() + 20));
    for (int64_t i = next; i < next + n; ++i) key_ids.Add(StrCat(spec.prefix, first + i));
    next += n;
    return batch;
  };
  auto hand_over = [&]() -> absl::Status {
    made += static_cast<int64_t>(chunk.size());
    absl::Status queued = writer.Push(std::move(chunk));
    chunk = {};
    chunk.reserve(spec.store_chunk);
    return queued;
  };
  chunk.reserve(spec.store_chunk);
  auto handle = [&](size_t lane, const BatchFanout::Batch& batch,
                    v1::Response& response) -> absl::Status {
    // Our own request: its packing was made above.
    auto asked = wire::UnpackBlobs(batch.request.generate_keys().packed_key_ids());
    HSMSIM_CHECK(asked.ok());
    HSMSIM_RETURN_IF_ERROR(PlaceKeys(fanout.channel(lane), lane_routes[lane], plan,
                                     response.generate_keys(), *asked, chunk));
    if (chunk.size() >= spec.store_chunk) {
      if (absl::Status s = hand_over(); !s.ok()) fanout.Stop(s);
    }
    if (progress) progress(report.created + made + static_cast<int64_t>(chunk.size()));
    return absl::OkStatus();
  };
  absl::Status ran = fanout.Run(next_batch, handle);
  // What was made before a unit's error is stored too; a keystore error
  // (JOURNAL_CHANGED among them) stops the writer and is returned.
  absl::Status handed = chunk.empty() ? absl::OkStatus() : hand_over();
  absl::Status written = writer.Finish();
  report.created += stored;
  report.with_pending += stored_with_pending;
  if (!written.ok()) return written;
  return ran.ok() ? handed : ran;
}

}  // namespace

absl::StatusOr<KeyCreationPlan> PlanKeyCreation(const std::optional<RotationJournal>& journal,
                                                const std::vector<UnitObservation>& units) {
  KeyCreationPlan plan;
  plan.journal = journal;
  if (!RotationOpen(journal)) return PlanWithoutRotation(units, std::move(plan));
  return PlanDuringRotation(units, std::move(plan));
}

namespace {

// MakeAndStore is CreateKeys without the final flush.
absl::Status MakeAndStore(Keystore& keystore,
                          const std::vector<std::pair<FleetUnit, UnitChannel*>>& units,
                          const KeyCreationSpec& spec, KeyCreationReport& report,
                          const std::function<void(int64_t made)>& progress,
                          const std::function<void(std::string_view)>& say) {
  std::vector<UnitChannel*> channels;
  for (const auto& [unit, channel] : units) channels.push_back(channel);
  while (report.created < spec.count) {
    if (report.plans == kMaxKeyCreationPlans) {
      return Error(
          absl::StatusCode::kAborted, reason::kJournalChanged,
          StrCat("the rotation journal changed ", report.plans, " times while keys were created; ",
                 report.created, " key(s) were stored. Run keys create again for the rest"));
    }
    HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> journal, keystore.ReadJournal());
    std::vector<UnitObservation> observed;
    for (const auto& [unit, channel] : units) {
      observed.push_back(UnitObservation{unit, channel->GetInfo()});
    }
    HSMSIM_ASSIGN_OR_RETURN(KeyCreationPlan plan, PlanKeyCreation(journal, observed));
    ++report.plans;
    report.target_wkid = plan.target_wkid;
    if (say) {
      for (const std::string& note : plan.notes) say(note);
    }
    absl::Status ran = RunPlan(keystore, channels, plan, spec, report, progress);
    if (ran.ok()) continue;
    if (ReasonOf(ran) != reason::kJournalChanged) {
      // A unit that answered under another key, or refused to re-encrypt,
      // may have been moved on by a rotation that changed the journal too:
      // then plan again rather than fail.
      HSMSIM_ASSIGN_OR_RETURN(std::optional<RotationJournal> now, keystore.ReadJournal());
      if (SameRotationState(now, plan.journal)) return ran;
    }
    if (say) say(StrCat(ran.message(), "; planning again"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CreateKeys(Keystore& keystore,
                        const std::vector<std::pair<FleetUnit, UnitChannel*>>& units,
                        const KeyCreationSpec& spec, KeyCreationReport& report,
                        const std::function<void(int64_t made)>& progress,
                        const std::function<void(std::string_view)>& say) {
  absl::Status made = MakeAndStore(keystore, units, spec, report, progress, say);
  // Chunks are committed without a sync each (Keystore::AddKeysPlanned):
  // every key stored is made durable before its count is reported, also
  // when the run stopped on an error.
  absl::Status flushed = report.created > 0 ? keystore.Flush() : absl::OkStatus();
  return made.ok() ? flushed : made;
}

}  // namespace hsmsim::host

#include "host/hsmctl/rotation_report.h"

#include <algorithm>
#include <iostream>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/master_key_id.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::hsmctl {
namespace {

json FiguresJson(const host::RotationReport& r, const host::RotationJournal& j) {
  return {
      {"phase", std::string(host::RotationPhaseName(j.phase))},
      {"source_vp", ToHex(j.source_vp)},
      {"target_vp", ToHex(j.target_vp)},
      {"keys_total", j.keys_total},
      {"keys_rewrapped", r.keys_rewrapped},
      {"keys_already_done", r.keys_already_done},
      {"stragglers_moved", r.stragglers_moved},
      {"ranges_claimed", r.ranges_claimed},
      {"reencrypt_seconds", r.reencrypt_seconds},
      {"reencrypt_keys_per_second",
       r.reencrypt_seconds > 0 ? static_cast<double>(r.keys_rewrapped) / r.reencrypt_seconds : 0.0},
      {"promote_seconds", r.promote_seconds},
      {"finalize_seconds", r.finalize_seconds},
      {"promoted_units", r.promoted_units},
      {"already_promoted_units", r.skipped_units}};
}

int RenderPrechecks(const Invocation& inv, const std::vector<host::Finding>& findings) {
  json list = json::array();
  for (const host::Finding& fd : findings) {
    if (!inv.json) {
      std::cerr << "pre-check failed: " << fd.subject << ": " << fd.check << ": "
                << ReasonOf(fd.status) << ": "
                << UnitLineMessage(fd.subject, std::string(fd.status.message())) << "\n";
    }
    list.push_back(
        {{"subject", fd.subject}, {"check", fd.check}, {"error", StatusJson(fd.status)}});
  }
  if (inv.json) {
    std::cout << json{{"command", "mk rotate"}, {"ok", false}, {"prechecks", list}}.dump(2) << "\n";
  } else {
    std::cerr << "hsmctl: nothing was changed; fix the conditions above and run the command "
                 "again\n";
  }
  const bool unreachable =
      std::any_of(findings.begin(), findings.end(),
                  [](const host::Finding& fd) { return host::IsUnreachable(fd.status); });
  return unreachable ? kExitUnreachable : kExitRefused;
}

std::string RegisterText(const v1::MasterKeyRegisterInfo& r) {
  return StrCat(wire::RegisterStateName(r.state()), " ", host::ShortId(r.verification_pattern()));
}

json RegisterJson(const v1::MasterKeyRegisterInfo& r) {
  return {{"state", std::string(wire::RegisterStateName(r.state()))},
          {"verification_pattern", ToHex(r.verification_pattern())}};
}

// UnitsJson: per unit its name, endpoint and either its error or its
// registers, structured ("registers": {"new": {"state",
// "verification_pattern" (full hex)}, ...}) and, for older scripts, as the
// text lines "new", "current", "old" ("STATE SHORTVP").
json UnitsJson(const std::vector<host::UnitObservation>& observed) {
  json units = json::array();
  for (const host::UnitObservation& o : observed) {
    if (!o.info.ok()) {
      units.push_back({{"unit", o.unit.name},
                       {"endpoint", o.unit.endpoint},
                       {"reachable", false},
                       {"error", StatusJson(o.info.status())}});
      continue;
    }
    units.push_back({{"unit", o.unit.name},
                     {"endpoint", o.unit.endpoint},
                     {"reachable", true},
                     {"instance", o.info->instance()},
                     {"registers",
                      {{"new", RegisterJson(o.info->new_register())},
                       {"current", RegisterJson(o.info->current_register())},
                       {"old", RegisterJson(o.info->old_register())}}},
                     {"new", RegisterText(o.info->new_register())},
                     {"current", RegisterText(o.info->current_register())},
                     {"old", RegisterText(o.info->old_register())}});
  }
  return units;
}

json PlanJson(const host::RotationPlan& p) {
  return {{"steps", p.steps},
          {"units_reencrypting", p.units_reencrypting},
          {"units_to_promote", p.units_to_promote},
          {"units_promoted", p.units_promoted},
          {"keys_to_reencrypt", p.keys_to_reencrypt},
          {"pending_blobs", p.pending_blobs},
          {"keys_total", p.keys_total}};
}

void PrintPlanSteps(const host::RotationPlan& p) {
  for (size_t i = 0; i < p.steps.size(); ++i) {
    std::cout << "  " << i + 1 << ". " << p.steps[i] << "\n";
  }
  std::cout << "dry run: nothing was changed (no unit, no journal, no lock)" << std::endl;
}

json CountsJson(const std::vector<host::WkidPairCount>& counts) {
  json wk = json::array();
  for (const host::WkidPairCount& c : counts) {
    wk.push_back(
        {{"wkid", ToHex(c.wkid)}, {"pending_wkid", ToHex(c.pending_wkid)}, {"keys", c.count}});
  }
  return wk;
}

std::string JournalPhase(const RecoverReport& r) {
  return r.journal.has_value() ? std::string(host::RotationPhaseName(r.journal->phase)) : "NONE";
}

}  // namespace

void RenderRotateStart(const Invocation& inv, const host::RotationJournal& j, size_t units,
                       bool resumed) {
  if (inv.json) return;
  if (resumed) {
    std::cout << "resuming the rotation at phase " << host::RotationPhaseName(j.phase) << " ("
              << j.keys_done << " of " << j.keys_total << " key(s) re-encrypted)\n";
  } else {
    std::cout << "pre-checks passed on " << units << " unit(s); rotating " << j.keys_total
              << " key(s) from " << host::ShortId(j.source_vp) << " to "
              << host::ShortId(j.target_vp) << "\n";
  }
}

int RenderRotate(const Invocation& inv, const RotateReport& r) {
  if (!r.prechecks.empty()) return RenderPrechecks(inv, r.prechecks);
  if (inv.json) {
    json doc = FiguresJson(r.figures, r.journal);
    doc["command"] = "mk rotate";
    doc["ok"] = r.status.ok();
    if (!r.status.ok()) doc["error"] = StatusJson(r.status);
    std::cout << doc.dump(2) << "\n";
  }
  if (!r.status.ok()) {
    std::cerr << "hsmctl: " << ReasonOf(r.status) << ": " << r.status.message() << "\n";
    std::cerr << "hsmctl: the rotation is journaled at phase "
              << host::RotationPhaseName(r.journal.phase)
              << "; run hsmctl recover to see the safe next step\n";
    return ExitCodeFor(r.status);
  }
  if (inv.json) return kExitOk;
  std::cout << "rotation complete: CURRENT is now " << ToHex(r.journal.target_vp) << "\n";
  const host::RotationReport& f = r.figures;
  if (f.keys_rewrapped > 0 && f.reencrypt_seconds > 0) {
    std::cout << "re-encrypted " << f.keys_rewrapped << " key(s) in " << f.reencrypt_seconds
              << " s ("
              << static_cast<int64_t>(static_cast<double>(f.keys_rewrapped) / f.reencrypt_seconds)
              << " keys/s)\n";
  }
  return kExitOk;
}

int RenderJoin(const Invocation& inv, const host::RotationJournal& j, const host::RotationReport& f,
               const absl::Status& status) {
  const double rate =
      f.reencrypt_seconds > 0 ? static_cast<double>(f.keys_rewrapped) / f.reencrypt_seconds : 0.0;
  if (inv.json) {
    json doc = {{"command", "mk rotate --join"},
                {"ok", status.ok()},
                {"phase", std::string(host::RotationPhaseName(j.phase))},
                {"target_vp", ToHex(j.target_vp)},
                {"keys_total", j.keys_total},
                {"keys_done", j.keys_done},
                {"keys_rewrapped", f.keys_rewrapped},
                {"ranges_claimed", f.ranges_claimed},
                {"reencrypt_seconds", f.reencrypt_seconds},
                {"reencrypt_keys_per_second", rate}};
    if (!status.ok()) doc["error"] = StatusJson(status);
    std::cout << doc.dump(2) << "\n";
  }
  if (!status.ok()) {
    std::cerr << "hsmctl: " << ReasonOf(status) << ": " << status.message() << "\n";
    return ExitCodeFor(status);
  }
  if (inv.json) return kExitOk;
  std::cout << "this worker re-encrypted " << f.keys_rewrapped << " key(s) in " << f.ranges_claimed
            << " range(s), " << f.reencrypt_seconds << " s (" << static_cast<int64_t>(rate)
            << " keys/s); the rotation is at " << host::RotationPhaseName(j.phase) << ", "
            << j.keys_done << " of " << j.keys_total << " key(s) done\n";
  return kExitOk;
}

int RenderDryRun(const Invocation& inv, std::string_view command, const host::RotationJournal& j,
                 const host::RotationPlan& plan) {
  if (inv.json) {
    std::cout << json{{"command", std::string(command)},
                      {"ok", true},
                      {"dry_run", true},
                      {"phase", std::string(host::RotationPhaseName(j.phase))},
                      {"source_vp", ToHex(j.source_vp)},
                      {"target_vp", ToHex(j.target_vp)},
                      {"plan", PlanJson(plan)}}
                     .dump(2)
              << std::endl;
    return kExitOk;
  }
  if (command.ends_with("--resume")) {
    std::cout << "dry run: " << command << " would continue the rotation from "
              << host::ShortId(j.source_vp) << " to " << host::ShortId(j.target_vp) << " at phase "
              << host::RotationPhaseName(j.phase) << " (" << j.keys_done << " of " << j.keys_total
              << " key(s) re-encrypted):\n";
  } else {
    std::cout << "dry run: " << command << " would rotate " << j.keys_total << " key(s) from "
              << host::ShortId(j.source_vp) << " to " << host::ShortId(j.target_vp) << ":\n";
  }
  PrintPlanSteps(plan);
  return kExitOk;
}

void RenderRecoverLook(const Invocation& inv, const RecoverReport& r) {
  if (inv.json) return;
  std::cout << "observed:\n";
  for (const host::UnitObservation& o : r.observed) {
    if (!o.info.ok()) {
      std::cout << "  " << o.unit.name << ": UNREACHABLE: "
                << UnitLineMessage(o.unit.name, std::string(o.info.status().message())) << "\n";
      continue;
    }
    std::cout << "  " << o.unit.name << ": NEW " << RegisterText(o.info->new_register())
              << " | CURRENT " << RegisterText(o.info->current_register()) << " | OLD "
              << RegisterText(o.info->old_register()) << "\n";
  }
  for (const host::WkidPairCount& c : r.counts) {
    std::cout << "  keystore: " << c.count << " key(s) under " << host::ShortId(c.wkid)
              << (c.pending_wkid.empty()
                      ? ""
                      : StrCat(", pending under ", host::ShortId(c.pending_wkid)))
              << "\n";
  }
  const host::RecoveryDecision& d = r.decision;
  std::cout << "  journal: " << JournalPhase(r) << "\n";
  std::cout << "situation: " << host::RecoverySituationName(d.situation) << ": " << d.observed
            << "\n";
  std::cout << "safe action: " << d.action << "\n";
}

namespace {

// RenderRecoverDryRun finishes recover --apply --dry-run: the plan, or the
// refusal --apply would meet.
int RenderRecoverDryRun(const Invocation& inv, const RecoverReport& r, json& doc) {
  doc["dry_run"] = true;
  doc["ok"] = r.status.ok();
  if (r.status.ok()) doc["plan"] = PlanJson(r.plan);
  if (!r.status.ok()) doc["error"] = StatusJson(r.status);
  if (inv.json) std::cout << doc.dump(2) << std::endl;
  if (!r.status.ok()) {
    std::cerr << "hsmctl: " << ReasonOf(r.status) << ": " << r.status.message() << "\n";
    return ExitCodeFor(r.status);
  }
  if (!inv.json) {
    std::cout << "dry run: recover --apply would:\n";
    PrintPlanSteps(r.plan);
  }
  return kExitOk;
}

}  // namespace

json RecoverJson(const RecoverReport& r) {
  const host::RecoveryDecision& d = r.decision;
  return json{{"command", "recover"},
              {"units", UnitsJson(r.observed)},
              {"keys_per_wkid", CountsJson(r.counts)},
              {"journal_phase", JournalPhase(r)},
              {"situation", std::string(host::RecoverySituationName(d.situation))},
              {"observed", d.observed},
              {"action", d.action},
              {"units_promoted", d.units_promoted},
              {"units_to_promote", d.units_to_promote},
              {"units_to_reload", d.units_to_reload},
              {"source_vp", ToHex(d.source_vp)},
              {"target_vp", ToHex(d.target_vp)},
              {"abort_possible", d.abort_possible},
              {"unreadable_keys", d.unreadable_keys},
              {"unreadable_count", d.unreadable_count},
              {"quarantined_count", d.quarantined_count},
              {"applied", r.apply_attempted && r.status.ok()}};
}

int RenderRecover(const Invocation& inv, const RecoverReport& r) {
  const host::RecoveryDecision& d = r.decision;
  json doc = RecoverJson(r);
  if (!r.apply_attempted) {
    if (inv.json) std::cout << doc.dump(2) << "\n";
    return d.situation == host::RecoverySituation::kNothingToDo ||
                   d.situation == host::RecoverySituation::kReadyToRotate
               ? kExitOk
               : kExitRefused;
  }
  if (r.dry_run) return RenderRecoverDryRun(inv, r, doc);
  if (inv.json) {
    doc["ok"] = r.status.ok();
    doc["report"] = FiguresJson(r.figures, r.applied_journal);
    if (!r.status.ok()) doc["error"] = StatusJson(r.status);
    std::cout << doc.dump(2) << "\n";
    if (!r.status.ok()) {
      std::cerr << "hsmctl: " << ReasonOf(r.status) << ": " << r.status.message() << "\n";
      return ExitCodeFor(r.status);
    }
    return kExitOk;
  }
  if (!r.status.ok()) return Fail(inv, r.status);
  std::cout << "applied: rotation is " << host::RotationPhaseName(r.applied_journal.phase) << "\n";
  return kExitOk;
}

}  // namespace hsmsim::hsmctl

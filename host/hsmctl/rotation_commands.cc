// hsmctl mk rotate | recover | zeroize.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "host/hsmctl/keystore_support.h"
#include "host/interlock.h"
#include "host/key_part_loading.h"
#include "host/recovery.h"
#include "host/signed_command.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::hsmctl {
namespace {

struct RotateFlags {
  bool resume = false;
  size_t batch_size = 2048;
  int in_flight = 4;
  std::vector<std::string> parts;  // recover --apply only
  bool apply = false;
};

// Session holds what a rotation or recovery needs.
struct Session {
  host::FleetManifest manifest;
  std::vector<UnitConnection> conns;
  std::unique_ptr<host::Keystore> store;
  std::vector<host::AdminKey> signers;
};

absl::StatusOr<Session> OpenSession(Invocation& inv) {
  Session s;
  HSMSIM_ASSIGN_OR_RETURN(s.signers, LoadSigners(inv));
  HSMSIM_ASSIGN_OR_RETURN(s.conns, ConnectSelected(inv, &s.manifest));
  HSMSIM_ASSIGN_OR_RETURN(s.store, OpenKeystore(inv, s.manifest, true));
  return s;
}

// TestCrashCheckpoint returns a checkpoint that kills hsmctl on the spot
// (like kill -9: no cleanup, no flush) when HSMSIM_TEST_CRASH_AT names the
// point, as "POINT" or "POINT:N" (fires once keys_done >= N). For the crash
// matrix tests; documented in docs/reliability.md.
std::function<absl::Status(std::string_view, int64_t)> TestCrashCheckpoint() {
  const char* spec = std::getenv("HSMSIM_TEST_CRASH_AT");
  if (spec == nullptr || *spec == '\0') return nullptr;
  std::string point(spec);
  int64_t at = 0;
  if (size_t colon = point.find(':'); colon != std::string::npos) {
    at = std::strtoll(point.c_str() + colon + 1, nullptr, 10);
    point.resize(colon);
  }
  return [point, at](std::string_view p, int64_t keys_done) {
    if (p == point && keys_done >= at) {
      std::fprintf(stderr, "hsmctl: HSMSIM_TEST_CRASH_AT=%s: crashing at %.*s\n", point.c_str(),
                   static_cast<int>(p.size()), p.data());
      std::_Exit(137);
    }
    return absl::OkStatus();
  };
}

host::RotationEngine MakeEngine(Invocation& inv, Session& s, const RotateFlags& f,
                                ProgressPrinter& progress) {
  std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> units;
  for (UnitConnection& c : s.conns) units.emplace_back(c.unit, c.client.get());
  host::RotationOptions options;
  options.batch_size = f.batch_size;
  options.in_flight_per_unit = f.in_flight;
  options.progress = [&progress](const host::RotationProgress& p) { progress.Update(p); };
  const bool json_out = inv.json;
  options.say = [&progress, json_out](std::string_view line) {
    progress.Finish();
    // The rewrap message goes to stdout even with --json (on stderr then),
    // so an operator watching the run sees it exactly.
    (json_out ? std::cerr : std::cout) << line << std::endl;
  };
  options.checkpoint = TestCrashCheckpoint();
  return host::RotationEngine(*s.store, std::move(units), SignerPointers(s.signers), options);
}

json ReportJson(const host::RotationReport& r, const host::RotationJournal& j) {
  return {
      {"phase", std::string(host::RotationPhaseName(j.phase))},
      {"source_vp", ToHex(j.source_vp)},
      {"target_vp", ToHex(j.target_vp)},
      {"keys_total", j.keys_total},
      {"keys_rewrapped", r.keys_rewrapped},
      {"keys_already_done", r.keys_already_done},
      {"stragglers_moved", r.stragglers_moved},
      {"reencrypt_seconds", r.reencrypt_seconds},
      {"reencrypt_keys_per_second",
       r.reencrypt_seconds > 0 ? static_cast<double>(r.keys_rewrapped) / r.reencrypt_seconds : 0.0},
      {"promote_seconds", r.promote_seconds},
      {"finalize_seconds", r.finalize_seconds},
      {"promoted_units", r.promoted_units},
      {"already_promoted_units", r.skipped_units}};
}

int Finish(Invocation& inv, const absl::Status& status, const host::RotationReport& report,
           const host::RotationJournal& journal, std::string_view command) {
  if (inv.json) {
    json doc = ReportJson(report, journal);
    doc["command"] = std::string(command);
    doc["ok"] = status.ok();
    if (!status.ok()) doc["error"] = StatusJson(status);
    std::cout << doc.dump(2) << "\n";
  }
  if (!status.ok()) {
    std::cerr << "hsmctl: " << ReasonOf(status) << ": " << status.message() << "\n";
    std::cerr << "hsmctl: the rotation is journaled at phase "
              << host::RotationPhaseName(journal.phase)
              << "; run hsmctl recover to see the safe next step\n";
    return ExitCodeFor(status);
  }
  if (!inv.json) {
    std::cout << "rotation complete: CURRENT is now " << ToHex(journal.target_vp) << "\n";
    if (report.keys_rewrapped > 0 && report.reencrypt_seconds > 0) {
      std::cout << "re-encrypted " << report.keys_rewrapped << " key(s) in "
                << report.reencrypt_seconds << " s ("
                << static_cast<int64_t>(static_cast<double>(report.keys_rewrapped) /
                                        report.reencrypt_seconds)
                << " keys/s)\n";
    }
  }
  return kExitOk;
}

int RunRotate(Invocation& inv, const RotateFlags& f) {
  auto session = OpenSession(inv);
  if (!session.ok()) return Fail(inv, session.status());
  Session& s = *session;
  auto journal_or = s.store->ReadJournal();
  if (!journal_or.ok()) return Fail(inv, journal_or.status());
  std::optional<host::RotationJournal> journal = *journal_or;
  const bool in_progress = journal.has_value() && journal->phase != host::RotationPhase::kDone;
  if (in_progress && !f.resume) {
    return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kRotationInProgress,
                           StrCat("a rotation is already in progress (phase ",
                                  host::RotationPhaseName(journal->phase),
                                  "); continue it with hsmctl mk rotate --resume, or see hsmctl "
                                  "recover")));
  }
  if (!in_progress && f.resume) {
    return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kNoRotationInProgress,
                           "there is no interrupted rotation to resume"));
  }
  ProgressPrinter progress(inv.json);
  host::RotationEngine engine = MakeEngine(inv, s, f, progress);
  if (!in_progress) {
    auto observed = ObserveAll(s.conns);
    auto findings = host::PrecheckRotation(s.manifest, observed, SignerPointers(s.signers));
    if (findings.empty()) {
      auto counts = s.store->CountByWkid();
      if (!counts.ok()) return Fail(inv, counts.status());
      findings = host::PrecheckKeystore(
          *counts, host::WkidOfVp(observed[0].info->current_register().verification_pattern()),
          host::WkidOfVp(observed[0].info->new_register().verification_pattern()));
    }
    if (!findings.empty()) {
      json list = json::array();
      for (const host::Finding& fd : findings) {
        if (!inv.json) {
          std::cerr << "pre-check failed: " << fd.subject << ": " << fd.check << ": "
                    << ReasonOf(fd.status) << ": " << fd.status.message() << "\n";
        }
        list.push_back(
            {{"subject", fd.subject}, {"check", fd.check}, {"error", StatusJson(fd.status)}});
      }
      if (inv.json) {
        std::cout << json{{"command", "mk rotate"}, {"ok", false}, {"prechecks", list}}.dump(2)
                  << "\n";
      } else {
        std::cerr << "hsmctl: nothing was changed; fix the conditions above and run the command "
                     "again\n";
      }
      const bool unreachable =
          std::any_of(findings.begin(), findings.end(),
                      [](const host::Finding& fd) { return host::IsUnreachable(fd.status); });
      return unreachable ? kExitUnreachable : kExitRefused;
    }
    auto begun = engine.Begin(observed[0].info->current_register().verification_pattern(),
                              observed[0].info->new_register().verification_pattern());
    if (!begun.ok()) return Fail(inv, begun.status());
    journal = *begun;
    const host::RotationJournal& j = *journal;
    if (!inv.json) {
      std::cout << "pre-checks passed on " << s.conns.size() << " unit(s); rotating "
                << j.keys_total << " key(s) from " << ToHex(j.source_vp).substr(0, 16) << " to "
                << ToHex(j.target_vp).substr(0, 16) << "\n";
    }
  } else if (!inv.json) {
    std::cout << "resuming the rotation at phase " << host::RotationPhaseName(journal->phase)
              << " (" << journal->keys_done << " of " << journal->keys_total
              << " key(s) re-encrypted)\n";
  }
  if (s.signers.empty()) {
    return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
                           "set immediate must be signed: pass --sign"));
  }
  host::RotationReport report;
  absl::Status status = engine.Run(*journal, report);
  progress.Finish();
  return Finish(inv, status, report, *journal, "mk rotate");
}

// ReloadParts loads and commits the parts on `units` after checking that
// their XOR has the target VP.
absl::Status ReloadParts(Invocation& inv, Session& s, const host::RotationJournal& journal,
                         const std::vector<std::string>& units,
                         const std::vector<std::string>& files) {
  if (files.size() < 2) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                 "recover --apply needs the same 2 or 3 key part files (--parts) to reload NEW");
  }
  HSMSIM_ASSIGN_OR_RETURN(std::string_view password, GetPassword(inv, "Password: "));
  std::vector<SecretBytes> parts;
  SecretBytes xored(crypto::kKeyPartSize, 0);
  for (const std::string& file : files) {
    HSMSIM_ASSIGN_OR_RETURN(std::string bytes, host::ReadFileBytes(file));
    auto part = crypto::OpenKeyPartFile(bytes, password);
    if (!part.ok()) return WithContext(part.status(), file);
    for (size_t i = 0; i < xored.size(); ++i) xored[i] ^= (*part)[i];
    parts.push_back(std::move(*part));
  }
  const std::string vp = crypto::AsString(crypto::ComputeVerificationPattern(xored));
  if (!ConstantTimeEquals(AsBytes(vp), AsBytes(journal.target_vp))) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kPartsDoNotMatch,
        StrCat("the key parts give VP ", ToHex(vp).substr(0, 16), ", not the rotation's target ",
               ToHex(journal.target_vp).substr(0, 16), "; nothing was loaded"));
  }
  const auto signers = SignerPointers(s.signers);
  for (UnitConnection& c : s.conns) {
    if (std::find(units.begin(), units.end(), c.unit.name) == units.end()) continue;
    HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, c.client->GetInfo());
    if (!info.new_register().verification_pattern().empty() ||
        info.new_register().state() == v1::REGISTER_PARTIALLY_LOADED) {
      v1::Command clear;
      clear.mutable_clear_new_master_key();
      HSMSIM_ASSIGN_OR_RETURN(auto r, host::IssueCommand(*c.client, info, clear, signers));
      info = r.info();
    }
    HSMSIM_ASSIGN_OR_RETURN(info, host::LoadKeyPartsOnUnit(*c.client, info, parts, signers));
    HSMSIM_ASSIGN_OR_RETURN(info,
                            host::CommitNewOnUnit(*c.client, info, journal.target_vp, signers));
    std::cout << "unit " << c.unit.name << ": NEW reloaded and committed, VP "
              << ToHex(info.new_register().verification_pattern()).substr(0, 16) << "\n";
  }
  return absl::OkStatus();
}

int RunRecover(Invocation& inv, const RotateFlags& f) {
  auto session = OpenSession(inv);
  if (!session.ok()) return Fail(inv, session.status());
  Session& s = *session;
  auto journal = s.store->ReadJournal();
  if (!journal.ok()) return Fail(inv, journal.status());
  auto counts = s.store->CountByWkid();
  if (!counts.ok()) return Fail(inv, counts.status());
  auto observed = ObserveAll(s.conns);
  std::vector<host::Finding> findings;
  const bool in_progress = journal->has_value() && (*journal)->phase != host::RotationPhase::kDone;
  if (!in_progress) {
    findings = host::PrecheckRotation(s.manifest, observed, SignerPointers(s.signers));
    // Without --sign the signer check is noise for a read-only look; and
    // with every NEW register empty no rotation is planned, so the NEW
    // pre-checks say nothing about the fleet's health.
    const bool all_new_empty =
        std::all_of(observed.begin(), observed.end(), [](const host::UnitObservation& o) {
          return o.info.ok() && o.info->new_register().state() == v1::REGISTER_EMPTY;
        });
    std::erase_if(findings, [&](const host::Finding& fd) {
      return (s.signers.empty() && fd.check == "signers") ||
             (all_new_empty && fd.check.rfind("new-", 0) == 0);
    });
  }
  host::RecoveryDecision d = host::DecideRecovery(*journal, observed, *counts, findings);

  json units = json::array();
  if (!inv.json) std::cout << "observed:\n";
  for (const host::UnitObservation& o : observed) {
    if (!o.info.ok()) {
      units.push_back(
          {{"unit", o.unit.name}, {"reachable", false}, {"error", StatusJson(o.info.status())}});
      if (!inv.json)
        std::cout << "  " << o.unit.name << ": UNREACHABLE: " << o.info.status().message() << "\n";
      continue;
    }
    auto reg = [](const v1::MasterKeyRegisterInfo& r) {
      return StrCat(
          wire::RegisterStateName(r.state()), " ",
          r.verification_pattern().empty() ? "-" : ToHex(r.verification_pattern()).substr(0, 16));
    };
    units.push_back({{"unit", o.unit.name},
                     {"reachable", true},
                     {"new", reg(o.info->new_register())},
                     {"current", reg(o.info->current_register())},
                     {"old", reg(o.info->old_register())}});
    if (!inv.json) {
      std::cout << "  " << o.unit.name << ": NEW " << reg(o.info->new_register()) << " | CURRENT "
                << reg(o.info->current_register()) << " | OLD " << reg(o.info->old_register())
                << "\n";
    }
  }
  json wk = json::array();
  for (const host::WkidPairCount& c : *counts) {
    wk.push_back(
        {{"wkid", ToHex(c.wkid)}, {"pending_wkid", ToHex(c.pending_wkid)}, {"keys", c.count}});
    if (!inv.json) {
      std::cout << "  keystore: " << c.count << " key(s) under " << ToHex(c.wkid).substr(0, 16)
                << (c.pending_wkid.empty()
                        ? ""
                        : StrCat(", pending under ", ToHex(c.pending_wkid).substr(0, 16)))
                << "\n";
    }
  }
  std::string phase =
      journal->has_value() ? std::string(host::RotationPhaseName((*journal)->phase)) : "NONE";
  if (!inv.json) {
    std::cout << "  journal: " << phase << "\n";
    std::cout << "situation: " << host::RecoverySituationName(d.situation) << ": " << d.observed
              << "\n";
    std::cout << "safe action: " << d.action << "\n";
  }
  json doc{{"command", "recover"},
           {"units", units},
           {"keys_per_wkid", wk},
           {"journal_phase", phase},
           {"situation", std::string(host::RecoverySituationName(d.situation))},
           {"observed", d.observed},
           {"action", d.action},
           {"applied", false}};
  if (!f.apply || d.situation == host::RecoverySituation::kNothingToDo) {
    if (inv.json) std::cout << doc.dump(2) << "\n";
    const bool healthy = d.situation == host::RecoverySituation::kNothingToDo;
    return healthy ? kExitOk : kExitRefused;
  }
  // --apply: perform the one safe action.
  absl::Status status = absl::OkStatus();
  host::RotationReport report;
  host::RotationJournal j = journal->has_value() ? **journal : host::RotationJournal{};
  switch (d.situation) {
    case host::RecoverySituation::kKeysAtRisk:
    case host::RecoverySituation::kFixAndRotateAgain:
      status = Error(absl::StatusCode::kFailedPrecondition, reason::kNothingSafeToApply,
                     StrCat("recover --apply does nothing here: ", d.action));
      break;
    case host::RecoverySituation::kReloadNewRegister:
      status = ReloadParts(inv, s, j, d.units_to_reload, f.parts);
      [[fallthrough]];
    default:
      if (status.ok()) {
        if (s.signers.empty()) {
          status = Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
                         "recover --apply signs set immediate: pass --sign");
          break;
        }
        ProgressPrinter progress(inv.json);
        host::RotationEngine engine = MakeEngine(inv, s, f, progress);
        status = engine.Run(j, report);
        progress.Finish();
      }
  }
  doc["applied"] = status.ok();
  if (inv.json) {
    doc["ok"] = status.ok();
    doc["report"] = ReportJson(report, j);
    if (!status.ok()) doc["error"] = StatusJson(status);
    std::cout << doc.dump(2) << "\n";
    if (!status.ok()) {
      std::cerr << "hsmctl: " << ReasonOf(status) << ": " << status.message() << "\n";
      return ExitCodeFor(status);
    }
  }
  if (!status.ok()) return Fail(inv, status);
  if (!inv.json) std::cout << "applied: rotation is " << host::RotationPhaseName(j.phase) << "\n";
  return kExitOk;
}

}  // namespace

void AddRotationCommands(CLI::App& app, Invocation& inv) {
  auto flags = std::make_shared<RotateFlags>();
  CLI::App* mk = app.get_subcommand("mk");
  CLI::App* rotate = mk->add_subcommand(
      "rotate",
      "Rotate the master key: pre-checks, re-encrypt key storage CURRENT -> NEW on every unit in "
      "parallel, set immediate on every unit, finalize the keystore (journaled; --resume "
      "continues)");
  rotate->add_flag("--resume", flags->resume, "Continue an interrupted rotation from its phase");
  rotate->add_option("--batch-size", flags->batch_size, "Blobs per re-encryption batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  rotate->add_option("--in-flight", flags->in_flight, "Batches in flight per unit")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  AddSignOption(rotate, inv);
  AddUnitOptions(rotate, inv);
  AddJsonOption(rotate, inv);
  rotate->callback(
      [&inv, flags] { inv.action = [&inv, flags] { return RunRotate(inv, *flags); }; });

  CLI::App* recover = app.add_subcommand(
      "recover",
      "After a failed rotation: show every unit's registers, keys per WKID and the journal, and "
      "the one safe action; --apply performs it");
  recover->add_flag("--apply", flags->apply, "Perform the safe action");
  recover
      ->add_option("--parts", flags->parts,
                   "Key part files F1,F2[,F3] of the target key, to reload a lost NEW register")
      ->delimiter(',');
  recover->add_option("--batch-size", flags->batch_size, "Blobs per re-encryption batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  recover->add_option("--in-flight", flags->in_flight, "Batches in flight per unit")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  AddSignOption(recover, inv);
  AddUnitOptions(recover, inv);
  AddJsonOption(recover, inv);
  recover->callback(
      [&inv, flags] { inv.action = [&inv, flags] { return RunRecover(inv, *flags); }; });
}

}  // namespace hsmsim::hsmctl

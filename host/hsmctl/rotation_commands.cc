// hsmctl mk rotate | recover | zeroize.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_join.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "host/blob_precheck.h"
#include "host/fleet_manifest.h"
#include "host/hsmctl/json_reports.h"
#include "host/hsmctl/key_sources.h"
#include "host/hsmctl/keystore_support.h"
#include "host/hsmctl/register_change_support.h"
#include "host/hsmctl/rotation_report.h"
#include "host/interlock.h"
#include "host/key_part_loading.h"
#include "host/master_key_id.h"
#include "host/recovery.h"
#include "host/rotation_abort.h"
#include "host/signed_command.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::hsmctl {
namespace {

struct RotateFlags {
  bool resume = false;
  bool join = false;  // mk rotate --join
  size_t batch_size = 2048;
  int in_flight = 4;
  std::vector<std::string> parts;  // recover --apply only
  bool apply = false;
  bool abort = false;    // mk rotate --abort
  bool status = false;   // mk rotate --status
  bool dry_run = false;  // mk rotate --dry-run, recover --apply --dry-run
};

// Session holds what a rotation or recovery needs.
struct Session {
  host::FleetManifest manifest;
  std::vector<UnitConnection> conns;
  std::unique_ptr<host::Keystore> store;
  std::vector<host::AdminKey> signers;
};

// RequireWholeFleet refuses (UNIT_NOT_SELECTED) `command`, which changes the
// fleet's rotation (resume, abort, recover --apply), while some unit of
// fleet.json is not selected (fleet.json's selection or --unit): finishing
// or abandoning a rotation on part of the fleet leaves the others with
// another CURRENT key, or their pending blobs dropped.
absl::Status RequireWholeFleet(const host::FleetManifest& manifest, std::string_view command) {
  const std::vector<std::string> left_out = manifest.LeftOut();
  if (left_out.empty()) return absl::OkStatus();
  return Error(
      absl::StatusCode::kFailedPrecondition, reason::kUnitNotSelected,
      StrCat(command, " works on every unit of the fleet, but ", absl::StrJoin(left_out, ", "),
             " are not selected: finishing or abandoning a rotation on some units only "
             "leaves the others behind. Nothing was changed. Select every unit (",
             manifest.SelectAdvice(left_out), ")"));
}

// OpenSession connects to the selected units and opens the keystore; with
// `whole_fleet` (RequireWholeFleet for `command`) every unit of fleet.json
// must be selected.
absl::StatusOr<Session> OpenSession(Invocation& inv, bool whole_fleet = false,
                                    std::string_view command = "") {
  Session s;
  HSMSIM_ASSIGN_OR_RETURN(s.signers, LoadSigners(inv));
  HSMSIM_ASSIGN_OR_RETURN(s.conns, ConnectSelected(inv, &s.manifest));
  if (whole_fleet) HSMSIM_RETURN_IF_ERROR(RequireWholeFleet(s.manifest, command));
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

// The operator's interrupt (Ctrl-C: SIGINT, or SIGTERM) during a rotation:
// the first one is noted and the engine stops at its next checkpoint (after
// the batch being stored; batches re-encrypted but not stored yet are
// discarded, and made again on resume), with the journal at the phase
// reached; a second
// one ends hsmctl at once (the signal's default action). Either way nothing
// is lost: recover and mk rotate --resume continue from the journal.
std::atomic<int> g_interrupt_signal{0};

extern "C" void OnInterrupt(int sig) {
  if (g_interrupt_signal.exchange(sig) != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

// InterruptGuard installs OnInterrupt for SIGINT and SIGTERM for its
// lifetime and restores the previous actions after.
class InterruptGuard {
 public:
  InterruptGuard() {
    struct sigaction sa = {};
    sa.sa_handler = OnInterrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~InterruptGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction old_int_ = {};
  struct sigaction old_term_ = {};
};

// InterruptibleCheckpoint wraps `inner` (may be empty): at every checkpoint
// it returns CANCELLED (INTERRUPTED) once the operator interrupted. For
// tests, HSMSIM_TEST_INTERRUPT_AT=POINT[:N] raises SIGINT in hsmctl at that
// checkpoint, as an operator's Ctrl-C would arrive there.
std::function<absl::Status(std::string_view, int64_t)> InterruptibleCheckpoint(
    std::function<absl::Status(std::string_view, int64_t)> inner) {
  std::string test_point;
  int64_t test_at = 0;
  if (const char* spec = std::getenv("HSMSIM_TEST_INTERRUPT_AT"); spec != nullptr) {
    test_point = spec;
    if (size_t colon = test_point.find(':'); colon != std::string::npos) {
      test_at = std::strtoll(test_point.c_str() + colon + 1, nullptr, 10);
      test_point.resize(colon);
    }
  }
  return [inner = std::move(inner), test_point, test_at](std::string_view point,
                                                         int64_t keys_done) -> absl::Status {
    if (inner) HSMSIM_RETURN_IF_ERROR(inner(point, keys_done));
    if (!test_point.empty() && point == test_point && keys_done >= test_at) std::raise(SIGINT);
    const int sig = g_interrupt_signal.load();
    if (sig == 0) return absl::OkStatus();
    return Error(absl::StatusCode::kCancelled, reason::kInterrupted,
                 StrCat("interrupted by ", sig == SIGINT ? "SIGINT (Ctrl-C)" : "SIGTERM", " at ",
                        point, " with ", keys_done, " key(s) re-encrypted; nothing is lost"));
  };
}

host::RotationEngine MakeEngine(Invocation& inv, Session& s, const RotateFlags& f,
                                ProgressPrinter& progress) {
  // Published beside the keystore for hsmctl console (keystore_support.h),
  // by the lead: a joined worker's own keys are not the rotation's.
  if (!f.join) progress.PublishTo(ProgressFilePath(inv, s.manifest));
  std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> units;
  for (UnitConnection& c : s.conns) units.emplace_back(c.unit, c.client.get());
  host::RotationOptions options;
  options.batch_size = f.batch_size;
  options.in_flight_per_unit = f.in_flight;
  options.progress = [&progress](const host::RotationProgress& p) { progress.Update(p); };
  // The rewrap message goes to stdout (to stderr with --json), so an
  // operator watching the run sees it exactly; repeated lines are folded.
  auto folder = std::make_shared<LineFolder>(inv.json ? std::cerr : std::cout);
  options.say = [&progress, folder](std::string_view line) {
    progress.Finish();
    folder->Say(line);
  };
  options.checkpoint = InterruptibleCheckpoint(TestCrashCheckpoint());
  return host::RotationEngine(*s.store, std::move(units), SignerPointers(s.signers), options);
}

// PrecheckFleet runs the rotation's pre-checks on the units (`observed`,
// the selected ones), then on the keystore. Returns the findings (none: a rotation may start) or
// the keystore's error.
absl::StatusOr<std::vector<host::Finding>> PrecheckFleet(
    const Invocation& inv, Session& s, const std::vector<host::UnitObservation>& observed) {
  // The units fleet.json lists but does not select are read too: the
  // UNIT_NOT_SELECTED finding names the instance each reports.
  std::vector<host::Finding> findings = host::PrecheckRotation(
      s.manifest, ObserveInstance(inv, observed, s.manifest), SignerPointers(s.signers));
  if (!findings.empty()) return findings;
  HSMSIM_ASSIGN_OR_RETURN(std::vector<host::WkidPairCount> counts, s.store->CountByWkid());
  return host::PrecheckKeystore(
      counts, host::WkidOfVp(observed[0].info->current_register().verification_pattern()),
      host::WkidOfVp(observed[0].info->new_register().verification_pattern()));
}

// PrecheckStoredBlobs has the units open every blob the rotation will
// re-encrypt, before the journal is written. Returns the finding naming the
// keys whose blobs no unit can open (none when all open), or the keystore's
// or the units' error.
absl::StatusOr<std::vector<host::Finding>> PrecheckStoredBlobs(
    Session& s, const RotateFlags& f, const std::vector<host::UnitObservation>& observed) {
  host::BlobPrecheckOptions options;
  options.batch_size = f.batch_size;
  options.in_flight_per_unit = f.in_flight;
  auto folder = std::make_shared<LineFolder>(std::cerr, "hsmctl: ");
  options.say = [folder](std::string_view line) { folder->Say(line); };
  const auto& info = *observed[0].info;
  HSMSIM_ASSIGN_OR_RETURN(
      host::BlobPrecheckReport checked,
      host::PrecheckBlobs(*s.store, Channels(s.conns),
                          host::WkidOfVp(info.current_register().verification_pattern()),
                          host::WkidOfVp(info.new_register().verification_pattern()), options));
  if (checked.unreadable.count == 0) return std::vector<host::Finding>();
  return std::vector<host::Finding>{host::Finding{
      "keystore", "blobs-readable",
      Error(absl::StatusCode::kFailedPrecondition, reason::kKeysUnreadable,
            StrCat(checked.unreadable.count, " of ", checked.checked,
                   " stored key(s) have blobs no unit can open (", checked.unreadable.List(),
                   "): damaged, or under another key. Nothing was written. Restore their blobs, "
                   "or set them aside with hsmctl keys quarantine NAME... (they keep their "
                   "blobs, and their master key stays held) and run mk rotate again; hsmctl "
                   "recover names them all"))}};
}

// CheckResumeFlag refuses a new rotation while one is in progress, and
// --resume when none is.
absl::Status CheckResumeFlag(const std::optional<host::RotationJournal>& journal, bool resume) {
  const bool in_progress = journal.has_value() && journal->phase != host::RotationPhase::kDone;
  if (in_progress && !resume) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kRotationInProgress,
        StrCat("a rotation is already in progress (phase ", host::RotationPhaseName(journal->phase),
               "); continue it with hsmctl mk rotate --resume, or abandon it with hsmctl mk "
               "rotate --abort while no unit has promoted it (hsmctl recover says which)"));
  }
  if (!in_progress && resume) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoRotationInProgress,
                 "there is no interrupted rotation to resume");
  }
  return absl::OkStatus();
}

// RunAbort abandons the open rotation when no unit has promoted it
// (host::AbortRotation) and reports what it dropped.
int RunAbort(Invocation& inv) {
  auto session = OpenSession(inv, /*whole_fleet=*/true, "mk rotate --abort");
  if (!session.ok()) return Fail(inv, session.status());
  // Never beside a running rotation (it may promote a unit between the look
  // below and the abort): the abort takes the rotation lock too.
  auto lock = session->store->LockRotation(host::RotationLockHolder::Self("mk rotate --abort"));
  if (!lock.ok()) return Fail(inv, lock.status());
  const std::vector<host::UnitObservation> observed = ObserveAll(session->conns);
  auto aborted = host::AbortRotation(*session->store, observed);
  if (!aborted.ok()) return Fail(inv, aborted.status());
  const bool new_holds_a_key =
      std::any_of(observed.begin(), observed.end(), [](const host::UnitObservation& o) {
        return o.info.ok() && o.info->new_register().state() != v1::REGISTER_EMPTY;
      });
  const host::RotationJournal& j = aborted->journal;
  if (inv.json) {
    std::cout << json{{"command", "mk rotate --abort"},
                      {"ok", true},
                      {"source_verification_pattern", ToHex(j.source_vp)},
                      {"target_verification_pattern", ToHex(j.target_vp)},
                      {"phase_abandoned", std::string(host::RotationPhaseName(j.phase))},
                      {"pending_blobs_dropped", aborted->pending_dropped}}
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  std::cout << "rotation from " << host::ShortId(j.source_vp) << " to "
            << host::ShortId(j.target_vp) << " abandoned (it was "
            << host::RotationPhaseName(j.phase) << "): " << aborted->pending_dropped
            << " pending blob(s) dropped, journal closed. Every key keeps its blob under "
            << host::ShortId(j.source_vp) << "; no register was changed"
            << (new_holds_a_key ? " (clear NEW with hsmctl mk clrnew before loading another key)"
                                : "")
            << "\n";
  return kExitOk;
}

// KeepRotationError records what stopped the rotation in the keystore, for
// mk rotate --status (or drops the record when it finished). A keystore
// that cannot take the record is reported on stderr; the rotation's own
// outcome stands.
void KeepRotationError(host::Keystore& store, const RotateReport& report) {
  const absl::Status kept =
      report.status.ok() ? store.ClearRotationError()
                         : store.RecordRotationError(host::RotationError{
                               StrCat(ReasonOf(report.status), ": ", report.status.message()),
                               std::string(host::RotationPhaseName(report.journal.phase)), ""});
  if (!kept.ok()) {
    std::cerr << "hsmctl: could not keep the rotation's outcome in the keystore for mk rotate "
                 "--status: "
              << kept.message() << "\n";
  }
}

// RotationErrorJson is the last rotation error of `e`, or null.
json RotationErrorJson(const std::optional<host::RotationError>& e) {
  if (!e.has_value()) return nullptr;
  return json{{"error", e->error}, {"phase", e->phase}, {"recorded_at", e->recorded_at}};
}

// RotationStatus is what mk rotate --status reads from the keystore.
struct RotationStatus {
  std::optional<host::RotationJournal> journal;
  std::optional<host::RotationLockHolder> holder;
  std::optional<host::RotationError> last_error;
  host::RewrapRangeCounts ranges;  // the rotation workers' ranges (PostgreSQL)
};

// ReadRotationStatus reads the rotation journal (phase, keys done of total,
// source and target VPs, start and last update), who holds the rotation
// lock, the last error and the rotation workers' ranges, from the keystore
// alone: no unit is contacted,
// so it works while a rotation runs and while units are down.
absl::StatusOr<RotationStatus> ReadRotationStatus(const Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, host::LoadFleetManifest(FleetDir(inv)));
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<host::Keystore> store,
                          OpenKeystore(inv, manifest, false));
  RotationStatus s;
  HSMSIM_ASSIGN_OR_RETURN(s.journal, store->ReadJournal());
  HSMSIM_ASSIGN_OR_RETURN(s.holder, store->FindRotationLockHolder());
  HSMSIM_ASSIGN_OR_RETURN(s.last_error, store->ReadRotationError());
  if (s.journal.has_value()) {
    HSMSIM_ASSIGN_OR_RETURN(s.ranges, store->CountRewrapRanges(*s.journal));
  }
  return s;
}

json RotationStatusJson(const RotationStatus& s) {
  json doc{{"command", "mk rotate --status"},
           {"ok", true},
           {"journal_phase", s.journal.has_value()
                                 ? std::string(host::RotationPhaseName(s.journal->phase))
                                 : std::string("NONE")},
           {"lock_holder", nullptr},
           {"last_error", RotationErrorJson(s.last_error)}};
  if (s.journal.has_value()) {
    const host::RotationJournal& j = *s.journal;
    doc["source_vp"] = ToHex(j.source_vp);
    doc["target_vp"] = ToHex(j.target_vp);
    doc["keys_done"] = j.keys_done;
    doc["keys_total"] = j.keys_total;
    doc["started_at"] = j.started_at;
    doc["updated_at"] = j.updated_at;
    doc["ranges"] = json{{"total", s.ranges.total}, {"finished", s.ranges.finished}};
  }
  if (s.holder.has_value()) {
    const host::RotationLockHolder& h = *s.holder;
    doc["lock_holder"] = json{
        {"pid", h.pid}, {"host", h.host}, {"started_at", h.started_at}, {"command", h.command}};
  }
  return doc;
}

// RunRotateStatus prints ReadRotationStatus's findings.
int RunRotateStatus(Invocation& inv) {
  auto status = ReadRotationStatus(inv);
  if (!status.ok()) return Fail(inv, status.status());
  if (inv.json) {
    std::cout << RotationStatusJson(*status).dump(2) << "\n";
    return kExitOk;
  }
  const auto& journal = status->journal;
  const auto& holder = status->holder;
  const auto& last_error = status->last_error;
  if (!journal.has_value()) {
    std::cout << "journal: none (no rotation is journaled in this keystore: none ran, or the last "
                 "one was "
                 "abandoned with mk rotate --abort)\n";
  } else {
    const host::RotationJournal& j = *journal;
    std::cout << "journal: " << host::RotationPhaseName(j.phase) << ", rotation from "
              << ToHex(j.source_vp) << " to " << ToHex(j.target_vp) << "\n"
              << "keys: " << j.keys_done << " of " << j.keys_total << " re-encrypted\n"
              << "started: " << j.started_at << ", last update: " << j.updated_at << "\n";
    if (status->ranges.total > 0) {
      std::cout << "ranges: " << status->ranges.finished << " of " << status->ranges.total
                << " finished (rotation workers' ranges of key ids)\n";
    }
  }
  std::cout << "rotation lock: "
            << (holder.has_value() ? StrCat("held by ", holder->Describe())
                                   : std::string("free (no rotation is running)"))
            << "\n";
  if (last_error.has_value()) {
    std::cout << "last error: " << last_error->error << " (at phase " << last_error->phase << ", "
              << last_error->recorded_at << ")\n";
  }
  return kExitOk;
}

// RefuseIfRotationRunning returns ROTATION_LOCKED when another process
// holds the rotation lock (what the command itself would meet), without
// taking it: --dry-run keeps no lock.
absl::Status RefuseIfRotationRunning(Session& s, std::string_view command) {
  HSMSIM_ASSIGN_OR_RETURN(std::optional<host::RotationLockHolder> holder,
                          s.store->FindRotationLockHolder());
  if (!holder.has_value()) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationLocked,
               StrCat("another process is rotating this keystore: ", holder->Describe(), "; ",
                      command, " would be refused now (nothing was changed)"));
}

// NeedSigners returns NO_SIGNERS, naming the step and the units, when the
// rest of the rotation sets immediate on some unit (signed) and no --sign
// was given; OK when it does not (only finalizing the keystore is left) or
// signers were given.
absl::Status NeedSigners(const Session& s, const host::RotationPlan& plan) {
  if (!s.signers.empty() || plan.units_to_promote.empty()) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
               StrCat("the rotation still sets immediate on unit(s) ",
                      absl::StrJoin(plan.units_to_promote, ", "),
                      ", which must be signed by the signature threshold: pass --sign (nothing "
                      "was changed)"));
}

// RunRotateDryRun shows what mk rotate (or --resume) would do: the
// pre-checks of the units and the keystore, then the steps, units and key
// counts. No unit is changed, no journal written, no lock taken; the blob
// pre-check (it records what it finds) is left to the rotation itself.
int RunRotateDryRun(Invocation& inv, Session& s, const RotateFlags& f) {
  const std::string command = f.resume ? "mk rotate --resume" : "mk rotate";
  if (absl::Status running = RefuseIfRotationRunning(s, command); !running.ok()) {
    return Fail(inv, running);
  }
  auto journal = s.store->ReadJournal();
  if (!journal.ok()) return Fail(inv, journal.status());
  if (absl::Status resume = CheckResumeFlag(*journal, f.resume); !resume.ok()) {
    return Fail(inv, resume);
  }
  auto counts = s.store->CountByWkid();
  if (!counts.ok()) return Fail(inv, counts.status());
  const std::vector<host::UnitObservation> observed = ObserveAll(s.conns);
  host::RotationJournal j = journal->value_or(host::RotationJournal{});
  std::vector<std::string> first;
  if (!f.resume) {
    auto findings = PrecheckFleet(inv, s, observed);
    if (!findings.ok()) return Fail(inv, findings.status());
    if (!findings->empty()) {
      RotateReport refused;
      refused.prechecks = std::move(*findings);
      return RenderRotate(inv, refused);
    }
    auto total = s.store->CountKeys();
    if (!total.ok()) return Fail(inv, total.status());
    j = host::RotationJournal{};
    j.source_vp = observed[0].info->current_register().verification_pattern();
    j.target_vp = observed[0].info->new_register().verification_pattern();
    j.keys_total = *total;
    first.push_back(
        StrCat("have the units open every blob to re-encrypt (not run by --dry-run), "
               "then journal the rotation from ",
               host::ShortId(j.source_vp), " to ", host::ShortId(j.target_vp), " (REENCRYPTING, ",
               j.keys_total, " key(s))"));
  }
  host::RotationPlan plan = host::PlanRotation(j, observed, *counts);
  plan.steps.insert(plan.steps.begin(), first.begin(), first.end());
  if (absl::Status sign = NeedSigners(s, plan); !sign.ok()) return Fail(inv, sign);
  return RenderDryRun(inv, command, j, plan);
}

// RunJoin is mk rotate --join: one more worker for the open rotation's
// re-encryption (RotationEngine::Join). It takes no rotation lock and
// changes no phase; it needs no signer.
int RunJoin(Invocation& inv, const RotateFlags& f) {
  auto session = OpenSession(inv);
  if (!session.ok()) return Fail(inv, session.status());
  Session& s = *session;
  if (auto claims = s.store->OpenRewrapClaims(); !claims.ok()) return Fail(inv, claims.status());
  auto journal = s.store->ReadJournal();
  if (!journal.ok()) return Fail(inv, journal.status());
  if (!journal->has_value() || (*journal)->phase == host::RotationPhase::kDone) {
    return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kNoReencryptionToJoin,
                           StrCat("no rotation is open in keystore ", s.store->location(),
                                  "; start one with hsmctl mk rotate, then join it")));
  }
  auto holder = s.store->FindRotationLockHolder();
  if (!holder.ok()) return Fail(inv, holder.status());
  InterruptGuard interrupts;
  ProgressPrinter progress(inv.json);
  host::RotationEngine engine = MakeEngine(inv, s, f, progress);
  std::ostream& out = inv.json ? std::cerr : std::cout;
  out << "joining the rotation to " << host::ShortId((*journal)->target_vp) << " ("
      << host::RotationPhaseName((*journal)->phase) << ", " << (*journal)->keys_done << " of "
      << (*journal)->keys_total << " keys done) with " << s.conns.size() << " unit(s); "
      << (holder->has_value()
              ? StrCat("the lead is ", (*holder)->Describe())
              : std::string("no hsmctl leads it now (nobody holds the rotation lock): after "
                            "this worker, hsmctl mk rotate --resume finishes it"))
      << "\n";
  host::RotationJournal j = **journal;
  host::RotationReport figures;
  const absl::Status joined = engine.Join(j, figures);
  progress.Finish();
  return RenderJoin(inv, j, figures, joined);
}

int RunRotate(Invocation& inv, const RotateFlags& f) {
  if (f.join) return RunJoin(inv, f);
  if (f.abort) return RunAbort(inv);
  if (f.status) return RunRotateStatus(inv);
  // A new rotation's pre-check names units left out (all-units-selected).
  auto session = OpenSession(inv, f.resume, "mk rotate --resume");
  if (!session.ok()) return Fail(inv, session.status());
  Session& s = *session;
  if (f.dry_run) return RunRotateDryRun(inv, s, f);
  // One rotation of a keystore at a time: held until this process exits.
  auto lock = s.store->LockRotation(
      host::RotationLockHolder::Self(f.resume ? "mk rotate --resume" : "mk rotate"));
  if (!lock.ok()) return Fail(inv, lock.status());
  auto journal = s.store->ReadJournal();
  if (!journal.ok()) return Fail(inv, journal.status());
  if (absl::Status resume = CheckResumeFlag(*journal, f.resume); !resume.ok()) {
    return Fail(inv, resume);
  }
  InterruptGuard interrupts;
  ProgressPrinter progress(inv.json);
  host::RotationEngine engine = MakeEngine(inv, s, f, progress);
  RotateReport report;
  auto observed = ObserveAll(s.conns);
  if (!f.resume) {
    auto findings = PrecheckFleet(inv, s, observed);
    if (!findings.ok()) return Fail(inv, findings.status());
    if (findings->empty()) findings = PrecheckStoredBlobs(s, f, observed);
    if (!findings.ok()) return Fail(inv, findings.status());
    if (!findings->empty()) {
      report.prechecks = std::move(*findings);
      return RenderRotate(inv, report);
    }
    if (g_interrupt_signal.load() != 0) {
      return Fail(inv, Error(absl::StatusCode::kCancelled, reason::kInterrupted,
                             "interrupted during the pre-checks, before the rotation began; "
                             "nothing was changed"));
    }
    auto begun = engine.Begin(observed[0].info->current_register().verification_pattern(),
                              observed[0].info->new_register().verification_pattern());
    if (!begun.ok()) return Fail(inv, begun.status());
    *journal = *begun;
  }
  // --resume signs only when some unit is still to be promoted: finalizing
  // the keystore signs nothing.
  if (absl::Status sign = NeedSigners(s, host::PlanRotation(**journal, observed, {})); !sign.ok()) {
    return Fail(inv, sign);
  }
  RenderRotateStart(inv, **journal, s.conns.size(), f.resume);
  report.journal = **journal;
  report.status = engine.Run(report.journal, report.figures);
  progress.Finish();
  KeepRotationError(*s.store, report);
  return RenderRotate(inv, report);
}

// OpenReloadParts opens the key part files for reloading NEW and checks
// that their XOR has the rotation's target VP (parts on cards are checked
// by the first unit's NEW VP after the load). Loads nothing. Returns
// BAD_PART_COUNT, the files' errors, or PARTS_DO_NOT_MATCH.
absl::StatusOr<KeyParts> OpenReloadParts(Invocation& inv, std::string_view target_vp,
                                         const std::vector<std::string>& files) {
  if (files.size() < 2) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                 "recover --apply needs the same 2 or 3 key part files (--parts) to reload NEW");
  }
  HSMSIM_ASSIGN_OR_RETURN(KeyParts parts, OpenKeyParts(inv, files));
  const std::string vp = parts.expected_vp.value_or(std::string(target_vp));
  if (!ConstantTimeEquals(AsBytes(vp), AsBytes(target_vp))) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kPartsDoNotMatch,
                 StrCat("the key parts give VP ", host::ShortId(vp), ", not the rotation's target ",
                        host::ShortId(target_vp), "; nothing was loaded"));
  }
  return parts;
}

// ReloadParts loads and commits the parts on `units` after checking that
// their XOR has the target VP (OpenReloadParts).
absl::Status ReloadParts(Invocation& inv, Session& s, const host::RotationJournal& journal,
                         const std::vector<std::string>& units,
                         const std::vector<std::string>& files) {
  HSMSIM_ASSIGN_OR_RETURN(KeyParts parts, OpenReloadParts(inv, journal.target_vp, files));
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
    HSMSIM_ASSIGN_OR_RETURN(
        info, host::LoadEncryptedKeyPartsOnUnit(*c.client, info, parts.encryptors, signers));
    if (!ConstantTimeEquals(AsBytes(info.new_register().verification_pattern()),
                            AsBytes(journal.target_vp))) {
      v1::Command clear;
      clear.mutable_clear_new_master_key();
      (void)host::IssueCommand(*c.client, info, clear, signers);
      return Error(
          absl::StatusCode::kFailedPrecondition, reason::kPartsDoNotMatch,
          StrCat("the key parts give VP ",
                 ToHex(info.new_register().verification_pattern()).substr(0, 16), " on unit ",
                 c.unit.name, ", not the rotation's target ",
                 ToHex(journal.target_vp).substr(0, 16), "; NEW was cleared again on that unit"));
    }
    HSMSIM_ASSIGN_OR_RETURN(info,
                            host::CommitNewOnUnit(*c.client, info, journal.target_vp, signers));
    (inv.json ? std::cerr : std::cout)
        << "unit " << c.unit.name << ": NEW reloaded and committed, VP "
        << host::ShortId(info.new_register().verification_pattern()) << "\n";
  }
  return absl::OkStatus();
}

// RecoverPrechecks returns the rotation pre-checks' findings that matter to
// a look at a fleet with no rotation in progress.
std::vector<host::Finding> RecoverPrechecks(const Invocation& inv, Session& s,
                                            const std::vector<host::UnitObservation>& observed) {
  std::vector<host::Finding> findings = host::PrecheckRotation(
      s.manifest, ObserveInstance(inv, observed, s.manifest), SignerPointers(s.signers));
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
  return findings;
}

// LookAtFleet reads the journal, the keystore's counts and every unit, and
// decides the safe action. Returns the keystore's error otherwise.
absl::Status LookAtFleet(const Invocation& inv, Session& s, RecoverReport& r) {
  HSMSIM_ASSIGN_OR_RETURN(r.journal, s.store->ReadJournal());
  HSMSIM_ASSIGN_OR_RETURN(r.counts, s.store->CountByWkid());
  r.observed = ObserveAll(s.conns);
  std::vector<host::Finding> findings;
  if (!r.journal.has_value() || r.journal->phase == host::RotationPhase::kDone) {
    findings = RecoverPrechecks(inv, s, r.observed);
  }
  r.decision = host::DecideRecovery(r.journal, r.observed, r.counts, findings);
  HSMSIM_ASSIGN_OR_RETURN(host::UnreadableKeys unreadable, host::ReadUnreadableKeys(*s.store));
  host::NoteUnreadableKeys(unreadable, r.decision);
  return absl::OkStatus();
}

// Reloads returns whether the decision's action reloads NEW on some units.
bool Reloads(const host::RecoveryDecision& d) {
  return !d.units_to_reload.empty() &&
         (d.situation == host::RecoverySituation::kSetImmediateUnfinished ||
          d.situation == host::RecoverySituation::kReloadNewRegister);
}

// CheckSafeAction returns why recover --apply would be refused, before
// anything is changed: FAILED_PRECONDITION (NOTHING_SAFE_TO_APPLY) when the
// safe action is not hsmctl's to take, (BAD_PART_COUNT) without the key parts
// a reload needs, (NO_SIGNERS) without --sign when the next step signs (a
// reload, a set immediate: the error names it), PERMISSION_DENIED
// (INSUFFICIENT_SIGNATURES) when a reload's commit needs more signatures
// than given. OK otherwise; finalizing the keystore needs no --sign.
absl::Status CheckSafeAction(const Session& s, const RotateFlags& f, const RecoverReport& r) {
  const host::RecoveryDecision& d = r.decision;
  const bool rotating = r.journal.has_value() && r.journal->phase != host::RotationPhase::kDone;
  if (d.situation == host::RecoverySituation::kKeysAtRisk ||
      d.situation == host::RecoverySituation::kFixAndRotateAgain ||
      d.situation == host::RecoverySituation::kUnitsUnreachable ||
      (d.situation == host::RecoverySituation::kKeysUnreadable && !rotating)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNothingSafeToApply,
                 StrCat("recover --apply does nothing here: ", d.action));
  }
  if (Reloads(d) && f.parts.empty()) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
        StrCat("recover --apply needs the key parts of ", host::ShortId(d.target_vp),
               " (--parts F1,F2[,F3]) to reload NEW on ", absl::StrJoin(d.units_to_reload, ", "),
               "; nothing was changed",
               d.abort_possible ? "; if they are gone, abandon the rotation instead: hsmctl mk "
                                  "rotate --abort (no unit has promoted it)"
                                : ""));
  }
  if (s.signers.empty() && Reloads(d)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
                 StrCat("recover --apply reloads NEW on ", absl::StrJoin(d.units_to_reload, ", "),
                        " (clear, load the parts, commit), which must be signed by the "
                        "signature threshold: pass --sign; nothing was changed"));
  }
  if (s.signers.empty() && !d.units_to_promote.empty()) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
        StrCat("recover --apply sets immediate on ", absl::StrJoin(d.units_to_promote, ", "),
               ", which must be signed by the signature threshold: pass --sign; nothing "
               "was changed"));
  }
  if (Reloads(d) && !f.parts.empty()) {
    return host::CheckReloadSignatures(r.observed, d.units_to_reload, SignerPointers(s.signers));
  }
  return absl::OkStatus();
}

// PlanSafeAction fills r.plan with what --apply would do (recover --apply
// --dry-run): journal an unfinished set immediate, reload NEW (the parts are
// opened and checked against the target VP, never loaded), then the rest of
// the rotation. Changes nothing. Returns the keystore's or the parts' error.
absl::Status PlanSafeAction(Invocation& inv, Session& s, const RotateFlags& f, RecoverReport& r) {
  const host::RecoveryDecision& d = r.decision;
  host::RotationJournal j = r.journal.value_or(host::RotationJournal{});
  std::vector<std::string> first;
  if (d.situation == host::RecoverySituation::kSetImmediateUnfinished) {
    j = host::RotationJournal{};
    j.source_vp = d.source_vp;
    j.target_vp = d.target_vp;
    HSMSIM_ASSIGN_OR_RETURN(j.keys_total, s.store->CountKeys());
    first.push_back(StrCat("journal the unfinished set immediate as a rotation from ",
                           host::ShortId(d.source_vp), " to ", host::ShortId(d.target_vp)));
  }
  if (Reloads(d) && !f.parts.empty()) {
    HSMSIM_ASSIGN_OR_RETURN(KeyParts parts, OpenReloadParts(inv, j.target_vp, f.parts));
    first.push_back(StrCat("reload NEW on unit(s) ", absl::StrJoin(d.units_to_reload, ", "),
                           " from the ", parts.sources.size(), " key part(s) given (they give ",
                           parts.expected_vp ? host::ShortId(*parts.expected_vp)
                                             : std::string("a VP the units compute"),
                           "): clear NEW, load the parts, commit (signed)"));
  }
  r.plan = host::PlanRotation(j, r.observed, r.counts,
                              Reloads(d) ? d.units_to_reload : std::vector<std::string>{});
  r.plan.steps.insert(r.plan.steps.begin(), first.begin(), first.end());
  r.applied_journal = j;
  return absl::OkStatus();
}

// ApplySafeAction performs the decision's one safe action (journal an
// unfinished set immediate as a rotation, reload NEW where it was lost,
// then continue the rotation) and fills the report's journal and figures;
// with --dry-run it only plans it (PlanSafeAction). Returns CheckSafeAction's
// refusal, or the error that stopped it.
absl::Status ApplySafeAction(Invocation& inv, Session& s, const RotateFlags& f, RecoverReport& r) {
  const host::RecoveryDecision& d = r.decision;
  r.applied_journal = r.journal.value_or(host::RotationJournal{});
  HSMSIM_RETURN_IF_ERROR(CheckSafeAction(s, f, r));
  if (f.dry_run) return PlanSafeAction(inv, s, f, r);
  const bool unfinished_setimm = d.situation == host::RecoverySituation::kSetImmediateUnfinished;
  InterruptGuard interrupts;
  ProgressPrinter progress(inv.json);
  host::RotationEngine engine = MakeEngine(inv, s, f, progress);
  if (unfinished_setimm) {
    // Journal the unfinished set immediate as a rotation, so that every
    // later step (and every register change) knows it.
    HSMSIM_ASSIGN_OR_RETURN(r.applied_journal, engine.Begin(d.source_vp, d.target_vp));
    (inv.json ? std::cerr : std::cout)
        << "journaled the unfinished set immediate as a rotation from "
        << host::ShortId(d.source_vp) << " to " << host::ShortId(d.target_vp) << "\n";
  }
  if (Reloads(d)) {
    HSMSIM_RETURN_IF_ERROR(ReloadParts(inv, s, r.applied_journal, d.units_to_reload, f.parts));
  }
  absl::Status status = engine.Run(r.applied_journal, r.figures);
  progress.Finish();
  return status;
}

int RunRecover(Invocation& inv, const RotateFlags& f) {
  auto session = OpenSession(inv, f.apply, "recover --apply");
  if (!session.ok()) return Fail(inv, session.status());
  RecoverReport report;
  // --apply continues the rotation, so it takes the rotation lock before it
  // looks; a plain look says when a rotation is running under it.
  std::unique_ptr<host::RotationLock> lock;
  if (f.apply && f.dry_run) {
    // --dry-run keeps no lock, but says when --apply would meet one.
    if (absl::Status running = RefuseIfRotationRunning(*session, "recover --apply");
        !running.ok()) {
      return Fail(inv, running);
    }
  } else if (f.apply) {
    auto locked = session->store->LockRotation(host::RotationLockHolder::Self("recover --apply"));
    if (!locked.ok()) return Fail(inv, locked.status());
    lock = std::move(*locked);
  } else if (auto holder = session->store->FindRotationLockHolder(); holder.ok() && *holder) {
    std::cerr << "hsmctl: note: a rotation is running now (" << (*holder)->Describe()
              << "); what follows may change under it\n";
  }
  if (absl::Status s = LookAtFleet(inv, *session, report); !s.ok()) return Fail(inv, s);
  RenderRecoverLook(inv, report);
  const host::RecoverySituation situation = report.decision.situation;
  if (f.apply && situation != host::RecoverySituation::kNothingToDo &&
      situation != host::RecoverySituation::kReadyToRotate) {
    report.apply_attempted = true;
    report.dry_run = f.dry_run;
    report.status = ApplySafeAction(inv, *session, f, report);
  }
  return RenderRecover(inv, report);
}

}  // namespace

absl::StatusOr<json> RotationStatusReport(const Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(RotationStatus status, ReadRotationStatus(inv));
  return RotationStatusJson(status);
}

absl::StatusOr<json> RecoverLookReport(Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(Session session, OpenSession(inv));
  RecoverReport report;
  HSMSIM_RETURN_IF_ERROR(LookAtFleet(inv, session, report));
  return RecoverJson(report);
}

void AddRotationCommands(CLI::App& app, Invocation& inv) {
  auto flags = std::make_shared<RotateFlags>();
  CLI::App* mk = app.get_subcommand("mk");
  CLI::App* rotate = mk->add_subcommand(
      "rotate",
      "Rotate the master key: pre-checks, re-encrypt key storage CURRENT -> NEW on every unit in "
      "parallel, set immediate on every unit, finalize the keystore (journaled; --resume "
      "continues)");
  CLI::Option* resume = rotate->add_flag("--resume", flags->resume,
                                         "Continue an interrupted rotation from its phase");
  rotate
      ->add_flag("--join", flags->join,
                 "Add this hsmctl as one more worker to the open rotation's re-encryption (on "
                 "this or another machine; PostgreSQL keystore): claim ranges of keys until none "
                 "is left, change no phase; the hsmctl that started it promotes")
      ->excludes(resume);
  rotate
      ->add_flag("--abort", flags->abort,
                 "Abandon the open rotation while no unit has promoted it: drop the pending "
                 "blobs and close the journal (CURRENT and every key's blob unchanged)")
      ->excludes(resume)
      ->excludes("--join");
  rotate
      ->add_flag("--status", flags->status,
                 "Show the rotation journal (phase, keys done of total, VPs, start, last "
                 "update) and who holds the rotation lock; contacts no unit")
      ->excludes(resume)
      ->excludes("--abort")
      ->excludes("--join");
  rotate
      ->add_flag("--dry-run", flags->dry_run,
                 "Show what would be done (pre-checks, steps, units, key counts) and change "
                 "nothing: no unit, no journal, no lock")
      ->excludes("--abort")
      ->excludes("--status")
      ->excludes("--join");
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
  CLI::Option* apply = recover->add_flag("--apply", flags->apply, "Perform the safe action");
  recover
      ->add_flag("--dry-run", flags->dry_run,
                 "With --apply: show what it would do (steps, units, key counts) and change "
                 "nothing: no unit, no journal, no lock")
      ->needs(apply);
  recover
      ->add_option("--parts", flags->parts,
                   "Key parts P1,P2[,P3] of the target key (files or pkcs11: URIs), to reload a "
                   "lost NEW register")
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

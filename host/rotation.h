// Master key rotation of a fleet and its key storage (docs/rotation.md).
//
// The rotation runs in journaled phases (see RotationPhase):
//   pre-checks -> REENCRYPTING (key storage CURRENT -> NEW, fanned out across
//   every unit, several batches in flight per unit) -> REENCRYPTED (prints
//   kRewrapDoneMessage) -> PROMOTING (set immediate on every unit not yet
//   promoted) -> FINALIZING (pending blobs become the blobs; keys still under
//   the old key are re-encrypted OLD -> CURRENT) -> DONE.
// Every step can be interrupted at any point and resumed: re-encryption
// skips keys that already have a pending blob under NEW, promotion skips
// units already promoted, finalization is idempotent.
//
// Thread-safety: a RotationEngine is used from one thread; it drives the
// unit channels' own threads.
#ifndef HSMSIM_HOST_ROTATION_H_
#define HSMSIM_HOST_ROTATION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/admin_key_file.h"
#include "host/batch_fanout.h"
#include "host/fleet_manifest.h"
#include "host/keystore.h"
#include "host/master_key_id.h"
#include "host/rewrap_batch.h"
#include "host/rewrap_prefetch.h"
#include "host/unit_channel.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

// Printed, exactly, when the whole key storage is re-encrypted under NEW.
inline constexpr char kRewrapDoneMessage[] =
    "KMS CRK rewrap successful, waiting on cryptounit-mk-setimm.";

// What was observed of one selected unit.
struct UnitObservation {
  FleetUnit unit;
  absl::StatusOr<v1::GetInfoResponse> info;
};

// A failed pre-check: which unit (or "keystore"/"fleet"), which condition,
// and a status whose message names both.
struct Finding {
  std::string subject;
  std::string check;
  absl::Status status;
};

// PrecheckRotation checks the initial conditions of a rotation (the seed
// page's list): every unit of the instance selected and of that instance,
// reachable, none in imprint mode, equal signature thresholds, a common set
// of administrators large enough for the threshold (and the signers among
// them), every CURRENT VALID with one VP, every NEW FULL_COMMITTED with one
// VP different from CURRENT's. Returns no findings when a rotation may start.
// `units` are the selected units' observations; it may also hold those of
// units fleet.json lists but does not select (unit.selected false, as
// hsmctl's ObserveInstance reads them): they are not checked, and only name
// the instance the unit reports in its UNIT_NOT_SELECTED finding.
std::vector<Finding> PrecheckRotation(const FleetManifest& manifest,
                                      const std::vector<UnitObservation>& units,
                                      const std::vector<const AdminKey*>& signers);

// PrecheckKeystore checks that every stored key is under `source_wkid` or
// `target_wkid` (a key under any other master key would be stranded).
std::vector<Finding> PrecheckKeystore(const std::vector<WkidPairCount>& counts,
                                      std::string_view source_wkid, std::string_view target_wkid);

// Observe reads every selected unit's state.
std::vector<UnitObservation> Observe(const FleetManifest& manifest,
                                     const std::vector<UnitChannel*>& clients);

// How far a unit is in a rotation from `source_vp` to `target_vp`.
enum class UnitRotationState {
  kReady,         // NEW FULL_COMMITTED target, CURRENT VALID source
  kPromoted,      // CURRENT VALID target
  kNewLost,       // CURRENT source, but NEW empty, uncommitted or another key
  kUnrecognized,  // CURRENT is neither key
  kUnreachable,
};
std::string_view UnitRotationStateName(UnitRotationState state);
UnitRotationState ClassifyUnit(const UnitObservation& unit, std::string_view source_vp,
                               std::string_view target_vp);

// SplitCurrent describes answering units whose VALID CURRENT registers hold
// different master keys. In the shape an unfinished set immediate leaves
// (outside a journaled rotation: a mk setimm that reached some units only),
// `source_vp` is the key the units not yet promoted hold in CURRENT and
// `target_vp` the key the promoted ones do (32-byte VPs). Both are empty
// when the split has another shape (three keys or more, or no unit shows
// which way the set immediate went).
struct SplitCurrent {
  std::string source_vp;
  std::string target_vp;
  // "NAME CURRENT VP <short>" per answering unit with a VALID CURRENT.
  std::vector<std::string> units;

  bool recognized() const { return !target_vp.empty(); }
};

// FindSplitCurrent returns std::nullopt when every answering unit's VALID
// CURRENT holds the same key (or none is VALID). Otherwise it returns the
// split; it is recognized when the CURRENT registers hold exactly two keys
// S and T and some unit shows the direction S -> T (CURRENT T with OLD S,
// or CURRENT S with T committed in NEW) and none shows T -> S.
std::optional<SplitCurrent> FindSplitCurrent(const std::vector<UnitObservation>& units);

struct RotationProgress {
  int64_t done = 0;
  int64_t total = 0;
  double seconds = 0;
  std::string phase;
  // While re-encrypting: keys each unit (by name) re-encrypted in this run.
  std::map<std::string, int64_t> keys_per_unit = {};
};

struct RotationOptions {
  size_t batch_size = 2048;
  int in_flight_per_unit = kDefaultInFlightPerLane;
  std::function<void(const RotationProgress&)> progress;  // may be empty
  std::function<void(std::string_view)> say;              // lines for the operator
  // Called at every phase boundary and after each stored re-encryption
  // batch with a point name: "journal-written" (by the caller that writes
  // the journal), "reencrypt-batch-stored" (with keys_done), "reencrypted",
  // "promoting", "unit-promoted" (per unit), "promoted", "finalize-chunk",
  // "done". A non-OK status stops the engine right there, as if hsmctl died:
  // the engine returns it without another write (batches in flight are
  // discarded). Tests use it to kill hsmctl at an exact point (see
  // HSMSIM_TEST_CRASH_AT in docs/reliability.md) or to stop an in-process
  // engine (tests/host/rotation_engine_test.cc). May be empty.
  std::function<absl::Status(std::string_view point, int64_t keys_done)> checkpoint;
  // Re-encryption reads the keystore and stores its batches on threads of
  // their own (host/rewrap_prefetch.h, host/pending_writer.h; the
  // "reencrypt-batch-stored" checkpoint then runs on the writer's thread,
  // a few batches behind the fan-out). false: both between batches on the
  // calling thread, each checkpoint in step with the fan-out (tests that
  // act on a unit at a checkpoint and expect the fan-out to see it).
  bool keystore_threads = true;
  // Keys ids per range that rotation workers claim (RewrapClaims) on a
  // keystore they share; 0: 8 batches' worth (8 x batch_size).
  int64_t range_keys = 0;
};

// Figures of one run, for the report and for benchmarks.
struct RotationReport {
  int64_t keys_rewrapped = 0;
  int64_t keys_already_done = 0;
  int64_t stragglers_moved = 0;
  int64_t ranges_claimed = 0;  // ranges of key ids this worker claimed (RewrapClaims)
  double reencrypt_seconds = 0;
  double promote_seconds = 0;
  double finalize_seconds = 0;
  std::vector<std::string> promoted_units;
  std::vector<std::string> skipped_units;  // already promoted
};

class RotationEngine {
 public:
  // `units` are the selected units (their channels outlive the engine);
  // `signers` sign SET_IMMEDIATE.
  RotationEngine(Keystore& keystore, std::vector<std::pair<FleetUnit, UnitChannel*>> units,
                 std::vector<const AdminKey*> signers, RotationOptions options);

  // Begin starts a rotation from `source_vp` to `target_vp`, once the
  // pre-checks passed: writes the journal (REENCRYPTING, keys_total = the
  // keystore's count) and passes the "journal-written" checkpoint. Returns
  // the journal, or the keystore's error, or the checkpoint's status.
  absl::StatusOr<RotationJournal> Begin(std::string source_vp, std::string target_vp);

  // Reencrypt re-encrypts every key under the journal's source key that has
  // no pending blob under its target yet and is not quarantined, using the
  // units in kReady state, then moves the journal to REENCRYPTED and says
  // kRewrapDoneMessage. A batch a unit refuses as too large (FRAME_TOO_LARGE)
  // is sent again in halves. Returns UNAVAILABLE (NO_UNIT_AVAILABLE) when
  // every unit stopped answering, FAILED_PRECONDITION (KEYS_NOT_REENCRYPTED)
  // naming keys whose blobs a unit refused (recorded in the keystore:
  // Keystore::RecordBlobProblems); the journal then stays REENCRYPTING. When
  // every unit already promoted the target (set immediate ran early), moves
  // the journal to FINALIZING instead: finalization re-encrypts the rest
  // OLD -> CURRENT.
  absl::Status Reencrypt(RotationJournal& journal, RotationReport& report);

  // Promote issues SET_IMMEDIATE to every unit in kReady state and skips
  // those already promoted; refuses (FAILED_PRECONDITION, NEW_REGISTER_LOST)
  // without touching any unit when one is kNewLost or kUnrecognized, and
  // (UNAVAILABLE) when one is unreachable. Moves the journal to FINALIZING
  // when every unit is promoted.
  absl::Status Promote(RotationJournal& journal, RotationReport& report);

  // Finalize makes every pending blob the key's blob, re-encrypts keys still
  // under the source key OLD -> CURRENT (UpgradeStragglers: a key a unit
  // refuses stays under OLD and is reported; no unit left is UNAVAILABLE
  // NO_UNIT_AVAILABLE and the journal stays FINALIZING), and marks the
  // journal DONE.
  absl::Status Finalize(RotationJournal& journal, RotationReport& report);

  // Run continues a journaled rotation from its phase to DONE.
  absl::Status Run(RotationJournal& journal, RotationReport& report);

  // Join takes part in the re-encryption of rotation `journal` as one more
  // worker (hsmctl mk rotate --join), beside the hsmctl that leads it (mk
  // rotate, which changes the phases): it claims ranges of keys
  // (Keystore::OpenRewrapClaims), re-encrypts them on the units in kReady
  // state and stores them (Keystore::StorePendingFor), until every range is
  // finished; it never writes the journal's phase. The
  // "reencrypt-batch-stored" checkpoint counts this worker's keys only.
  // Returns OK also when the journal moved on while its last batches were
  // in flight (those were not stored: the lead's last pass re-encrypts such
  // keys); `journal` is then the journal now. Errors: FAILED_PRECONDITION
  // (NO_REENCRYPTION_TO_JOIN) unless `journal` is REENCRYPTING;
  // FAILED_PRECONDITION (KEYSTORE_NOT_SHARED) for a keystore without claims
  // (SQLite); UNAVAILABLE or NO_UNIT_AVAILABLE and KEYS_NOT_REENCRYPTED as
  // Reencrypt; the keystore's error.
  absl::Status Join(RotationJournal& journal, RotationReport& report);

 private:
  // Who re-encrypts: the only worker (a keystore without claims, or
  // keystore_threads false), the lead of several (claiming ranges, then a
  // last pass over every key still to do: kSweep), or a joined worker.
  enum class WorkerRole { kOnly, kLead, kSweep, kJoined };
  // RefreshKeysDone takes keys_done from the stored journal when it is
  // still `journal`'s rotation (other workers' keys count too).
  void RefreshKeysDone(RotationJournal& journal);
  bool shared_keystore_ = false;  // the last ReencryptOn claimed ranges
  // OpenClaiming opens the claims of a shared keystore and plans its ranges
  // (RewrapClaims::Plan); std::nullopt for kOnly, and for kLead on a
  // keystore without claims. Errors: the keystore's.
  absl::StatusOr<std::optional<RewrapClaiming>> OpenClaiming(const RotationJournal& journal,
                                                             WorkerRole role);
  std::vector<UnitObservation> ObserveUnits();
  // ReadyUnits returns the channels of the units in kReady state and says
  // why each other unit takes no part.
  // When none is ready and a unit did not answer, `*unreachable` gets that
  // unit's transport error (it might have taken part).
  std::vector<UnitChannel*> ReadyUnits(const RotationJournal& journal, absl::Status* unreachable);
  // EveryUnitPromoted is true when every unit answers with the journal's
  // target key in CURRENT.
  bool EveryUnitPromoted(const RotationJournal& journal);
  // ReencryptOn runs the re-encryption fan-out over `ready`.
  absl::Status ReencryptOn(const std::vector<UnitChannel*>& ready, RotationJournal& journal,
                           RotationReport& report, FailedKeys& failed, WorkerRole role);
  // NoUnitError explains why no unit can re-encrypt (`unreachable`: a
  // unit's transport error, or OK).
  absl::Status NoUnitError(const absl::Status& unreachable);
  // StoreRewrapped stores one batch as pending and passes its checkpoint.
  absl::Status StoreRewrapped(const std::vector<RewrappedKey>& rewrapped, RotationJournal& journal,
                              RotationReport& report);
  absl::Status MoveStragglers(std::string_view source_wkid, std::string_view target_wkid,
                              RotationReport& report);
  // SayQuarantined tells the operator how many quarantined keys stay under
  // the rotation's source key. Returns the keystore's error.
  absl::Status SayQuarantined(std::string_view source_wkid);
  void ReportProgress(const RotationJournal& journal, double seconds, std::string_view phase);
  std::map<std::string, int64_t> keys_per_unit_;  // for RotationProgress
  void Say(std::string_view line);
  absl::Status Checkpoint(std::string_view point, int64_t keys_done);

  Keystore& keystore_;
  std::vector<std::pair<FleetUnit, UnitChannel*>> units_;
  std::vector<const AdminKey*> signers_;
  RotationOptions options_;
};

// WkidOfVp returns the first 16 bytes of a 32-byte VP.
inline std::string WkidOfVp(std::string_view vp) { return std::string(vp.substr(0, Wkid::kSize)); }

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_ROTATION_H_

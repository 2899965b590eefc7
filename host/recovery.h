// Recovery from a rotation that failed half way: observe every unit's
// registers, the keystore's keys per WKID and the journal, and choose the
// one safe action (docs/rotation.md: the vendor's troubleshooting page,
// situation by situation).
//
// DecideRecovery is a pure function of the observation so that every row of
// the table is tested without processes.
#ifndef HSMSIM_HOST_RECOVERY_H_
#define HSMSIM_HOST_RECOVERY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/keystore.h"
#include "host/rotation.h"

namespace hsmsim::host {

enum class RecoverySituation {
  kNothingToDo,             // no rotation in progress, fleet consistent, NEW empty
  kReadyToRotate,           // no rotation in progress, NEW committed everywhere: mk rotate next
  kFixAndRotateAgain,       // error before anything changed (pre-check, unit of another id)
  kUnitsUnreachable,        // a unit does not answer: start it, nothing else can be judged
  kReencryptionUnfinished,  // run rotate again; it skips blobs already under NEW
  kSetImmediateAll,         // re-encryption finished; promote every unit
  kSetImmediateRest,        // some units already promoted; promote the rest only
  kSetImmediateUnfinished,  // no rotation journaled, but a set immediate reached some units only
  kReloadNewRegister,       // a unit's NEW was lost or differs: reload the same parts first
  kFinalizeKeystore,        // every unit promoted; finalize the keystore
  kKeysAtRisk,              // keys under a WKID no unit holds: stop, clear nothing
  kKeysUnreadable,          // blobs no unit can open: restore them or quarantine them
};
std::string_view RecoverySituationName(RecoverySituation s);

struct RecoveryDecision {
  RecoverySituation situation = RecoverySituation::kNothingToDo;
  // What was seen, in a sentence.
  std::string observed;
  // The one safe action, as an operator instruction.
  std::string action;
  std::vector<std::string> units_to_promote;
  std::vector<std::string> units_promoted;
  std::vector<std::string> units_to_reload;
  // Units that did not answer (UNITS_UNREACHABLE names each with its
  // endpoint and error in `observed`).
  std::vector<std::string> unreachable_units;
  // The rotation's source and target VPs (32 bytes each): the journal's, or
  // for SET_IMMEDIATE_UNFINISHED the keys of the unfinished set immediate
  // (FindSplitCurrent), which recover --apply journals as a rotation; for
  // READY_TO_ROTATE the CURRENT and committed NEW mk rotate would rotate
  // between (units_to_promote then lists every unit).
  std::string source_vp;
  std::string target_vp;
  // True when a rotation is open and no unit has promoted its target: the
  // rotation may be abandoned (hsmctl mk rotate --abort, host/rotation_abort.h).
  bool abort_possible = false;
  // WKID (hex) -> number of keys no unit can use.
  std::vector<std::pair<std::string, int64_t>> keys_at_risk;
  // Keys whose blob a unit could not open or re-encrypt (not quarantined),
  // "NAME (REASON)", the first kMaxNamedFailedKeys; and how many in all.
  std::vector<std::string> unreadable_keys;
  int64_t unreadable_count = 0;
  int64_t quarantined_count = 0;
};

// What the keystore recorded of blobs units could not open
// (Keystore::ReadProblemKeys), for NoteUnreadableKeys.
struct UnreadableKeys {
  int64_t count = 0;               // not quarantined
  std::vector<std::string> named;  // "NAME (REASON)", the first kMaxNamedFailedKeys
  int64_t quarantined = 0;
};

// DecideRecovery chooses the safe action from the journal (none when no
// rotation was ever journaled), every selected unit's observation, the
// keystore's key counts per (WKID, pending WKID), and `findings`: the
// rotation pre-check's findings when no rotation is in progress (they make
// kFixAndRotateAgain), empty otherwise. A unit that does not answer makes
// kUnitsUnreachable (naming it, its endpoint and its error), whatever the
// journal says. With no rotation in progress, no finding and every unit's
// NEW FULL_COMMITTED with one key other than CURRENT (and no stored key
// under a third key), the situation is kReadyToRotate. With no rotation in progress and
// the units' CURRENT registers split the way an unfinished set immediate
// leaves them (FindSplitCurrent), the situation is SET_IMMEDIATE_UNFINISHED:
// recover --apply journals a rotation from the split's source to its target
// and finishes it.
RecoveryDecision DecideRecovery(const std::optional<RotationJournal>& journal,
                                const std::vector<UnitObservation>& units,
                                const std::vector<WkidPairCount>& counts,
                                const std::vector<Finding>& findings);

// NoteUnreadableKeys adds the keys units could not open to a decision of
// DecideRecovery: when it would have the operator run the re-encryption again
// (REENCRYPTION_UNFINISHED), do nothing or rotate (READY_TO_ROTATE: the
// rotation's blob pre-check would refuse), the situation becomes
// KEYS_UNREADABLE, naming the keys and the operator's choice (restore their
// blobs, or quarantine them), since running it again cannot succeed. Every
// other situation is left as it is, with the keys listed.
void NoteUnreadableKeys(const UnreadableKeys& keys, RecoveryDecision& d);

// ReadUnreadableKeys pages through Keystore::ReadProblemKeys: the keys a
// unit could not open and that are not quarantined (counted, the first
// kMaxNamedFailedKeys named "NAME (REASON)"), and the quarantined ones
// (counted). Returns the keystore's error.
absl::StatusOr<UnreadableKeys> ReadUnreadableKeys(Keystore& store);

// What the rest of a rotation would do, for --dry-run (hsmctl mk rotate
// --dry-run, recover --apply --dry-run). Computing it changes nothing.
struct RotationPlan {
  std::vector<std::string> steps;               // in order, each a sentence for the operator
  std::vector<std::string> units_reencrypting;  // re-encrypt (CURRENT source, NEW target)
  std::vector<std::string> units_to_promote;    // set immediate, signed
  std::vector<std::string> units_promoted;      // already promoted, left as they are
  int64_t keys_to_reencrypt = 0;  // under the source key with no pending blob under the target
  int64_t pending_blobs = 0;      // pending under the target, become the keys' blobs
  int64_t keys_total = 0;         // the journal's
};

// PlanRotation returns the steps of the rotation `journal` describes from
// its phase to DONE (a rotation about to begin: phase REENCRYPTING, no key
// done), from each selected unit's observation and the keystore's counts
// per (WKID, pending WKID). Units named in `reloaded` count as ready (recover
// --apply reloads their NEW first). units_to_promote is empty once only
// finalizing the keystore is left: nothing more is signed.
RotationPlan PlanRotation(const RotationJournal& journal, const std::vector<UnitObservation>& units,
                          const std::vector<WkidPairCount>& counts,
                          const std::vector<std::string>& reloaded = {});

// CheckReloadSignatures returns OK when `signers` are, on every unit of
// `units` named in `reload`, at least its signature threshold of its
// administrators: reloading a lost NEW ends with a commit only that many
// signatures make, so too few must be refused before any part is loaded.
// Else FAILED_PRECONDITION (INSUFFICIENT_SIGNATURES) naming the first such
// unit, its threshold, and the signatures given (how many, and which are its
// administrators). A unit that did not answer is not judged here.
absl::Status CheckReloadSignatures(const std::vector<UnitObservation>& units,
                                   const std::vector<std::string>& reload,
                                   const std::vector<const AdminKey*>& signers);

// HeldWkids returns the WKIDs (16 bytes) held by reachable units in any
// register holding a whole key.
std::vector<std::string> HeldWkids(const std::vector<UnitObservation>& units);

// KeysAtRisk returns, per blob WKID, the keys whose blob and pending blob are
// both under master keys that none of `held` is.
std::vector<std::pair<std::string, int64_t>> KeysAtRisk(const std::vector<WkidPairCount>& counts,
                                                        const std::vector<std::string>& held);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_RECOVERY_H_

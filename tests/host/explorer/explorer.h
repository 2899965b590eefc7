// The rotation explorer (tests only; docs/reliability.md section 6): a
// seeded, model-based test that drives a FleetWorld through random sequences
// of operator actions (every hsmctl command that touches units, registers,
// selection or keys, with valid and invalid signatures and parts) mixed with
// faults (a unit or hsmctl crashing at any checkpoint, lost replies, hangs,
// restarts, failing state writes, damaged blobs), and after every step
// checks the invariants of issue 11:
//
//   no-stranded-key    no stored key is under a WKID that no unit of the
//                      instance (selected or not) holds in NEW, CURRENT or
//                      OLD, unless an operator forced a change;
//   key-unwraps        every key the model created is still stored and
//                      unwraps its data key to the recorded bytes on at least
//                      one unit;
//   one-situation      `recover` names exactly one situation, consistent
//                      with the journal and the units (a rotation in
//                      progress is never "nothing to do"; re-encryption
//                      unfinished always has a unit that can re-encrypt);
//   recover-finishes   (at every "heal" step, ending each episode) once the
//                      operator brings every unit back, a bounded sequence
//                      of `recover --apply` with the parts and signers on
//                      hand makes progress at every call and reaches DONE
//                      with every key unwrapping on every unit.
//
// The step list is generated from the seed alone, so a failing run is
// replayed and shrunk (delta debugging) by removing steps.
#ifndef HSMSIM_TESTS_HOST_EXPLORER_EXPLORER_H_
#define HSMSIM_TESTS_HOST_EXPLORER_EXPLORER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hsmsim::explorer {

// Switches for actions whose correct handling is another part of issue 11.
// Each defaults to what passes on main; the lead turns one on once its fix
// is merged (HSMSIM_EXPLORER_SWITCHES="+name,-name").
struct Switches {
  // mk setimm whatever the journal and the NEW registers say (items 1, 4,
  // 10: with no rotation in progress, before re-encryption finished, or on
  // a unit whose NEW holds another key than the rotation's target). Off,
  // mk setimm runs only as the runbook has it: once the journal is
  // REENCRYPTED or later and every selected unit's NEW is empty or holds
  // the target; otherwise the step does nothing.
  bool setimm_unguarded = true;
  // mk clrcur while a rotation is in progress (register commands that do
  // not know the journal).
  bool clrcur_during_rotation = true;
  // unit rm while a rotation is in progress: resume and recover promote the
  // selected units only and leave the deselected one behind.
  bool deselect_during_rotation = true;
  // A stored blob damaged (item 2).
  bool damaged_blob = true;
  // The parts of the rotation's target forgotten (item 3).
  bool lose_parts = true;
  // A unit's state write that fails (the unit stops, keeping its old state).
  bool state_write_fails = true;
  // --force on register changes (exempts the stranded-key checks).
  bool forced_changes = false;

  // FromEnv applies HSMSIM_EXPLORER_SWITCHES ("+name" on, "-name" off,
  // comma-separated) to the defaults. Unknown names are listed in `*bad`.
  static Switches FromEnv(std::string* bad);
  std::string Describe() const;
};

enum class ActionId {
  kKeysCreate,
  kKeysUpgrade,
  kAdminAddCarol,
  kAdminRmCarol,
  kMkLoad,
  kMkCommit,
  kNextKey,  // mk load (a fresh key) then mk commit, signed by alice and bob
  kMkSetimm,
  kMkClrnew,
  kMkClrold,
  kMkClrcur,
  kZeroize,
  kMkRotate,
  kMkRotateResume,
  kRecoverApply,
  kUnitRm,
  kUnitAdd,
  kCrashUnit,
  kRestartUnit,
  kHangUnit,
  kDropReplies,
  kArmFault,
  kFailStateWrites,
  kDamageBlob,
  kForgetParts,
  kMkRotateAbort,   // mk rotate --abort
  kKeysQuarantine,  // keys quarantine (every key recorded unreadable)
  kHeal,            // ends an episode: bring every unit back, recover --apply to DONE
  kSabotage,        // tests of the explorer only: clear every CURRENT, unforced
};

// One step: an action and its parameters, drawn from the seed (never from
// the state, so that any sub-list can be replayed).
struct Step {
  ActionId action = ActionId::kHeal;
  int unit = 0;  // 0-based
  int a = 0;
  int b = 0;
  int c = 0;
  int signers = 0;  // SignerSet
  // Where hsmctl dies: c >= 0 names a checkpoint (rotate, resume, recover
  // --apply) or how many units a per-unit command reached.
  std::string Describe() const;
};

struct ExplorerOptions {
  uint64_t seed = 1;
  int64_t steps = 1000;  // steps other than heal steps
  Switches switches;
  int initial_keys = 12;
  int max_keys = 40;
  int max_episode = 40;  // steps between heal steps, at most
  bool include_sabotage = false;
  // Called every `progress_every` steps with the steps run so far (may be
  // empty): a long run shows how far it got.
  std::function<void(int64_t steps_run, double seconds)> progress;
  int64_t progress_every = 10'000;
  // Makes the keystore location of each world the run sets up (every run
  // and replay needs an empty keystore): a postgresql:// URL of a new
  // database. Empty: a SQLite file of the world's own.
  std::function<absl::StatusOr<std::string>()> new_keystore;
};

struct Violation {
  int64_t step_index = 0;  // in the list run
  std::string invariant;
  std::string message;
};

struct RunResult {
  int64_t steps_run = 0;  // steps executed, heal steps included
  int64_t heals = 0;
  std::optional<Violation> violation;
  // Per action name: how many times it ran and how many ended OK.
  std::map<std::string, std::pair<int64_t, int64_t>> outcomes;
  // Recover situations seen by the one-situation check.
  std::map<std::string, int64_t> situations;
  double seconds = 0;
};

// GenerateSteps returns the seed's step list: options.steps steps with a
// heal step after every episode (1..max_episode steps) and at the end.
std::vector<Step> GenerateSteps(const ExplorerOptions& options);

// RunSteps builds a fresh FleetWorld and runs `steps`, checking the
// invariants after each; it stops at the first violation.
RunResult RunSteps(const std::vector<Step>& steps, const ExplorerOptions& options);

// Shrink returns a shorter list that still breaks `violation`'s invariant
// (delta debugging over steps, each candidate run from scratch), within
// `budget` wall time.
std::vector<Step> Shrink(std::vector<Step> steps, const ExplorerOptions& options,
                         const Violation& violation, std::chrono::seconds budget);

// FormatSteps numbers the steps, one a line.
std::string FormatSteps(const std::vector<Step>& steps);

}  // namespace hsmsim::explorer

#endif  // HSMSIM_TESTS_HOST_EXPLORER_EXPLORER_H_

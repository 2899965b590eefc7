// FleetWorld: the explorer's fleet (tests only). Three in-process units
// (tests/support/in_process_unit.h) of one instance, a SQLite keystore in a
// temporary directory, the administrators' keys and every master key's parts,
// and the operator commands as hsmctl runs them, on the host library's own
// code paths (RotationEngine, DecideRecovery, CheckInterlock, IssueCommand,
// LoadKeyPartsOnUnit, UpgradeStragglers, the Keystore).
//
// Where an hsmctl command keeps a piece of its logic in host/hsmctl/ (the
// CLI executable, which a test cannot link), the command here repeats that
// piece and names the function it mirrors.
//
// The world also keeps the explorer's model: facts recorded when they were
// made, independently of the code under test (each key's name and a data
// key wrapped under it with its plaintext, each master key's parts and VP,
// whether an operator forced a register change).
//
// Thread-safety: used from one thread.
#ifndef HSMSIM_TESTS_HOST_EXPLORER_FLEET_WORLD_H_
#define HSMSIM_TESTS_HOST_EXPLORER_FLEET_WORLD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "firmware/crypto_unit.h"
#include "host/admin_key_file.h"
#include "host/interlock.h"
#include "host/keystore.h"
#include "host/recovery.h"
#include "host/register_change_guard.h"
#include "host/rotation.h"
#include "tests/support/in_process_unit.h"

namespace hsmsim::explorer {

inline constexpr int kUnits = 3;

// Who signs a command. kPair (alice and bob) is valid under thresholds 2/2;
// kWithCarol is valid once carol is installed; the others are refused.
enum class SignerSet { kPair, kWithCarol, kAliceAlone, kWithStranger, kNone };
inline constexpr int kSignerSets = 5;
std::string_view SignerSetName(SignerSet s);

// A master key value the model knows: its VP and, when the operator keeps
// them, its key parts.
struct MasterKeyValue {
  std::string vp;
  std::vector<SecretBytes> parts;
  bool parts_on_hand = true;
};

// A stored key as the model knows it: a data key wrapped under it when it
// was created, and that data key's plaintext.
struct ModelKey {
  std::string name;
  std::string plaintext;
  std::string wrapped;
  bool damaged = false;  // its stored blob was damaged on purpose
};

// Where hsmctl dies during a command, if it does: at a rotation engine
// checkpoint (`point` reached with a count >= `at`), optionally with every
// unit losing power at the same moment; or, for a per-unit command, after
// `after_units` units.
struct HsmctlCrash {
  std::string point;  // "" = no crash at a checkpoint
  int64_t at = 0;
  bool power_loss = false;
  int after_units = kUnits;  // per-unit commands: units done before it dies
};

// What `hsmctl recover` sees and decides.
struct RecoverLook {
  std::optional<host::RotationJournal> journal;
  std::vector<host::WkidPairCount> counts;
  std::vector<host::UnitObservation> observed;
  host::RecoveryDecision decision;
};

class FleetWorld {
 public:
  // Create builds the fleet after its ceremony: administrators alice and bob
  // on every unit, thresholds 2/2, the first master key set, `keys` keys
  // created and stored. carol and a stranger have keys but are installed
  // nowhere.
  // `keystore_location`: where the keystore is (a postgresql:// URL of an
  // empty database); empty: a SQLite file in the world's directory.
  static absl::StatusOr<std::unique_ptr<FleetWorld>> Create(int keys,
                                                            std::string keystore_location = "");
  ~FleetWorld();

  testing::InProcessUnit& unit(int i) { return *units_[static_cast<size_t>(i)]; }
  bool selected(int i) const { return selected_[static_cast<size_t>(i)]; }
  void set_selected(int i, bool on) { selected_[static_cast<size_t>(i)] = on; }
  host::Keystore& keystore() { return *store_; }
  const std::vector<ModelKey>& keys() const { return keys_; }
  const std::vector<MasterKeyValue>& master_keys() const { return master_keys_; }
  bool forced() const { return forced_; }
  const MasterKeyValue* FindMasterKey(std::string_view vp) const;
  // PartsOnHand is true when the parts of the key with VP `vp` are known.
  bool PartsOnHand(std::string_view vp) const {
    const MasterKeyValue* k = FindMasterKey(vp);
    return k != nullptr && k->parts_on_hand;
  }

  // --- Operator commands. Each returns what the hsmctl command ends with:
  // OK, or the error it exits with (for per-unit commands, the first unit's
  // error).

  // keys create --count n (mirrors RunCreate and GenerateKeysInto).
  absl::Status KeysCreate(int n);
  // keys upgrade (mirrors RunUpgrade).
  absl::Status KeysUpgrade();
  // keys quarantine NAME...: every key a unit was recorded failing to open
  // and not yet quarantined (KEY_NOT_UNREADABLE when there is none).
  absl::Status KeysQuarantine();
  // mk rotate --abort (host/rotation_abort.h).
  absl::Status MkRotateAbort();
  // admin add carol / admin rm carol.
  absl::Status AdminAddCarol(SignerSet signers, const HsmctlCrash& crash);
  absl::Status AdminRmCarol(SignerSet signers, const HsmctlCrash& crash);
  // mk load --parts: `which` 0 = a fresh master key, 1 = the newest key the
  // model knows, 2 = the key of the first unit's CURRENT (mirrors RunLoad).
  absl::Status MkLoad(int which, SignerSet signers, const HsmctlCrash& crash);
  // mk commit, `quote` 0 = without --vp, 1 = --vp of the newest key, 2 = a
  // wrong --vp (mirrors RunCommit).
  absl::Status MkCommit(int quote, SignerSet signers, const HsmctlCrash& crash);
  // mk setimm | clrnew | clrcur | clrold | zeroize [--force] (mirrors
  // RunSimple: the interlock, then each selected unit).
  // Guard is hsmctl's register change guard (host/register_change_guard.h)
  // against the keystore's journal and the selected units.
  absl::Status Guard(const host::RequestedChange& change);
  absl::Status RegisterChange(host::RegisterChange change, bool force, SignerSet signers,
                              const HsmctlCrash& crash);
  // mk rotate [--resume] (mirrors RunRotate).
  absl::Status MkRotate(bool resume, SignerSet signers, const HsmctlCrash& crash);
  // recover [--apply --parts ... --sign ...] (mirrors RunRecover). `parts`:
  // 0 = the rotation target's parts, 1 = none, 2 = another key's parts.
  absl::Status RecoverApply(int parts, SignerSet signers, const HsmctlCrash& crash);

  // Look decides as `hsmctl recover` does, over the selected units.
  absl::StatusOr<RecoverLook> Look(SignerSet signers);
  // LookAt decides as Look does from given observations of the selected
  // units (a check that must not send requests through faults).
  absl::StatusOr<RecoverLook> LookAt(std::vector<host::UnitObservation> observed,
                                     SignerSet signers);

  // DamageBlob flips a bit of key `index`'s blob in the keystore (a damaged
  // row); the model keeps the key, which is then no longer recoverable
  // unless quarantined (issue 11 item 2).
  absl::Status DamageBlob(int index);
  // SabotageClearCurrent clears every selected unit's CURRENT, skipping the
  // interlock and recording no --force: a planted bug, for the test that
  // proves the explorer catches and shrinks a violation.
  absl::Status SabotageClearCurrent();
  // ForgetParts: the operator no longer has the parts of master key `vp`.
  void ForgetParts(std::string_view vp);

  // Observations of the selected units through their channels.
  std::vector<host::UnitObservation> ObserveSelected();
  // ObserveInstance reads every unit, selected or not (unit.selected says
  // which), as hsmctl's interlock does.
  std::vector<host::UnitObservation> ObserveInstance();
  // Oracles returns every unit's persisted state restored into a CryptoUnit
  // of its own: the test's view of each unit's disk, whatever faults it is
  // under (what a restart would bring back).
  // The returned units stay valid until the next call.
  absl::StatusOr<std::vector<const firmware::CryptoUnit*>> Oracles();
  // Unwraps is true when `unit` unwraps `key`'s data key with `blob` to the
  // recorded plaintext.
  static bool Unwraps(const firmware::CryptoUnit& unit, const std::string& blob,
                      const ModelKey& key);

 private:
  FleetWorld() = default;
  absl::Status Setup(int keys, std::string keystore_location);
  absl::Status Ceremony(testing::InProcessUnit& unit);
  std::vector<const host::AdminKey*> Signers(SignerSet s) const;
  std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> SelectedPairs();
  host::FleetManifest Manifest() const;
  // PerUnit runs `step` on each selected unit after reading its GetInfo, as
  // RunSignedPerUnit does; stops after crash.after_units units.
  absl::Status PerUnit(
      const HsmctlCrash& crash,
      const std::function<absl::Status(host::UnitChannel&, const v1::GetInfoResponse&)>& step);
  std::unique_ptr<host::RotationEngine> Engine(SignerSet signers, const HsmctlCrash& crash);
  absl::Status ReloadParts(const host::RotationJournal& journal,
                           const std::vector<std::string>& units, const MasterKeyValue* key,
                           SignerSet signers);
  absl::Status RecordModelKeys(const std::vector<host::NewKey>& stored);
  // RecordUnmodelledKeys records every stored key the model does not know.
  absl::Status RecordUnmodelledKeys();

  std::string dir_;
  std::string keystore_location_;  // the SQLite file or PostgreSQL URL
  std::unique_ptr<host::Keystore> store_;
  std::vector<std::unique_ptr<testing::InProcessUnit>> units_;
  std::vector<bool> selected_ = std::vector<bool>(kUnits, true);
  std::unique_ptr<host::AdminKey> alice_, bob_, carol_, stranger_;
  std::vector<MasterKeyValue> master_keys_;
  std::vector<ModelKey> keys_;
  // Oracles' cache: a unit's restored state and its state_writes() then.
  std::vector<std::pair<int64_t, std::unique_ptr<firmware::CryptoUnit>>> oracles_;
  bool forced_ = false;
  uint64_t data_key_counter_ = 0;
};

// IsTransportError: a unit did not answer (exit class 3).
bool IsTransportError(const absl::Status& status);

}  // namespace hsmsim::explorer

#endif  // HSMSIM_TESTS_HOST_EXPLORER_FLEET_WORLD_H_

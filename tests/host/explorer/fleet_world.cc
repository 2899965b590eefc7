#include "tests/host/explorer/fleet_world.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "common/check.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "host/batch_fanout.h"
#include "host/blob_precheck.h"
#include "host/interlock.h"
#include "host/key_creation.h"
#include "host/key_part_loading.h"
#include "host/master_key_id.h"
#include "host/rotation_abort.h"
#include "host/signed_command.h"
#include "host/straggler_upgrade.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::explorer {
namespace {

constexpr char kInstance[] = "explorer";

// The status a test checkpoint stops a command with, as if hsmctl died.
absl::Status HsmctlDied(std::string_view where) {
  return Error(absl::StatusCode::kAborted, "TEST_HSMCTL_DIED", StrCat("hsmctl died ", where));
}

absl::StatusOr<std::unique_ptr<host::AdminKey>> NewAdmin(const std::string& name) {
  HSMSIM_ASSIGN_OR_RETURN(auto pkey, crypto::GenerateP521(crypto::OpenSslEntropyInstance()));
  HSMSIM_ASSIGN_OR_RETURN(host::AdminKey admin, host::MakeAdminKey(name, std::move(pkey)));
  return std::make_unique<host::AdminKey>(std::move(admin));
}

MasterKeyValue MakeMasterKey() {
  MasterKeyValue k;
  SecretBytes key(crypto::kMasterKeySize, 0);
  for (int i = 0; i < 3; ++i) {
    SecretBytes p(crypto::kKeyPartSize);
    HSMSIM_CHECK(crypto::OpenSslEntropyInstance().Generate(absl::MakeSpan(p)).ok());
    for (size_t b = 0; b < key.size(); ++b) key[b] ^= p[b];
    k.parts.push_back(std::move(p));
  }
  k.vp = crypto::AsString(crypto::ComputeVerificationPattern(key));
  return k;
}

std::string VpOfParts(const std::vector<SecretBytes>& parts) {
  SecretBytes xored(crypto::kKeyPartSize, 0);
  for (const SecretBytes& p : parts) {
    for (size_t i = 0; i < xored.size(); ++i) xored[i] ^= p[i];
  }
  return crypto::AsString(crypto::ComputeVerificationPattern(xored));
}

// The journal is in progress: a rotation was begun and is not DONE.
bool InProgress(const std::optional<host::RotationJournal>& journal) {
  return journal.has_value() && journal->phase != host::RotationPhase::kDone;
}

}  // namespace

std::string_view SignerSetName(SignerSet s) {
  switch (s) {
    case SignerSet::kPair:
      return "alice+bob";
    case SignerSet::kWithCarol:
      return "alice+carol";
    case SignerSet::kAliceAlone:
      return "alice alone";
    case SignerSet::kWithStranger:
      return "alice+stranger";
    case SignerSet::kNone:
      return "no --sign";
  }
  return "?";
}

bool IsTransportError(const absl::Status& status) {
  return !status.ok() && host::IsUnreachable(status);
}

absl::StatusOr<std::unique_ptr<FleetWorld>> FleetWorld::Create(int keys,
                                                               std::string keystore_location) {
  std::unique_ptr<FleetWorld> world(new FleetWorld());
  HSMSIM_RETURN_IF_ERROR(world->Setup(keys, std::move(keystore_location)));
  return world;
}

FleetWorld::~FleetWorld() {
  store_.reset();
  units_.clear();
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

absl::Status FleetWorld::Setup(int keys, std::string keystore_location) {
  // /dev/shm when there is one: SQLite's fsyncs are then free.
  const char* tmp = std::getenv("TMPDIR");
  std::string base = std::filesystem::is_directory("/dev/shm")
                         ? "/dev/shm"
                         : (tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
  std::string tmpl = base + "/hsmsim-explorer-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Error(absl::StatusCode::kInternal, "TEST_SETUP", "mkdtemp failed");
  }
  dir_ = tmpl;
  keystore_location_ =
      keystore_location.empty() ? dir_ + "/keystore.db" : std::move(keystore_location);
  HSMSIM_ASSIGN_OR_RETURN(store_, host::OpenKeystore(keystore_location_, true));
  HSMSIM_ASSIGN_OR_RETURN(alice_, NewAdmin("alice"));
  HSMSIM_ASSIGN_OR_RETURN(bob_, NewAdmin("bob"));
  HSMSIM_ASSIGN_OR_RETURN(carol_, NewAdmin("carol"));
  HSMSIM_ASSIGN_OR_RETURN(stranger_, NewAdmin("stranger"));
  testing::InProcessUnitOptions options;
  // Short: a hung unit costs the explorer this per attempt.
  options.timeout = std::chrono::milliseconds(60);
  options.idempotent_attempts = 2;
  for (int i = 1; i <= kUnits; ++i) {
    HSMSIM_ASSIGN_OR_RETURN(auto unit, testing::InProcessUnit::Create(StrCat("unit", i), options));
    units_.push_back(std::move(unit));
  }
  master_keys_.push_back(MakeMasterKey());
  for (auto& u : units_) HSMSIM_RETURN_IF_ERROR(Ceremony(*u));
  return KeysCreate(keys);
}

absl::Status FleetWorld::Ceremony(testing::InProcessUnit& unit) {
  // As hsmctl fleet up assigns a new unit, in imprint mode.
  v1::Command assign;
  assign.mutable_assign_instance()->set_instance(kInstance);
  HSMSIM_RETURN_IF_ERROR(host::IssueCommand(unit, assign, {}).status());
  for (const host::AdminKey* admin : {alice_.get(), bob_.get()}) {
    v1::Command add;
    add.mutable_add_admin()->set_name(admin->name);
    add.mutable_add_admin()->set_public_key(admin->public_key_der);
    HSMSIM_RETURN_IF_ERROR(host::IssueCommand(unit, add, {}).status());
  }
  const auto signers = Signers(SignerSet::kPair);
  v1::Command th;
  th.mutable_set_thresholds()->set_signature_threshold(2);
  th.mutable_set_thresholds()->set_revocation_threshold(2);
  HSMSIM_RETURN_IF_ERROR(host::IssueCommand(unit, th, signers).status());
  HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, unit.GetInfo());
  HSMSIM_ASSIGN_OR_RETURN(info,
                          host::LoadKeyPartsOnUnit(unit, info, master_keys_[0].parts, signers));
  HSMSIM_RETURN_IF_ERROR(host::CommitNewOnUnit(unit, info, master_keys_[0].vp, signers).status());
  v1::Command setimm;
  setimm.mutable_set_immediate();
  return host::IssueCommand(unit, setimm, signers).status();
}

std::vector<const host::AdminKey*> FleetWorld::Signers(SignerSet s) const {
  switch (s) {
    case SignerSet::kPair:
      return {alice_.get(), bob_.get()};
    case SignerSet::kWithCarol:
      return {alice_.get(), carol_.get()};
    case SignerSet::kAliceAlone:
      return {alice_.get()};
    case SignerSet::kWithStranger:
      return {alice_.get(), stranger_.get()};
    case SignerSet::kNone:
      return {};
  }
  return {};
}

const MasterKeyValue* FleetWorld::FindMasterKey(std::string_view vp) const {
  for (const MasterKeyValue& k : master_keys_) {
    if (k.vp == vp) return &k;
  }
  return nullptr;
}

host::FleetManifest FleetWorld::Manifest() const {
  host::FleetManifest m;
  m.instance = kInstance;
  m.keystore = keystore_location_;
  for (int i = 0; i < kUnits; ++i) {
    m.units.push_back(host::FleetUnit{units_[static_cast<size_t>(i)]->name(), "in-process", "", 0,
                                      selected(i), false});
  }
  return m;
}

std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> FleetWorld::SelectedPairs() {
  std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> out;
  for (int i = 0; i < kUnits; ++i) {
    if (!selected(i)) continue;
    out.emplace_back(host::FleetUnit{unit(i).name(), "in-process", "", 0, true, false}, &unit(i));
  }
  return out;
}

std::vector<host::UnitObservation> FleetWorld::ObserveSelected() {
  std::vector<host::UnitObservation> out;
  for (auto& [u, channel] : SelectedPairs()) {
    out.push_back(host::UnitObservation{u, channel->GetInfo()});
  }
  return out;
}

std::vector<host::UnitObservation> FleetWorld::ObserveInstance() {
  std::vector<host::UnitObservation> out;
  for (int i = 0; i < kUnits; ++i) {
    out.push_back(host::UnitObservation{
        host::FleetUnit{unit(i).name(), "in-process", "", 0, selected(i), false},
        unit(i).GetInfo()});
  }
  return out;
}

absl::StatusOr<std::vector<const firmware::CryptoUnit*>> FleetWorld::Oracles() {
  oracles_.resize(units_.size());
  std::vector<const firmware::CryptoUnit*> out;
  for (size_t i = 0; i < units_.size(); ++i) {
    const int64_t writes = units_[i]->state_writes();
    if (oracles_[i].second == nullptr || oracles_[i].first != writes) {
      HSMSIM_ASSIGN_OR_RETURN(oracles_[i].second, units_[i]->LoadPersisted());
      oracles_[i].first = writes;
    }
    out.push_back(oracles_[i].second.get());
  }
  return out;
}

bool FleetWorld::Unwraps(const firmware::CryptoUnit& unit, const std::string& blob,
                         const ModelKey& key) {
  if (blob.empty() || key.wrapped.empty()) return false;
  v1::Request r;
  r.set_id(1);
  r.mutable_unwrap_key()->set_blob(blob);
  r.mutable_unwrap_key()->set_wrapped(key.wrapped);
  v1::Response response = unit.HandleReadOnly(r);
  return response.status().code() == 0 && response.unwrap_key().plaintext() == key.plaintext;
}

absl::Status FleetWorld::PerUnit(
    const HsmctlCrash& crash,
    const std::function<absl::Status(host::UnitChannel&, const v1::GetInfoResponse&)>& step) {
  absl::Status first = absl::OkStatus();
  bool any = false;
  int done = 0;
  for (auto& [u, channel] : SelectedPairs()) {
    any = true;
    if (done++ >= crash.after_units) return HsmctlDied(StrCat("before unit ", u.name));
    auto info = channel->GetInfo();
    absl::Status s = info.ok() ? step(*channel, *info) : info.status();
    if (!s.ok() && first.ok()) first = s;
  }
  if (!any) return Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitsSelected, "none");
  return first;
}

// OperatorCommandOf maps an interlocked register change to the guard's
// command (as hsmctl's CommandOf).
static host::OperatorCommand OperatorCommandOf(host::RegisterChange change) {
  switch (change) {
    case host::RegisterChange::kSetImmediate:
      return host::OperatorCommand::kSetImmediate;
    case host::RegisterChange::kClearNew:
      return host::OperatorCommand::kClearNew;
    case host::RegisterChange::kClearCurrent:
      return host::OperatorCommand::kClearCurrent;
    case host::RegisterChange::kClearOld:
      return host::OperatorCommand::kClearOld;
    case host::RegisterChange::kZeroize:
      return host::OperatorCommand::kZeroize;
  }
  return host::OperatorCommand::kZeroize;
}

// --- keys

absl::Status FleetWorld::RecordModelKeys(const std::vector<host::NewKey>& stored) {
  HSMSIM_ASSIGN_OR_RETURN(auto oracles, Oracles());
  for (const host::NewKey& k : stored) {
    ModelKey m{k.name, StrCat("data key ", ++data_key_counter_, " of ", k.name), ""};
    for (const auto& oracle : oracles) {
      v1::Request r;
      r.set_id(1);
      r.mutable_wrap_key()->set_blob(k.blob);
      r.mutable_wrap_key()->set_plaintext(m.plaintext);
      v1::Response response = oracle->HandleReadOnly(r);
      if (response.status().code() == 0) {
        m.wrapped = response.wrap_key().wrapped();
        break;
      }
    }
    if (m.wrapped.empty()) {
      return Error(absl::StatusCode::kInternal, "TEST_MODEL",
                   StrCat("no unit can wrap with the key ", k.name, " it just generated"));
    }
    keys_.push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::Status FleetWorld::KeysCreate(int n) {
  // hsmctl keys create: host::CreateKeys routes by the journal (keys made
  // during a rotation get a pending blob under its target).
  host::KeyCreationSpec spec;
  spec.count = n;
  spec.keys_per_request = n;
  spec.in_flight_per_unit = 1;
  host::KeyCreationReport report;
  absl::Status created = host::CreateKeys(*store_, SelectedPairs(), spec, report, {}, {});
  // Whatever was stored joins the model, also when the run failed.
  HSMSIM_RETURN_IF_ERROR(RecordUnmodelledKeys());
  return created;
}

absl::Status FleetWorld::RecordUnmodelledKeys() {
  std::set<std::string> known;
  for (const ModelKey& m : keys_) known.insert(m.name);
  std::vector<host::NewKey> fresh;
  int64_t after = 0;
  for (;;) {
    HSMSIM_ASSIGN_OR_RETURN(std::vector<host::StoredKey> page, store_->ReadPage(after, 256));
    if (page.empty()) break;
    for (const host::StoredKey& k : page) {
      after = k.id;
      if (!known.contains(k.name)) fresh.push_back(host::NewKey{k.name, k.blob, k.wkid});
    }
  }
  return RecordModelKeys(fresh);
}

absl::Status FleetWorld::KeysQuarantine() {
  std::vector<std::string> names;
  int64_t after = 0;
  for (;;) {
    HSMSIM_ASSIGN_OR_RETURN(std::vector<host::StoredKey> page, store_->ReadProblemKeys(after, 256));
    if (page.empty()) break;
    for (const host::StoredKey& k : page) {
      after = k.id;
      if (!k.quarantined) names.push_back(k.name);
    }
  }
  if (names.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyNotUnreadable,
                 "no key is recorded as unreadable");
  }
  return store_->SetQuarantined(names, true);
}

absl::Status FleetWorld::MkRotateAbort() {
  return host::AbortRotation(*store_, ObserveSelected()).status();
}

absl::Status FleetWorld::Guard(const host::RequestedChange& change) {
  HSMSIM_ASSIGN_OR_RETURN(auto journal, store_->ReadJournal());
  const std::vector<host::UnitObservation> instance = ObserveInstance();
  HSMSIM_ASSIGN_OR_RETURN(std::vector<host::WkidPairCount> counts, store_->CountByWkid());
  HSMSIM_RETURN_IF_ERROR(host::CheckSelection(Manifest(), change, instance, counts).status);
  return host::CheckRegisterChange(journal, ObserveSelected(), change, instance).status;
}

absl::Status FleetWorld::KeysUpgrade() {
  HSMSIM_ASSIGN_OR_RETURN(auto journal, store_->ReadJournal());
  if (InProgress(journal)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationInProgress,
                 "a master key rotation is in progress");
  }
  auto observed = ObserveSelected();
  const bool no_old = std::all_of(observed.begin(), observed.end(), [](const auto& o) {
    return o.info.ok() && o.info->old_register().state() == v1::REGISTER_EMPTY;
  });
  if (no_old) return absl::OkStatus();
  std::string old_vp, current_vp;
  std::vector<host::UnitChannel*> channels;
  for (const auto& o : observed) {
    if (!o.info.ok()) return o.info.status();
    const auto& old = o.info->old_register();
    const auto& cur = o.info->current_register();
    if (old.state() != v1::REGISTER_VALID || cur.state() != v1::REGISTER_VALID ||
        (!old_vp.empty() &&
         (old.verification_pattern() != old_vp || cur.verification_pattern() != current_vp))) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kRegistersDiffer,
                   StrCat("unit ", o.unit.name, " differs"));
    }
    old_vp = old.verification_pattern();
    current_vp = cur.verification_pattern();
  }
  for (auto& [u, channel] : SelectedPairs()) channels.push_back(channel);
  host::StragglerOptions options;
  options.batch_size = 4;
  auto upgraded = host::UpgradeStragglers(*store_, channels, host::WkidOfVp(old_vp),
                                          host::WkidOfVp(current_vp), options);
  if (!upgraded.ok()) return upgraded.status();
  if (upgraded->failed.count > 0) {
    return Error(absl::StatusCode::kFailedPrecondition, "TEST_UPGRADE_FAILED",
                 upgraded->failed.List());
  }
  return absl::OkStatus();
}

void FleetWorld::ForgetParts(std::string_view vp) {
  for (MasterKeyValue& k : master_keys_) {
    if (k.vp == vp) k.parts_on_hand = false;
  }
}

absl::Status FleetWorld::DamageBlob(int index) {
  if (keys_.empty()) return absl::OkStatus();
  ModelKey& m = keys_[static_cast<size_t>(index) % keys_.size()];
  HSMSIM_ASSIGN_OR_RETURN(auto key, store_->FindKey(m.name));
  if (!key.has_value() || !key->pending_blob.empty()) return absl::OkStatus();
  std::string damaged = key->blob;
  damaged[damaged.size() - 1] = static_cast<char>(damaged[damaged.size() - 1] ^ 0x01);
  m.damaged = true;
  return store_->ReplaceBlobs({host::RewrappedKey{key->id, damaged, key->wkid}});
}

// --- administrators

absl::Status FleetWorld::AdminAddCarol(SignerSet signers, const HsmctlCrash& crash) {
  HSMSIM_RETURN_IF_ERROR(Guard(host::RequestedChange::Of(host::OperatorCommand::kAddAdmin)));
  const auto ptrs = Signers(signers);
  return PerUnit(crash, [&](host::UnitChannel& u, const v1::GetInfoResponse& info) {
    for (const auto& a : info.administrators()) {
      if (a.key_id() == crypto::AsString(carol_->key_id)) return absl::OkStatus();
    }
    v1::Command op;
    op.mutable_add_admin()->set_name(carol_->name);
    op.mutable_add_admin()->set_public_key(carol_->public_key_der);
    return host::IssueCommand(u, info, op, ptrs).status();
  });
}

absl::Status FleetWorld::AdminRmCarol(SignerSet signers, const HsmctlCrash& crash) {
  HSMSIM_RETURN_IF_ERROR(
      Guard(host::RequestedChange::Of(host::OperatorCommand::kRemoveAdmin).WithAdminName("carol")));
  const auto ptrs = Signers(signers);
  return PerUnit(crash, [&](host::UnitChannel& u, const v1::GetInfoResponse& info) {
    for (const auto& a : info.administrators()) {
      if (a.name() != carol_->name) continue;
      v1::Command op;
      op.mutable_remove_admin()->set_key_id(a.key_id());
      return host::IssueCommand(u, info, op, ptrs).status();
    }
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchAdmin,
                 StrCat("unit ", u.name(), " has no administrator 'carol'"));
  });
}

// --- master key registers

absl::Status FleetWorld::MkLoad(int which, SignerSet signers, const HsmctlCrash& crash) {
  if (which == 0) master_keys_.push_back(MakeMasterKey());
  const MasterKeyValue* key = &master_keys_.back();
  if (which == 2) {
    for (auto& o : ObserveSelected()) {
      if (!o.info.ok()) continue;
      if (const MasterKeyValue* k =
              FindMasterKey(o.info->current_register().verification_pattern())) {
        key = k;
      }
      break;
    }
  }
  const auto ptrs = Signers(signers);
  const std::vector<SecretBytes>& parts = key->parts;
  const std::string vp = key->vp;
  HSMSIM_RETURN_IF_ERROR(
      Guard(host::RequestedChange::Of(host::OperatorCommand::kLoadNew).WithNewVp(vp)));
  return PerUnit(crash, [&](host::UnitChannel& u, const v1::GetInfoResponse& info) -> absl::Status {
    HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse after,
                            host::LoadKeyPartsOnUnit(u, info, parts, ptrs));
    if (!host::SameId(after.new_register().verification_pattern(), vp)) {
      return Error(absl::StatusCode::kDataLoss, reason::kVpMismatch,
                   StrCat("unit ", u.name(), " NEW VP differs from the parts' VP"));
    }
    return absl::OkStatus();
  });
}

absl::Status FleetWorld::MkCommit(int quote, SignerSet signers, const HsmctlCrash& crash) {
  std::string vp_flag;
  if (quote == 1) vp_flag = master_keys_.back().vp;
  if (quote == 2) vp_flag = MakeMasterKey().vp;  // a VP no part gives
  HSMSIM_RETURN_IF_ERROR(
      Guard(host::RequestedChange::Of(host::OperatorCommand::kCommitNew).WithNewVp(vp_flag)));
  const auto ptrs = Signers(signers);
  return PerUnit(crash, [&](host::UnitChannel& u, const v1::GetInfoResponse& info) -> absl::Status {
    std::string expected = vp_flag;
    if (expected.empty()) {
      expected = info.new_register().verification_pattern();
      if (expected.empty()) {
        return Error(absl::StatusCode::kFailedPrecondition, reason::kNewRegisterNotFull,
                     StrCat("unit ", u.name(), " NEW register is not full"));
      }
    }
    return host::CommitNewOnUnit(u, info, expected, ptrs).status();
  });
}

absl::Status FleetWorld::RegisterChange(host::RegisterChange change, bool force, SignerSet signers,
                                        const HsmctlCrash& crash) {
  // RunSimple: quarantined keys hold their master key even with --force;
  // else the register change guard, then the interlock.
  // Both reason over every unit of the instance, selected or not.
  const std::vector<host::UnitObservation> instance = ObserveInstance();
  HSMSIM_ASSIGN_OR_RETURN(auto quarantined, store_->CountQuarantined());
  if (!quarantined.empty()) {
    HSMSIM_RETURN_IF_ERROR(host::CheckQuarantineHold(instance, change, quarantined));
  }
  if (force) {
    HSMSIM_RETURN_IF_ERROR(
        host::CheckForcedChange(instance, change, store_->CountByWkid(), Signers(signers).size()));
    forced_ = true;
  } else {
    HSMSIM_RETURN_IF_ERROR(Guard(host::RequestedChange::Of(OperatorCommandOf(change))));
    HSMSIM_ASSIGN_OR_RETURN(auto counts, store_->CountByWkid());
    HSMSIM_RETURN_IF_ERROR(host::CheckInterlock(instance, change, counts));
  }
  v1::Command op;
  switch (change) {
    case host::RegisterChange::kSetImmediate:
      op.mutable_set_immediate();
      break;
    case host::RegisterChange::kClearNew:
      op.mutable_clear_new_master_key();
      break;
    case host::RegisterChange::kClearCurrent:
      op.mutable_clear_current_master_key();
      break;
    case host::RegisterChange::kClearOld:
      op.mutable_clear_old_master_key();
      break;
    case host::RegisterChange::kZeroize:
      op.mutable_zeroize();
      break;
  }
  const auto ptrs = Signers(signers);
  return PerUnit(crash, [&](host::UnitChannel& u, const v1::GetInfoResponse& info) {
    return host::IssueCommand(u, info, op, ptrs).status();
  });
}

absl::Status FleetWorld::SabotageClearCurrent() {
  const auto ptrs = Signers(SignerSet::kPair);
  return PerUnit(HsmctlCrash{}, [&](host::UnitChannel& u, const v1::GetInfoResponse& info) {
    v1::Command op;
    op.mutable_clear_current_master_key();
    return host::IssueCommand(u, info, op, ptrs).status();
  });
}

// --- rotation and recovery

std::unique_ptr<host::RotationEngine> FleetWorld::Engine(SignerSet signers,
                                                         const HsmctlCrash& crash) {
  host::RotationOptions options;
  options.batch_size = 4;
  options.in_flight_per_unit = 2;
  // A seed replays only if its crash lands in step with the fan-out (the
  // keystore threads of hsmctl are run by the crash matrix and the process
  // tests).
  options.keystore_threads = false;
  if (!crash.point.empty()) {
    auto fired = std::make_shared<bool>(false);
    options.checkpoint = [this, crash, fired](std::string_view point, int64_t n) -> absl::Status {
      if (*fired || point != crash.point || n < crash.at) return absl::OkStatus();
      *fired = true;
      if (crash.power_loss) {
        for (auto& u : units_) u->Crash();
      }
      return HsmctlDied(StrCat("at ", point));
    };
  }
  return std::make_unique<host::RotationEngine>(*store_, SelectedPairs(), Signers(signers),
                                                options);
}

absl::Status FleetWorld::MkRotate(bool resume, SignerSet signers, const HsmctlCrash& crash) {
  HSMSIM_ASSIGN_OR_RETURN(auto journal, store_->ReadJournal());
  // CheckResumeFlag.
  if (InProgress(journal) && !resume) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationInProgress,
                 "a rotation is already in progress");
  }
  if (!InProgress(journal) && resume) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoRotationInProgress,
                 "there is no interrupted rotation to resume");
  }
  auto engine = Engine(signers, crash);
  if (!resume) {
    // PrecheckFleet.
    auto observed = ObserveSelected();
    std::vector<host::Finding> findings =
        host::PrecheckRotation(Manifest(), observed, Signers(signers));
    if (findings.empty()) {
      HSMSIM_ASSIGN_OR_RETURN(auto counts, store_->CountByWkid());
      findings = host::PrecheckKeystore(
          counts, host::WkidOfVp(observed[0].info->current_register().verification_pattern()),
          host::WkidOfVp(observed[0].info->new_register().verification_pattern()));
    }
    if (!findings.empty()) return findings[0].status;
    // PrecheckStoredBlobs: every blob opens before the journal is written.
    std::vector<host::UnitChannel*> channels;
    for (auto& [u, channel] : SelectedPairs()) channels.push_back(channel);
    host::BlobPrecheckOptions blob_options;
    blob_options.batch_size = 4;
    blob_options.in_flight_per_unit = 2;
    HSMSIM_ASSIGN_OR_RETURN(
        host::BlobPrecheckReport checked,
        host::PrecheckBlobs(
            *store_, channels,
            host::WkidOfVp(observed[0].info->current_register().verification_pattern()),
            host::WkidOfVp(observed[0].info->new_register().verification_pattern()), blob_options));
    if (checked.unreadable.count > 0) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kKeysUnreadable,
                   StrCat(checked.unreadable.count, " stored key(s) have blobs no unit can open"));
    }
    HSMSIM_ASSIGN_OR_RETURN(
        journal, engine->Begin(observed[0].info->current_register().verification_pattern(),
                               observed[0].info->new_register().verification_pattern()));
  }
  if (Signers(signers).empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners, "pass --sign");
  }
  host::RotationReport report;
  return engine->Run(*journal, report);
}

absl::StatusOr<RecoverLook> FleetWorld::Look(SignerSet signers) {
  return LookAt(ObserveSelected(), signers);
}

absl::StatusOr<RecoverLook> FleetWorld::LookAt(std::vector<host::UnitObservation> observed,
                                               SignerSet signers) {
  RecoverLook r;
  HSMSIM_ASSIGN_OR_RETURN(r.journal, store_->ReadJournal());
  HSMSIM_ASSIGN_OR_RETURN(r.counts, store_->CountByWkid());
  r.observed = std::move(observed);
  std::vector<host::Finding> findings;
  if (!InProgress(r.journal)) {
    // RecoverPrechecks.
    findings = host::PrecheckRotation(Manifest(), r.observed, Signers(signers));
    const bool all_new_empty =
        std::all_of(r.observed.begin(), r.observed.end(), [](const host::UnitObservation& o) {
          return o.info.ok() && o.info->new_register().state() == v1::REGISTER_EMPTY;
        });
    std::erase_if(findings, [&](const host::Finding& fd) {
      return (Signers(signers).empty() && fd.check == "signers") ||
             (all_new_empty && fd.check.rfind("new-", 0) == 0);
    });
  }
  r.decision = host::DecideRecovery(r.journal, r.observed, r.counts, findings);
  HSMSIM_ASSIGN_OR_RETURN(host::UnreadableKeys unreadable, host::ReadUnreadableKeys(*store_));
  host::NoteUnreadableKeys(unreadable, r.decision);
  return r;
}

absl::Status FleetWorld::ReloadParts(const host::RotationJournal& journal,
                                     const std::vector<std::string>& units,
                                     const MasterKeyValue* key, SignerSet signers) {
  if (key == nullptr || !key->parts_on_hand) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                 "recover --apply needs the same 2 or 3 key part files (--parts) to reload NEW");
  }
  const std::string vp = VpOfParts(key->parts);
  if (!ConstantTimeEquals(AsBytes(vp), AsBytes(journal.target_vp))) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kPartsDoNotMatch,
                 "the key parts do not give the rotation's target VP; nothing was loaded");
  }
  const auto ptrs = Signers(signers);
  for (auto& [u, channel] : SelectedPairs()) {
    if (std::find(units.begin(), units.end(), u.name) == units.end()) continue;
    HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, channel->GetInfo());
    if (!info.new_register().verification_pattern().empty() ||
        info.new_register().state() == v1::REGISTER_PARTIALLY_LOADED) {
      v1::Command clear;
      clear.mutable_clear_new_master_key();
      HSMSIM_ASSIGN_OR_RETURN(auto r, host::IssueCommand(*channel, info, clear, ptrs));
      info = r.info();
    }
    HSMSIM_ASSIGN_OR_RETURN(info, host::LoadKeyPartsOnUnit(*channel, info, key->parts, ptrs));
    HSMSIM_ASSIGN_OR_RETURN(info, host::CommitNewOnUnit(*channel, info, journal.target_vp, ptrs));
  }
  return absl::OkStatus();
}

absl::Status FleetWorld::RecoverApply(int parts, SignerSet signers, const HsmctlCrash& crash) {
  HSMSIM_ASSIGN_OR_RETURN(RecoverLook look, Look(signers));
  const host::RecoveryDecision& d = look.decision;
  if (d.situation == host::RecoverySituation::kNothingToDo ||
      d.situation == host::RecoverySituation::kReadyToRotate) {
    return absl::OkStatus();
  }
  // ApplySafeAction.
  host::RotationJournal journal = look.journal.value_or(host::RotationJournal{});
  const bool rotating =
      look.journal.has_value() && look.journal->phase != host::RotationPhase::kDone;
  if (d.situation == host::RecoverySituation::kKeysAtRisk ||
      d.situation == host::RecoverySituation::kFixAndRotateAgain ||
      d.situation == host::RecoverySituation::kUnitsUnreachable ||
      (d.situation == host::RecoverySituation::kKeysUnreadable && !rotating)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNothingSafeToApply,
                 StrCat("recover --apply does nothing here: ", d.action));
  }
  const bool unfinished_setimm = d.situation == host::RecoverySituation::kSetImmediateUnfinished;
  const bool reload =
      !d.units_to_reload.empty() &&
      (unfinished_setimm || d.situation == host::RecoverySituation::kReloadNewRegister);
  const MasterKeyValue* key = nullptr;
  if (reload) {
    if (parts == 0) key = FindMasterKey(d.target_vp);
    if (parts == 2) {
      for (const MasterKeyValue& k : master_keys_) {
        if (k.vp != d.target_vp) key = &k;
      }
    }
    if (unfinished_setimm && (key == nullptr || !key->parts_on_hand)) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                   "recover --apply needs the key parts of the target to reload NEW");
    }
  }
  if (Signers(signers).empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigners,
                 "recover --apply signs set immediate: pass --sign");
  }
  auto engine = Engine(signers, crash);
  if (unfinished_setimm) {
    HSMSIM_ASSIGN_OR_RETURN(journal, engine->Begin(d.source_vp, d.target_vp));
  }
  if (reload) HSMSIM_RETURN_IF_ERROR(ReloadParts(journal, d.units_to_reload, key, signers));
  host::RotationReport report;
  return engine->Run(journal, report);
}

}  // namespace hsmsim::explorer

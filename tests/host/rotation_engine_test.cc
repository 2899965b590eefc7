// The rotation engine against three in-process units (tests/support/
// in_process_unit.h) brought through a real ceremony with the host's own
// code, and a real SQLite keystore: every checkpoint interrupted and resumed,
// lanes dropped, retries, a unit answering under the wrong target key, lost
// set immediate replies, every fault point, finalization stragglers and
// keys upgrade. Each case ends by proving every key usable on every unit
// and the sample data keys unwrapping to the same bytes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "host/admin_key_file.h"
#include "host/batch_fanout.h"
#include "host/key_creation.h"
#include "host/key_part_loading.h"
#include "host/keystore.h"
#include "host/rotation.h"
#include "host/signed_command.h"
#include "host/straggler_upgrade.h"
#include "proto/wire/status_codec.h"
#include "tests/support/in_process_unit.h"

namespace hsmsim::host {
namespace {

using ::hsmsim::testing::InProcessUnit;
using ::hsmsim::testing::InProcessUnitOptions;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr int kUnits = 3;
constexpr int kKeys = 600;
constexpr size_t kBatch = 25;  // 24 batches; 4 in flight per unit
constexpr int kSamples = 4;
constexpr int kSpareUnderSource = 8;  // blobs under the first key, kept aside

// KeystoreDir: a fresh directory for the keystore, in /dev/shm when there is
// one (SQLite's fsyncs are then free and the suite runs in seconds), else
// under $TMPDIR or /tmp; removed with its contents.
class KeystoreDir {
 public:
  KeystoreDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = std::filesystem::is_directory("/dev/shm")
                           ? "/dev/shm"
                           : (tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
    std::string tmpl = base + "/hsmsim-engine-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~KeystoreDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The status a test checkpoint stops the engine with, as if hsmctl died.
absl::Status Stopped(std::string_view point) {
  return Error(absl::StatusCode::kAborted, "TEST_STOPPED", StrCat("stopped at ", point));
}

struct Sample {
  std::string key;
  std::string plaintext;
  std::string wrapped;
};

class RotationEngineTest : public ::testing::Test {
 public:
  // unit(1) .. unit(3).
  InProcessUnit& unit(int i) { return *units_[static_cast<size_t>(i - 1)]; }

 protected:
  void SetUp() override {
    auto store = OpenSqliteKeystore(dir_.Join("keystore.db"), true);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    for (const char* name : {"alice", "bob"}) {
      auto pkey = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
      ASSERT_TRUE(pkey.ok());
      auto admin = MakeAdminKey(name, std::move(*pkey));
      ASSERT_TRUE(admin.ok());
      admins_.push_back(std::make_unique<AdminKey>(std::move(*admin)));
      signers_.push_back(admins_.back().get());
    }
    InProcessUnitOptions options;
    options.timeout = std::chrono::milliseconds(150);
    for (int i = 1; i <= kUnits; ++i) {
      auto unit = InProcessUnit::Create(StrCat("unit", i), options);
      ASSERT_TRUE(unit.ok()) << unit.status();
      units_.push_back(std::move(*unit));
    }
    source_vp_ = MakeKey(&source_parts_);
    target_vp_ = MakeKey(&target_parts_);
    for (auto& u : units_) Ceremony(*u);
    FillKeystore();
    for (auto& u : units_) ASSERT_TRUE(LoadAndCommit(*u, target_parts_, target_vp_).ok());
  }

  std::string MakeKey(std::vector<SecretBytes>* parts) {
    SecretBytes key(crypto::kMasterKeySize, 0);
    for (int i = 0; i < 3; ++i) {
      SecretBytes p(crypto::kKeyPartSize);
      EXPECT_TRUE(crypto::OpenSslEntropyInstance().Generate(absl::MakeSpan(p)).ok());
      for (size_t b = 0; b < key.size(); ++b) key[b] ^= p[b];
      parts->push_back(std::move(p));
    }
    return crypto::AsString(crypto::ComputeVerificationPattern(key));
  }

  absl::Status LoadAndCommit(UnitChannel& unit, const std::vector<SecretBytes>& parts,
                             const std::string& vp) {
    HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, unit.GetInfo());
    HSMSIM_ASSIGN_OR_RETURN(info, LoadKeyPartsOnUnit(unit, info, parts, signers_));
    return CommitNewOnUnit(unit, info, vp, signers_).status();
  }

  // Ceremony: two administrators, thresholds 2/2, the first master key
  // loaded, committed and set immediate.
  void Ceremony(UnitChannel& unit) {
    for (const AdminKey* admin : signers_) {
      v1::Command add;
      add.mutable_add_admin()->set_name(admin->name);
      add.mutable_add_admin()->set_public_key(admin->public_key_der);
      ASSERT_TRUE(IssueCommand(unit, add, {}).ok());
    }
    v1::Command th;
    th.mutable_set_thresholds()->set_signature_threshold(2);
    th.mutable_set_thresholds()->set_revocation_threshold(2);
    ASSERT_TRUE(IssueCommand(unit, th, signers_).ok());
    ASSERT_TRUE(LoadAndCommit(unit, source_parts_, source_vp_).ok());
    v1::Command setimm;
    setimm.mutable_set_immediate();
    ASSERT_TRUE(IssueCommand(unit, setimm, signers_).ok());
  }

  std::vector<std::string> Generate(UnitChannel& unit, const std::string& prefix, int n) {
    v1::Request r;
    r.mutable_generate_keys()->set_algorithm(v1::KEY_ALGORITHM_AES_256);
    for (int i = 0; i < n; ++i) r.mutable_generate_keys()->add_key_ids(StrCat(prefix, i));
    auto response = unit.Call(r);
    EXPECT_TRUE(ResponseStatus(response, unit.name()).ok());
    return {response->generate_keys().blobs().begin(), response->generate_keys().blobs().end()};
  }

  void FillKeystore() {
    std::vector<NewKey> keys;
    for (const std::string& blob : Generate(*units_[0], "key-", kKeys)) {
      keys.push_back(NewKey{StrCat("key-", keys.size()), blob, WkidOfVp(source_vp_)});
    }
    ASSERT_TRUE(store_->AddKeys(keys).ok());
    spare_ = Generate(*units_[1], "spare-", kSpareUnderSource);
    for (int i = 0; i < kSamples; ++i) {
      Sample s{StrCat("key-", i * 97), StrCat("data key number ", i, " of the test"), ""};
      v1::Request r;
      r.mutable_wrap_key()->set_blob(keys[static_cast<size_t>(i * 97)].blob);
      r.mutable_wrap_key()->set_plaintext(s.plaintext);
      auto response = units_[0]->Call(r);
      ASSERT_TRUE(ResponseStatus(response, "unit1").ok());
      s.wrapped = response->wrap_key().wrapped();
      samples_.push_back(s);
    }
  }

  // AddSpares stores the spare blobs (under the first key) as keys.
  void AddSpares(int n) {
    std::vector<NewKey> keys;
    for (int i = 0; i < n; ++i) {
      keys.push_back(
          NewKey{StrCat("spare-", i), spare_[static_cast<size_t>(i)], WkidOfVp(source_vp_)});
    }
    ASSERT_TRUE(store_->AddKeys(keys).ok());
  }

  std::vector<std::pair<FleetUnit, UnitChannel*>> Pairs() {
    std::vector<std::pair<FleetUnit, UnitChannel*>> out;
    for (auto& u : units_)
      out.emplace_back(FleetUnit{u->name(), "in-process", "", 0, true, false}, u.get());
    return out;
  }

  // Engine returns an engine as hsmctl makes one; `checkpoint` may be empty.
  std::unique_ptr<RotationEngine> Engine(
      std::function<absl::Status(std::string_view, int64_t)> checkpoint = nullptr,
      bool keystore_threads = true) {
    RotationOptions options;
    options.keystore_threads = keystore_threads;
    options.batch_size = kBatch;
    options.in_flight_per_unit = 4;
    options.say = [this](std::string_view line) { said_.emplace_back(line); };
    options.checkpoint = std::move(checkpoint);
    return std::make_unique<RotationEngine>(*store_, Pairs(), signers_, options);
  }

  // Rotate begins a rotation and runs it, as `hsmctl mk rotate` does.
  absl::Status Rotate(RotationEngine& engine, RotationReport& report) {
    HSMSIM_ASSIGN_OR_RETURN(RotationJournal journal, engine.Begin(source_vp_, target_vp_));
    return engine.Run(journal, report);
  }

  // Resume continues the journaled rotation, as `hsmctl mk rotate --resume`.
  absl::Status Resume(RotationReport& report) {
    auto journal = store_->ReadJournal();
    if (!journal.ok()) return journal.status();
    EXPECT_TRUE(journal->has_value());
    return Engine()->Run(**journal, report);
  }

  RotationPhase Phase() {
    auto journal = store_->ReadJournal();
    EXPECT_TRUE(journal.ok() && journal->has_value());
    return (*journal)->phase;
  }

  bool Said(std::string_view text) const {
    for (const std::string& line : said_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  // ExpectEveryKeyUsableEverywhere: DONE, every unit CURRENT = target and
  // NEW empty, every key (and `extra` more) under the target with no
  // pending blob and usable on every unit, every sample unwrapping to its
  // bytes.
  void ExpectEveryKeyUsableEverywhere(int extra = 0) {
    EXPECT_EQ(Phase(), RotationPhase::kDone);
    for (auto& u : units_) {
      auto info = u->GetInfo();
      ASSERT_TRUE(info.ok()) << info.status();
      EXPECT_EQ(info->current_register().verification_pattern(), target_vp_) << u->name();
      EXPECT_EQ(info->new_register().state(), v1::REGISTER_EMPTY) << u->name();
    }
    auto page = store_->ReadPage(0, kKeys + 100);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->size(), static_cast<size_t>(kKeys + extra));
    v1::Request check;
    for (const StoredKey& k : *page) {
      EXPECT_EQ(k.wkid, WkidOfVp(target_vp_)) << k.name;
      EXPECT_TRUE(k.pending_blob.empty()) << k.name;
      check.mutable_check_blobs()->add_blobs(k.blob);
    }
    for (auto& u : units_) {
      auto response = u->Call(check);
      ASSERT_TRUE(ResponseStatus(response, u->name()).ok());
      int usable = 0;
      for (const auto& c : response->check_blobs().results()) usable += c.status().code() == 0;
      EXPECT_EQ(usable, kKeys + extra) << u->name();
    }
    for (const Sample& s : samples_) {
      auto key = store_->FindKey(s.key);
      ASSERT_TRUE(key.ok() && key->has_value());
      for (auto& u : units_) {
        v1::Request r;
        r.mutable_unwrap_key()->set_blob((*key)->blob);
        r.mutable_unwrap_key()->set_wrapped(s.wrapped);
        auto response = u->Call(r);
        ASSERT_TRUE(ResponseStatus(response, u->name()).ok());
        EXPECT_EQ(response->unwrap_key().plaintext(), s.plaintext);
      }
    }
  }

  KeystoreDir dir_;
  std::unique_ptr<Keystore> store_;
  std::vector<std::unique_ptr<AdminKey>> admins_;
  std::vector<const AdminKey*> signers_;
  std::vector<std::unique_ptr<InProcessUnit>> units_;
  std::vector<SecretBytes> source_parts_, target_parts_;
  std::string source_vp_, target_vp_;
  std::vector<std::string> spare_;
  std::vector<Sample> samples_;
  std::vector<std::string> said_;
};

// --- Every checkpoint: the engine stops there (hsmctl died), then a new
// engine resumes from the journal to DONE. With power_loss every unit also
// crashes at that moment and restarts from its persisted state.

struct StopCase {
  std::string name;
  std::string point;
  int64_t at = 0;  // fires once keys_done (or units promoted) >= at
  RotationPhase journal_at_stop;
  bool power_loss = false;
};

void PrintTo(const StopCase& c, std::ostream* os) { *os << c.name; }

class CheckpointTest : public RotationEngineTest, public ::testing::WithParamInterface<StopCase> {};

TEST_P(CheckpointTest, StopsThereThenResumesToDone) {
  const StopCase& c = GetParam();
  bool fired = false;
  auto engine = Engine([&](std::string_view point, int64_t n) -> absl::Status {
    if (fired || point != c.point || n < c.at) return absl::OkStatus();
    fired = true;
    if (c.power_loss) {
      for (auto& u : units_) u->Crash();
    }
    return Stopped(point);
  });
  RotationReport report;
  absl::Status first = Rotate(*engine, report);
  ASSERT_TRUE(fired) << "checkpoint " << c.point << " never reached: " << first;
  EXPECT_EQ(ReasonOf(first), "TEST_STOPPED") << first;
  engine.reset();
  EXPECT_EQ(Phase(), c.journal_at_stop);
  if (c.power_loss) {
    for (auto& u : units_) ASSERT_TRUE(u->Restart().ok());
  }
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok()) << said_.size();
  ExpectEveryKeyUsableEverywhere();
  if (c.point == "reencrypt-batch-stored") {
    EXPECT_GE(resumed.keys_already_done, c.at);
    EXPECT_EQ(resumed.keys_already_done + resumed.keys_rewrapped, kKeys);
  }
}

std::vector<StopCase> StopCases() {
  std::vector<StopCase> base = {
      {"journal_written", "journal-written", 0, RotationPhase::kReencrypting},
      {"first_batch_stored", "reencrypt-batch-stored", 1, RotationPhase::kReencrypting},
      {"half_reencrypted", "reencrypt-batch-stored", kKeys / 2, RotationPhase::kReencrypting},
      {"last_batch_stored", "reencrypt-batch-stored", kKeys, RotationPhase::kReencrypting},
      {"reencrypted", "reencrypted", 0, RotationPhase::kReencrypted},
      {"promoting", "promoting", 0, RotationPhase::kPromoting},
      {"unit1_promoted", "unit-promoted", 1, RotationPhase::kPromoting},
      {"unit2_promoted", "unit-promoted", 2, RotationPhase::kPromoting},
      {"unit3_promoted", "unit-promoted", 3, RotationPhase::kPromoting},
      {"promoted", "promoted", 0, RotationPhase::kFinalizing},
      {"finalize_chunk", "finalize-chunk", 0, RotationPhase::kFinalizing},
      {"done", "done", 0, RotationPhase::kDone},
  };
  std::vector<StopCase> all;
  for (bool power_loss : {false, true}) {
    for (StopCase c : base) {
      c.power_loss = power_loss;
      c.name = StrCat(power_loss ? "power_loss_at_" : "hsmctl_dies_at_", c.name);
      all.push_back(c);
    }
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(EveryCheckpoint, CheckpointTest, ::testing::ValuesIn(StopCases()),
                         [](const auto& param_info) { return param_info.param.name; });

// --- Faults inside re-encryption: which unit does what, and what the
// first run must return.

struct ReencryptFaultCase {
  std::string name;
  // Set up the fault on the units before the run.
  std::function<void(RotationEngineTest&)> arm;
  // The reason the first run returns ("" = it reaches DONE at once).
  std::string first_run_reason;
  // Units dropped from re-encryption, in "unit N dropped" lines.
  std::vector<std::string> dropped;
};

void PrintTo(const ReencryptFaultCase& c, std::ostream* os) { *os << c.name; }

class ReencryptFaultTest : public RotationEngineTest,
                           public ::testing::WithParamInterface<ReencryptFaultCase> {
 public:
  static InProcessUnit& Unit(RotationEngineTest& t, int i) { return t.unit(i); }
};

TEST_P(ReencryptFaultTest, OtherUnitsFinishAndResumeReachesDone) {
  const ReencryptFaultCase& c = GetParam();
  c.arm(*this);
  RotationReport report;
  absl::Status first = Rotate(*Engine(), report);
  if (c.first_run_reason.empty()) {
    EXPECT_TRUE(first.ok()) << first;
  } else {
    EXPECT_EQ(ReasonOf(first), c.first_run_reason) << first;
  }
  for (const std::string& unit_name : c.dropped) {
    EXPECT_TRUE(Said(StrCat("unit ", unit_name, " dropped from re-encryption")))
        << unit_name << " was not dropped";
  }
  // No pending blob was ever stored under anything but the target.
  auto counts = store_->CountByWkid();
  ASSERT_TRUE(counts.ok());
  for (const WkidPairCount& wc : *counts) {
    EXPECT_TRUE(wc.pending_wkid.empty() || wc.pending_wkid == WkidOfVp(target_vp_));
  }
  for (auto& u : units_) {
    u->Release();
    if (u->crashed()) {
      ASSERT_TRUE(u->Restart().ok());
    }
  }
  if (!first.ok()) {
    RotationReport resumed;
    ASSERT_TRUE(Resume(resumed).ok());
  }
  ExpectEveryKeyUsableEverywhere();
}

void Arm(RotationEngineTest& t, int unit, const std::string& spec) {
  ASSERT_TRUE(ReencryptFaultTest::Unit(t, unit).ArmFault(spec).ok()) << spec;
}

std::vector<ReencryptFaultCase> ReencryptFaultCases() {
  std::vector<ReencryptFaultCase> cases;
  // A unit that dies during re-encryption is dropped; the others finish;
  // promotion then waits for it (UNAVAILABLE) and resume completes.
  for (int at : {0, 40, 120}) {
    cases.push_back(
        {StrCat("unit2_crashes_after_", at, "_blobs"),
         [at](RotationEngineTest& t) { Arm(t, 2, StrCat("reencrypt-after-blobs:crash:", at)); },
         std::string(kUnitUnreachable),
         {"unit2"}});
  }
  cases.push_back({"every_unit_crashes_mid_way",
                   [](RotationEngineTest& t) {
                     for (int u = 1; u <= kUnits; ++u) Arm(t, u, "reencrypt-after-blobs:crash:60");
                   },
                   // The last unit dropped did not answer: its transport reason
                   // (exit 3), not NO_UNIT_AVAILABLE (every unit refused, exit 1).
                   std::string(kUnitUnreachable),
                   {}});
  // A fault that fires once on an idempotent batch: the channel retries it
  // and nothing is dropped.
  for (auto [action, name] : {std::pair<const char*, const char*>{"hang", "hang"},
                              {"drop-connection", "drop_connection"}}) {
    cases.push_back({StrCat("unit1_", name, "_once_is_retried"),
                     [action = std::string(action)](RotationEngineTest& t) {
                       Arm(t, 1, StrCat("reencrypt-after-blobs:", action, ":30"));
                     },
                     "",
                     {}});
  }
  // A unit's refusal is not a transport error: dropped at once, its batch
  // goes to the others, and it still takes part in promotion.
  cases.push_back(
      {"unit3_answers_an_error_and_is_dropped",
       [](RotationEngineTest& t) { Arm(t, 3, "reencrypt-after-blobs:return-error:10"); },
       "",
       {"unit3"}});
  // Replies lost on the way: the channel retries (idempotent) and succeeds.
  cases.push_back(
      {"two_lost_replies_are_retried",
       [](RotationEngineTest& t) { t.unit(2).DropNextReplies(2, v1::Request::kReencryptBatch); },
       "",
       {}});
  // Every reply of a unit lost: kMaxLaneFailures in a row drop it.
  cases.push_back({"unit2_loses_every_reply_and_is_dropped",
                   [](RotationEngineTest& t) {
                     t.unit(2).DropNextReplies(1'000'000, v1::Request::kReencryptBatch);
                   },
                   "",
                   {"unit2"}});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Faults, ReencryptFaultTest, ::testing::ValuesIn(ReencryptFaultCases()),
                         [](const auto& param_info) { return param_info.param.name; });

TEST_F(RotationEngineTest, UnitHangingMidWayTimesOutIsDroppedAndOthersFinish) {
  // In step: unit2 hangs while it still has batches to answer.
  auto engine = Engine(
      [&](std::string_view point, int64_t) {
        if (point == "reencrypt-batch-stored") unit(2).Hang();
        return absl::OkStatus();
      },
      /*keystore_threads=*/false);
  RotationReport report;
  absl::Status first = Rotate(*engine, report);
  EXPECT_TRUE(Said("unit unit2 dropped from re-encryption: UNIT_TIMEOUT"));
  EXPECT_EQ(ReasonOf(first), kUnitTimeout) << first;  // promotion waits for it
  EXPECT_EQ(Phase(), RotationPhase::kReencrypted);
  unit(2).Release();
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere();
}

// A unit whose NEW register was replaced by another key mid-way answers
// with blobs under the wrong target WKID: none is stored, the unit is
// dropped, promotion refuses it, and reloading the right parts lets the
// rotation finish.
TEST_F(RotationEngineTest, UnitAnsweringWithWrongTargetWkidIsNeverStored) {
  std::vector<SecretBytes> other_parts;
  const std::string other_vp = MakeKey(&other_parts);
  bool replaced = false;
  // In step: unit2's NEW changes while it still has batches to answer.
  auto engine = Engine(
      [&](std::string_view point, int64_t) {
        if (point == "reencrypt-batch-stored" && !replaced) {
          replaced = true;
          v1::Command clear;
          clear.mutable_clear_new_master_key();
          EXPECT_TRUE(IssueCommand(unit(2), clear, signers_).ok());
          EXPECT_TRUE(LoadAndCommit(unit(2), other_parts, other_vp).ok());
        }
        return absl::OkStatus();
      },
      /*keystore_threads=*/false);
  RotationReport report;
  absl::Status first = Rotate(*engine, report);
  EXPECT_EQ(ReasonOf(first), "NEW_REGISTER_LOST") << first;
  EXPECT_TRUE(Said("unit unit2 dropped from re-encryption: WRONG_TARGET_KEY"));
  auto counts = store_->CountByWkid();
  ASSERT_TRUE(counts.ok());
  for (const WkidPairCount& wc : *counts) {
    EXPECT_NE(wc.pending_wkid, WkidOfVp(other_vp));
    EXPECT_NE(wc.wkid, WkidOfVp(other_vp));
  }
  for (int u = 1; u <= kUnits; ++u) {  // no unit was promoted
    EXPECT_EQ(unit(u).GetInfo()->current_register().verification_pattern(), source_vp_);
  }
  v1::Command clear;
  clear.mutable_clear_new_master_key();
  ASSERT_TRUE(IssueCommand(unit(2), clear, signers_).ok());
  ASSERT_TRUE(LoadAndCommit(unit(2), target_parts_, target_vp_).ok());
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere();
}

// --- Faults in set immediate, the only signed command of a rotation.

struct PromoteFaultCase {
  std::string name;
  int unit;
  std::string spec;           // armed before the run; "" = lose the reply
  bool done_in_one_run;       // the engine saw the promotion itself
  bool promoted_after_fault;  // the unit's promotion was persisted
};

void PrintTo(const PromoteFaultCase& c, std::ostream* os) { *os << c.name; }

class PromoteFaultTest : public RotationEngineTest,
                         public ::testing::WithParamInterface<PromoteFaultCase> {};

TEST_P(PromoteFaultTest, ResumeSkipsPromotedUnitsAndFinishes) {
  const PromoteFaultCase& c = GetParam();
  bool armed = false;
  auto engine = Engine([&](std::string_view point, int64_t) {
    if (point == "promoting" && !armed) {
      armed = true;
      if (c.spec.empty()) {
        unit(c.unit).DropNextReplies(1, v1::Request::kSignedCommand);
      } else {
        EXPECT_TRUE(unit(c.unit).ArmFault(c.spec).ok());
      }
    }
    return absl::OkStatus();
  });
  RotationReport report;
  absl::Status first = Rotate(*engine, report);
  ASSERT_TRUE(armed);
  if (c.done_in_one_run) {
    ASSERT_TRUE(first.ok()) << first;
    EXPECT_THAT(report.promoted_units, Contains(StrCat("unit", c.unit)));
    ExpectEveryKeyUsableEverywhere();
    return;
  }
  EXPECT_FALSE(first.ok());
  EXPECT_EQ(Phase(), RotationPhase::kPromoting);
  if (unit(c.unit).crashed()) {
    ASSERT_TRUE(unit(c.unit).Restart().ok());
  }
  unit(c.unit).Release();
  const bool promoted =
      unit(c.unit).GetInfo()->current_register().verification_pattern() == target_vp_;
  EXPECT_EQ(promoted, c.promoted_after_fault);
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  if (c.promoted_after_fault) {
    EXPECT_THAT(resumed.skipped_units, Contains(StrCat("unit", c.unit)));
  } else {
    EXPECT_THAT(resumed.promoted_units, Contains(StrCat("unit", c.unit)));
  }
  ExpectEveryKeyUsableEverywhere();
}

INSTANTIATE_TEST_SUITE_P(
    SetImmediate, PromoteFaultTest,
    ::testing::Values(
        PromoteFaultCase{"lost_reply_unit2", 2, "", true, true},
        PromoteFaultCase{"in_set_immediate_crash_unit2", 2, "in-set-immediate:crash", false, true},
        PromoteFaultCase{"in_set_immediate_crash_unit3", 3, "in-set-immediate:crash", false, true},
        PromoteFaultCase{"in_set_immediate_error_unit2", 2, "in-set-immediate:return-error", true,
                         true},
        PromoteFaultCase{"in_set_immediate_hang_unit1", 1, "in-set-immediate:hang", true, true},
        PromoteFaultCase{"after_persist_crash_unit1", 1, "after-persist:crash", false, true},
        PromoteFaultCase{"after_persist_drop_unit2", 2, "after-persist:drop-connection", true,
                         true},
        PromoteFaultCase{"before_persist_crash_unit1", 1, "before-persist:crash", false, false},
        PromoteFaultCase{"before_persist_error_unit3", 3, "before-persist:return-error", false,
                         false},
        PromoteFaultCase{"before_persist_hang_unit2", 2, "before-persist:hang", false, false}),
    [](const auto& param_info) { return param_info.param.name; });

TEST_F(RotationEngineTest, PromotionTouchesNoUnitWhileOneIsDown) {
  auto engine = Engine([&](std::string_view point, int64_t) {
    if (point == "reencrypted") unit(3).Crash();
    return absl::OkStatus();
  });
  RotationReport report;
  absl::Status first = Rotate(*engine, report);
  EXPECT_EQ(ReasonOf(first), kUnitUnreachable) << first;
  for (int u = 1; u <= 2; ++u) {
    EXPECT_EQ(unit(u).GetInfo()->current_register().verification_pattern(), source_vp_);
  }
  ASSERT_TRUE(unit(3).Restart().ok());
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  EXPECT_EQ(resumed.promoted_units.size(), 3u);
  ExpectEveryKeyUsableEverywhere();
}

TEST_F(RotationEngineTest, LostNewRegisterRefusesPromotionUntilReloaded) {
  auto engine = Engine([&](std::string_view point, int64_t) {
    if (point == "reencrypted") {
      v1::Command clear;
      clear.mutable_clear_new_master_key();
      EXPECT_TRUE(IssueCommand(unit(1), clear, signers_).ok());
    }
    return absl::OkStatus();
  });
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*engine, report)), "NEW_REGISTER_LOST");
  EXPECT_TRUE(report.promoted_units.empty());
  ASSERT_TRUE(LoadAndCommit(unit(1), target_parts_, target_vp_).ok());
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere();
}

TEST_F(RotationEngineTest, DamagedBlobStopsBeforePromotionNamingTheKey) {
  auto key = store_->FindKey("key-5");
  ASSERT_TRUE(key.ok() && key->has_value());
  std::string damaged = (*key)->blob;
  damaged[damaged.size() - 1] ^= 0x01;
  ASSERT_TRUE(store_->AddKeys({NewKey{"damaged", damaged, WkidOfVp(source_vp_)}}).ok());
  RotationReport report;
  absl::Status first = Rotate(*Engine(), report);
  EXPECT_EQ(ReasonOf(first), "KEYS_NOT_REENCRYPTED");
  EXPECT_THAT(std::string(first.message()), HasSubstr("damaged ("));
  EXPECT_EQ(Phase(), RotationPhase::kReencrypting);
  for (int u = 1; u <= kUnits; ++u) {
    EXPECT_EQ(unit(u).GetInfo()->current_register().verification_pattern(), source_vp_);
  }
}

TEST_F(RotationEngineTest, RunOnAFinishedRotationChangesNothing) {
  RotationReport report;
  ASSERT_TRUE(Rotate(*Engine(), report).ok());
  EXPECT_EQ(report.keys_rewrapped, kKeys);
  EXPECT_EQ(report.promoted_units.size(), 3u);
  RotationReport again;
  ASSERT_TRUE(Resume(again).ok());
  EXPECT_EQ(again.keys_rewrapped, 0);
  EXPECT_TRUE(again.promoted_units.empty());
  ExpectEveryKeyUsableEverywhere();
}

// --- Register changes made outside the engine (issue 11, input 1): set
// immediate on every unit while re-encryption is unfinished leaves the rest
// of the keys under every unit's OLD; the engine finishes from there.

TEST_F(RotationEngineTest, SetImmediateOnEveryUnitMidReencryptionIsFinishedFromOld) {
  auto engine = Engine([&](std::string_view point, int64_t done) {
    return point == "reencrypt-batch-stored" && done >= kKeys / 3 ? Stopped(point)
                                                                  : absl::OkStatus();
  });
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*engine, report)), "TEST_STOPPED");
  for (auto& u : units_) {
    v1::Command op;
    op.mutable_set_immediate();
    ASSERT_TRUE(IssueCommand(*u, op, signers_).ok()) << u->name();
  }
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  EXPECT_TRUE(Said("every unit already promoted"));
  EXPECT_GT(resumed.stragglers_moved, 0);
  ExpectEveryKeyUsableEverywhere();
}

// --- Finalization: keys still under the source key once every unit is
// promoted are moved OLD -> CURRENT by the one straggler pass.

TEST_F(RotationEngineTest, FinalizeMovesStragglersFromOld) {
  auto engine = Engine([&](std::string_view point, int64_t) {
    return point == "promoted" ? Stopped(point) : absl::OkStatus();
  });
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*engine, report)), "TEST_STOPPED");
  AddSpares(kSpareUnderSource);
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  EXPECT_EQ(resumed.stragglers_moved, kSpareUnderSource);
  ExpectEveryKeyUsableEverywhere(kSpareUnderSource);
}

TEST_F(RotationEngineTest, FinalizeStragglersSurviveOneUnitDown) {
  auto engine = Engine([&](std::string_view point, int64_t) {
    return point == "promoted" ? Stopped(point) : absl::OkStatus();
  });
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*engine, report)), "TEST_STOPPED");
  AddSpares(kSpareUnderSource);
  unit(1).Crash();
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  EXPECT_EQ(resumed.stragglers_moved, kSpareUnderSource);
  EXPECT_TRUE(Said("unit unit1 dropped from re-encryption OLD -> CURRENT"));
  ASSERT_TRUE(unit(1).Restart().ok());
  ExpectEveryKeyUsableEverywhere(kSpareUnderSource);
}

TEST_F(RotationEngineTest, FinalizeWithEveryUnitDownStaysFinalizing) {
  auto engine = Engine([&](std::string_view point, int64_t) {
    return point == "promoted" ? Stopped(point) : absl::OkStatus();
  });
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*engine, report)), "TEST_STOPPED");
  AddSpares(kSpareUnderSource);
  for (auto& u : units_) u->Crash();
  RotationReport resumed;
  // The last unit dropped did not answer: its transport reason (exit 3).
  EXPECT_EQ(ReasonOf(Resume(resumed)), kUnitUnreachable);
  EXPECT_EQ(Phase(), RotationPhase::kFinalizing);
  for (auto& u : units_) ASSERT_TRUE(u->Restart().ok());
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere(kSpareUnderSource);
}

TEST_F(RotationEngineTest, FinalizeLeavesADamagedStragglerUnderOldAndSaysSo) {
  auto engine = Engine([&](std::string_view point, int64_t) {
    return point == "promoted" ? Stopped(point) : absl::OkStatus();
  });
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*engine, report)), "TEST_STOPPED");
  std::string damaged = spare_[0];
  damaged[damaged.size() - 1] ^= 0x01;
  ASSERT_TRUE(store_->AddKeys({NewKey{"damaged", damaged, WkidOfVp(source_vp_)}}).ok());
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  EXPECT_EQ(Phase(), RotationPhase::kDone);
  EXPECT_EQ(resumed.stragglers_moved, 0);
  EXPECT_TRUE(Said("1 key(s) could not be re-encrypted OLD -> CURRENT"));
  EXPECT_TRUE(Said("damaged ("));
}

// --- keys upgrade: the same pass after a rotation.

class KeysUpgradeTest : public RotationEngineTest {
 protected:
  void SetUp() override {
    RotationEngineTest::SetUp();
    RotationReport report;
    ASSERT_TRUE(Rotate(*Engine(), report).ok());
  }
  absl::StatusOr<StragglerReport> Upgrade() {
    std::vector<UnitChannel*> channels;
    for (auto& u : units_) channels.push_back(u.get());
    StragglerOptions options;
    options.batch_size = 3;
    options.say = [this](std::string_view line) { said_.emplace_back(line); };
    return UpgradeStragglers(*store_, channels, WkidOfVp(source_vp_), WkidOfVp(target_vp_),
                             options);
  }
};

TEST_F(KeysUpgradeTest, MovesEveryKeyUnderOld) {
  AddSpares(kSpareUnderSource);
  auto upgraded = Upgrade();
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(upgraded->moved, kSpareUnderSource);
  EXPECT_EQ(upgraded->failed.count, 0);
  ExpectEveryKeyUsableEverywhere(kSpareUnderSource);
}

TEST_F(KeysUpgradeTest, CountsAndNamesAKeyNoUnitCanMove) {
  AddSpares(2);
  std::string damaged = spare_[2];
  damaged[damaged.size() - 1] ^= 0x01;
  ASSERT_TRUE(store_->AddKeys({NewKey{"damaged", damaged, WkidOfVp(source_vp_)}}).ok());
  auto upgraded = Upgrade();
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(upgraded->moved, 2);
  EXPECT_EQ(upgraded->failed.count, 1);
  EXPECT_THAT(upgraded->failed.List(), HasSubstr("damaged ("));
}

TEST_F(KeysUpgradeTest, RetriesLostRepliesAndDropsADeadUnit) {
  AddSpares(kSpareUnderSource);
  unit(1).DropNextReplies(2, v1::Request::kReencryptFromOld);
  unit(3).Crash();
  auto upgraded = Upgrade();
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(upgraded->moved, kSpareUnderSource);
  ASSERT_TRUE(unit(3).Restart().ok());
  ExpectEveryKeyUsableEverywhere(kSpareUnderSource);
}

// --- Keys created during a rotation (host/key_creation.h): they end under
// the target key, the rotation takes them along, and a plan made before the
// journal changed is never stored.

// A keystore that runs `hook` once, just before the first AddKeysPlanned:
// what another process does between a creator's plan and its insert.
class HookBeforeFirstStore final : public Keystore {
 public:
  HookBeforeFirstStore(Keystore& inner, std::function<void()> hook)
      : inner_(inner), hook_(std::move(hook)) {}
  absl::Status AddKeys(const std::vector<NewKey>& keys) override { return inner_.AddKeys(keys); }
  absl::Status AddKeysPlanned(const std::vector<PlacedKey>& keys,
                              const std::optional<RotationJournal>& planned) override {
    if (hook_) std::exchange(hook_, nullptr)();
    return inner_.AddKeysPlanned(keys, planned);
  }
  absl::StatusOr<int64_t> ReserveKeyNumbers(std::string_view prefix, int64_t count) override {
    return inner_.ReserveKeyNumbers(prefix, count);
  }
  absl::StatusOr<std::unique_ptr<RotationLock>> LockRotation(
      const RotationLockHolder& holder) override {
    return inner_.LockRotation(holder);
  }
  absl::StatusOr<std::optional<RotationLockHolder>> FindRotationLockHolder() override {
    return inner_.FindRotationLockHolder();
  }
  absl::StatusOr<std::optional<StoredKey>> FindKey(std::string_view name) override {
    return inner_.FindKey(name);
  }
  absl::StatusOr<std::vector<StoredKey>> ReadPage(int64_t after_id, size_t limit) override {
    return inner_.ReadPage(after_id, limit);
  }
  absl::StatusOr<std::vector<StoredKey>> ReadNeedingRewrap(int64_t after_id, size_t limit,
                                                           std::string_view source_wkid,
                                                           std::string_view target_wkid) override {
    return inner_.ReadNeedingRewrap(after_id, limit, source_wkid, target_wkid);
  }
  absl::StatusOr<std::vector<StoredKey>> ReadUnder(int64_t after_id, size_t limit,
                                                   std::string_view wkid) override {
    return inner_.ReadUnder(after_id, limit, wkid);
  }
  absl::Status StorePending(const std::vector<RewrappedKey>& rewrapped) override {
    return inner_.StorePending(rewrapped);
  }
  absl::Status ReplaceBlobs(const std::vector<RewrappedKey>& rewrapped) override {
    return inner_.ReplaceBlobs(rewrapped);
  }
  absl::Status Flush() override { return inner_.Flush(); }
  absl::StatusOr<std::unique_ptr<Keystore>> Reopen() override { return inner_.Reopen(); }
  absl::StatusOr<int64_t> PromotePending(std::string_view target_wkid) override {
    return inner_.PromotePending(target_wkid);
  }
  absl::Status RecordBlobProblems(const std::vector<BlobProblem>& problems) override {
    return inner_.RecordBlobProblems(problems);
  }
  absl::Status ClearBlobProblems() override { return inner_.ClearBlobProblems(); }
  absl::StatusOr<std::vector<StoredKey>> ReadProblemKeys(int64_t after_id, size_t limit) override {
    return inner_.ReadProblemKeys(after_id, limit);
  }
  absl::Status SetQuarantined(const std::vector<std::string>& names, bool quarantined) override {
    return inner_.SetQuarantined(names, quarantined);
  }
  absl::StatusOr<std::vector<WkidPairCount>> CountQuarantined() override {
    return inner_.CountQuarantined();
  }
  absl::StatusOr<int64_t> AbandonRotation(std::string_view target_wkid) override {
    return inner_.AbandonRotation(target_wkid);
  }
  absl::Status RecordRotationError(const RotationError& e) override {
    return inner_.RecordRotationError(e);
  }
  absl::Status ClearRotationError() override { return inner_.ClearRotationError(); }
  absl::StatusOr<std::optional<RotationError>> ReadRotationError() override {
    return inner_.ReadRotationError();
  }
  absl::StatusOr<std::vector<WkidPairCount>> CountByWkid() override { return inner_.CountByWkid(); }
  absl::StatusOr<int64_t> CountKeys() override { return inner_.CountKeys(); }
  absl::StatusOr<std::optional<RotationJournal>> ReadJournal() override {
    return inner_.ReadJournal();
  }
  absl::Status WriteJournal(const RotationJournal& journal) override {
    return inner_.WriteJournal(journal);
  }
  const std::string& location() const override { return inner_.location(); }

 private:
  Keystore& inner_;
  std::function<void()> hook_;
};

class KeyCreationTest : public RotationEngineTest {
 protected:
  // Create makes `n` keys named key-N on every unit, as hsmctl keys create.
  absl::Status Create(int n, KeyCreationReport& report, Keystore* store = nullptr) {
    KeyCreationSpec spec;
    spec.count = n;
    spec.keys_per_request = 7;
    spec.store_chunk = 10;
    return CreateKeys(store != nullptr ? *store : *store_, Pairs(), spec, report, nullptr,
                      [this](std::string_view line) { said_.emplace_back(line); });
  }

  // StopAt returns an engine that stops (as if hsmctl died) at `point`
  // once its count reaches `at`.
  std::unique_ptr<RotationEngine> StopAt(std::string point, int64_t at = 0) {
    return Engine([point, at](std::string_view p, int64_t n) {
      return p == point && n >= at ? Stopped(p) : absl::OkStatus();
    });
  }

  // ExpectUsableOnEveryUnitNow: every stored key can be used by every unit
  // now, with its blob or its pending blob.
  void ExpectUsableOnEveryUnitNow() {
    auto page = store_->ReadPage(0, kKeys + 100);
    ASSERT_TRUE(page.ok());
    for (auto& u : units_) {
      v1::Request blobs, pendings;
      for (const StoredKey& k : *page) {
        blobs.mutable_check_blobs()->add_blobs(k.blob);
        pendings.mutable_check_blobs()->add_blobs(k.pending_blob.empty() ? "-" : k.pending_blob);
      }
      auto a = u->Call(blobs);
      auto b = u->Call(pendings);
      ASSERT_TRUE(ResponseStatus(a, u->name()).ok() && ResponseStatus(b, u->name()).ok());
      for (int i = 0; i < a->check_blobs().results_size(); ++i) {
        EXPECT_TRUE(a->check_blobs().results(i).status().code() == 0 ||
                    b->check_blobs().results(i).status().code() == 0)
            << (*page)[static_cast<size_t>(i)].name << " on " << u->name();
      }
    }
  }

  int64_t StoredKeys() {
    auto n = store_->CountKeys();
    EXPECT_TRUE(n.ok());
    return n.ok() ? *n : -1;
  }
};

TEST_F(KeyCreationTest, KeysCreatedMidReencryptionGetAPendingBlobAndEndUnderTheTarget) {
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*StopAt("reencrypt-batch-stored", 200), report)), "TEST_STOPPED");
  KeyCreationReport created;
  ASSERT_TRUE(Create(30, created).ok()) << created.created;
  EXPECT_EQ(created.created, 30);
  EXPECT_EQ(created.with_pending, 30);
  EXPECT_EQ(created.target_wkid, WkidOfVp(target_vp_));
  ExpectUsableOnEveryUnitNow();
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  EXPECT_EQ(resumed.keys_rewrapped + resumed.keys_already_done, kKeys);
  ExpectEveryKeyUsableEverywhere(30);
}

TEST_F(KeyCreationTest, KeysCreatedWhenSetImmediateReachedOneUnitGoToTheOthers) {
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*StopAt("unit-promoted", 1), report)), "TEST_STOPPED");
  ASSERT_EQ(Phase(), RotationPhase::kPromoting);
  KeyCreationReport created;
  ASSERT_TRUE(Create(30, created).ok());
  EXPECT_EQ(created.created, 30);
  EXPECT_EQ(created.with_pending, 30);
  EXPECT_TRUE(Said("unit unit1 takes no part in key creation: already promoted"));
  ExpectUsableOnEveryUnitNow();  // unit1 uses their blobs under its OLD
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere(30);
}

TEST_F(KeyCreationTest, KeysCreatedWhileFinalizingAreUnderTheTarget) {
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*StopAt("promoted"), report)), "TEST_STOPPED");
  ASSERT_EQ(Phase(), RotationPhase::kFinalizing);
  KeyCreationReport created;
  ASSERT_TRUE(Create(30, created).ok());
  EXPECT_EQ(created.created, 30);
  EXPECT_EQ(created.with_pending, 0);
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere(30);
}

TEST_F(KeyCreationTest, UnitsDisagreeingOnCurrentWithoutARotationCreateNothing) {
  // A set immediate done by hand that failed on unit3: unit1 and unit2 on
  // the target, unit3 still on the source; no rotation journaled.
  for (int u = 1; u <= 2; ++u) {
    v1::Command setimm;
    setimm.mutable_set_immediate();
    ASSERT_TRUE(IssueCommand(unit(u), setimm, signers_).ok());
  }
  KeyCreationReport created;
  absl::Status s = Create(30, created);
  EXPECT_EQ(ReasonOf(s), "CURRENT_VP_DIFFERS") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("unit3 hold CURRENT"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("hsmctl recover"));
  EXPECT_EQ(created.created, 0);
  EXPECT_EQ(StoredKeys(), kKeys);
}

TEST_F(KeyCreationTest, UnitThatLostItsNewKeyTakesNoPart) {
  RotationReport report;
  EXPECT_EQ(ReasonOf(Rotate(*StopAt("reencrypted"), report)), "TEST_STOPPED");
  v1::Command clear;
  clear.mutable_clear_new_master_key();
  ASSERT_TRUE(IssueCommand(unit(2), clear, signers_).ok());
  unit(3).Crash();
  KeyCreationReport created;
  ASSERT_TRUE(Create(30, created).ok());
  EXPECT_EQ(created.with_pending, 30);
  EXPECT_TRUE(Said("unit unit2 takes no part in key creation: NEW_LOST"));
  EXPECT_TRUE(Said("unit unit3 takes no part in key creation: UNREACHABLE"));
  ASSERT_TRUE(unit(3).Restart().ok());
  ASSERT_TRUE(LoadAndCommit(unit(2), target_parts_, target_vp_).ok());
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere(30);
}

// keys create planned with no rotation open; a whole rotation ran before its
// first insert. The stale chunk is refused (JOURNAL_CHANGED), never stored
// under the old key, and the keys are made again under the new CURRENT.
TEST_F(KeyCreationTest, ARotationBetweenPlanAndInsertNeverGetsKeysUnderTheOldKey) {
  HookBeforeFirstStore store(*store_, [this] {
    RotationReport report;
    ASSERT_TRUE(Rotate(*Engine(), report).ok());
  });
  KeyCreationReport created;
  ASSERT_TRUE(Create(30, created, &store).ok());
  EXPECT_EQ(created.created, 30);
  EXPECT_EQ(created.plans, 2);
  EXPECT_TRUE(Said("the rotation journal changed"));
  ExpectEveryKeyUsableEverywhere(30);
}

TEST_F(KeyCreationTest, ARotationBegunBetweenPlanAndInsertTakesTheNewKeysAlong) {
  HookBeforeFirstStore store(*store_, [this] {
    RotationReport report;
    EXPECT_EQ(ReasonOf(Rotate(*StopAt("journal-written"), report)), "TEST_STOPPED");
  });
  KeyCreationReport created;
  ASSERT_TRUE(Create(30, created, &store).ok());
  EXPECT_EQ(created.created, 30);
  EXPECT_EQ(created.with_pending, 30);
  RotationReport resumed;
  ASSERT_TRUE(Resume(resumed).ok());
  ExpectEveryKeyUsableEverywhere(30);
}

// A name taken between reservation and insert (another writer): the count
// reported is what was stored, 0, not what was generated.
TEST_F(KeyCreationTest, ACollisionAtTheFirstKeyReportsNothingStored) {
  HookBeforeFirstStore store(*store_, [this] {
    ASSERT_TRUE(store_->AddKeys({NewKey{"key-600", spare_[0], WkidOfVp(source_vp_)}}).ok());
  });
  KeyCreationReport created;
  absl::Status s = Create(5, created, &store);
  EXPECT_EQ(ReasonOf(s), "KEY_EXISTS") << s;
  EXPECT_EQ(created.created, 0);
  EXPECT_EQ(StoredKeys(), kKeys + 1);
}

// The keystore's writer thread stores the chunks in order; when one is
// refused, the run stops and counts exactly the keys stored before it.
TEST_F(KeyCreationTest, ARefusedChunkMidRunCountsOnlyTheKeysStoredBeforeIt) {
  HookBeforeFirstStore store(*store_, [this] {
    ASSERT_TRUE(store_->AddKeys({NewKey{"key-640", spare_[0], WkidOfVp(source_vp_)}}).ok());
  });
  KeyCreationReport created;
  absl::Status s = Create(60, created, &store);
  EXPECT_EQ(ReasonOf(s), "KEY_EXISTS") << s;
  EXPECT_LT(created.created, 60);
  EXPECT_EQ(StoredKeys(), kKeys + 1 + created.created) << "reported = stored";
}

// An interrupted keys create leaves gaps (key-0..key-599, then key-1000):
// new names start above the highest stored number.
TEST_F(KeyCreationTest, NewNamesNeverCollideWithStoredNamesAfterGaps) {
  ASSERT_TRUE(store_->AddKeys({NewKey{"key-1000", spare_[0], WkidOfVp(source_vp_)}}).ok());
  KeyCreationReport created;
  ASSERT_TRUE(Create(5, created).ok());
  EXPECT_EQ(created.created, 5);
  for (int n = 1001; n <= 1005; ++n) {
    auto key = store_->FindKey(StrCat("key-", n));
    ASSERT_TRUE(key.ok());
    EXPECT_TRUE(key->has_value()) << n;
  }
  KeyCreationReport again;
  ASSERT_TRUE(Create(5, again).ok());
  EXPECT_EQ(StoredKeys(), kKeys + 11);
}

// --- One rotation at a time, and set immediate reports what happened.

TEST_F(RotationEngineTest, SetImmediateDoneByAnotherIsNotReportedAsALostReply) {
  // Another command promotes unit2 between this engine's look and its set
  // immediate: the unit refuses (nothing to promote), and the report says
  // so rather than claiming a lost reply.
  auto engine = Engine([&](std::string_view point, int64_t) {
    if (point == "promoting") {
      v1::Command setimm;
      setimm.mutable_set_immediate();
      EXPECT_TRUE(IssueCommand(unit(2), setimm, signers_).ok());
    }
    return absl::OkStatus();
  });
  RotationReport report;
  ASSERT_TRUE(Rotate(*engine, report).ok());
  EXPECT_FALSE(Said("reply was lost"));
  EXPECT_TRUE(Said("unit unit2: already promoted by another command"));
  EXPECT_THAT(report.skipped_units, Contains("unit2"));
  EXPECT_EQ(report.promoted_units.size(), 2u);
  ExpectEveryKeyUsableEverywhere();
}

// --- The fan-out itself.

// A channel that answers GetInfo at once and counts what it was sent.
class CountingChannel final : public UnitChannel {
 public:
  explicit CountingChannel(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  void CallAsync(v1::Request request, Callback done) override {
    ++sent;
    v1::Response response;
    response.set_id(request.id());
    *response.mutable_status() = wire::ToWireStatus(
        fail ? Error(absl::StatusCode::kInternal, "BROKEN", "broken") : absl::OkStatus());
    done(std::move(response));
  }
  int sent = 0;
  bool fail = false;

 private:
  std::string name_;
};

TEST(BatchFanoutTest, PicksTheLeastLoadedLaneUnderTheCap) {
  CountingChannel a("a"), b("b");
  BatchFanoutOptions options;
  options.in_flight_per_lane = 2;
  BatchFanout fanout({&a, &b}, options);
  std::vector<size_t> picked;
  while (auto lane = fanout.PickLane()) {
    picked.push_back(*lane);
    fanout.Send(*lane, BatchFanout::Batch{});
  }
  EXPECT_EQ(picked, (std::vector<size_t>{0, 1, 0, 1}));
  EXPECT_EQ(fanout.in_flight(), 4);
  fanout.Next();
  EXPECT_TRUE(fanout.PickLane().has_value());
}

TEST(BatchFanoutTest, DropsARefusingLaneAndGivesItsBatchToAnother) {
  CountingChannel a("a"), b("b");
  a.fail = true;
  BatchFanoutOptions options;
  options.activity = "the test";
  BatchFanout fanout({&a, &b}, options);
  int produced = 0, handled = 0;
  std::vector<std::string> said;
  absl::Status ran = fanout.Run(
      [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
        if (produced == 10) return std::nullopt;
        return BatchFanout::Batch{v1::Request(), static_cast<uint64_t>(produced++), 0};
      },
      [&](size_t lane, const BatchFanout::Batch&, v1::Response&) {
        EXPECT_EQ(lane, 1u);
        ++handled;
        return absl::OkStatus();
      },
      [&](std::string_view line) { said.emplace_back(line); });
  EXPECT_TRUE(ran.ok()) << ran;
  EXPECT_EQ(handled, 10);
  EXPECT_FALSE(fanout.live(0));
  EXPECT_EQ(a.sent, kDefaultInFlightPerLane);  // the first fill, before any answer
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], HasSubstr("unit a dropped from the test: BROKEN"));
}

TEST(BatchFanoutTest, TransportErrorsDropALaneOnlyAfterTheLimitInARow) {
  CountingChannel a("a");
  BatchFanout fanout({&a}, BatchFanoutOptions{});
  const absl::Status lost = Error(absl::StatusCode::kUnavailable, kUnitUnreachable, "lost");
  for (int i = 1; i < kMaxLaneFailures; ++i) EXPECT_FALSE(fanout.RecordFailure(0, lost));
  fanout.RecordSuccess(0);
  for (int i = 1; i < kMaxLaneFailures; ++i) EXPECT_FALSE(fanout.RecordFailure(0, lost));
  EXPECT_TRUE(fanout.live(0));
  EXPECT_TRUE(fanout.RecordFailure(0, lost));
  EXPECT_FALSE(fanout.AnyLive());
  EXPECT_THAT(fanout.drop_reason(0), HasSubstr("UNIT_UNREACHABLE"));
}

}  // namespace
}  // namespace hsmsim::host

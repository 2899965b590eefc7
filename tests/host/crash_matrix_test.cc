// The crash matrix (docs/reliability.md section 5): a
// rotation of a 3-unit fleet is killed at every phase boundary and at five
// points inside re-encryption; what is killed is hsmctl itself, one unit, or
// every unit at once (power loss). Then what died is restarted, `hsmctl
// recover` must name the situation the point implies, its action is applied
// (mk rotate --resume or recover --apply), and finally every key verifies on
// every unit, every sample data key unwraps to the same bytes, every CURRENT
// is the target master key and the journal is DONE.
//
// How each kill is made:
// - hsmctl: HSMSIM_TEST_CRASH_AT=POINT[:N] in that one hsmctl run's
//   environment; hsmctl _exit(137)s at the checkpoint (no cleanup).
// - one unit: a crash fault armed on it (reencrypt-after-blobs N,
//   before-persist / after-persist / in-set-immediate of its set immediate);
//   during finalization no unit is used, so there hsmctl is crashed at the
//   checkpoint and one unit is SIGKILLed right after.
// - all units: inside re-encryption, every unit armed with the same
//   reencrypt-after-blobs crash; at a phase boundary, hsmctl crashed at the
//   checkpoint and every unit SIGKILLed (pids from the manifest) before
//   anything else runs: a power loss of the whole machine.
//
// Sizes: 1,500 keys, batches of 100, 5 batches in flight per unit, so each
// unit is handed exactly 5 batches (500 keys) at the start and
// reencrypt-after-blobs N = X% of 500 kills a unit X% of the way through
// its share.
//
// Run the whole matrix in one process to get the table printed at the end:
//   build/tests/host/crash_matrix_test
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

constexpr int kKeys = 1'500;
constexpr int kBatch = 100;
constexpr int kInFlight = 5;  // 3 units x 5 x 100 = every key handed out at once
constexpr int kUnitShare = kKeys / 3;

enum class Killed { kHsmctl, kOneUnit, kAllUnits };

std::string_view KilledName(Killed k) {
  switch (k) {
    case Killed::kHsmctl:
      return "hsmctl";
    case Killed::kOneUnit:
      return "one unit";
    case Killed::kAllUnits:
      return "all units";
  }
  return "?";
}

struct ArmedFault {
  std::string unit;
  std::string point;
  int after_blobs = -1;  // reencrypt-after-blobs only
};

struct CrashCase {
  std::string name;   // test name
  std::string where;  // matrix row
  Killed killed = Killed::kHsmctl;
  std::string how;                           // the mechanism, for the table
  std::string crash_at;                      // HSMSIM_TEST_CRASH_AT, "" for none
  std::vector<ArmedFault> faults;            // crash faults armed before the run
  std::vector<std::string> kill_after;       // SIGKILLed as soon as hsmctl exits
  std::vector<std::string> expect_dead;      // units down when hsmctl has exited
  bool torn_state_write = false;             // leave a torn unit.state.tmp in each dead unit
  std::string expect_phase;                  // journal phase when hsmctl stopped
  std::string expect_situation;              // recover, after the restart
  std::vector<std::string> expect_promoted;  // units whose CURRENT is the target then
  bool postgres = false;                     // the fleet's keystore in PostgreSQL
};

const std::vector<std::string> kAll = {"unit1", "unit2", "unit3"};

std::vector<CrashCase> MakeCases() {
  const std::vector<int> percents = {10, 30, 50, 70, 90};
  std::vector<CrashCase> cases;
  // --- hsmctl, at every checkpoint.
  auto hsmctl = [&](std::string where, std::string slug, std::string point, std::string phase,
                    std::string situation, std::vector<std::string> promoted) {
    CrashCase c;
    c.name = slug + "_hsmctl";
    c.where = std::move(where);
    c.killed = Killed::kHsmctl;
    c.how = StrCat("HSMSIM_TEST_CRASH_AT=", point);
    c.crash_at = std::move(point);
    c.expect_phase = std::move(phase);
    c.expect_situation = std::move(situation);
    c.expect_promoted = std::move(promoted);
    return c;
  };
  // --- all units, at a checkpoint: hsmctl crashes there and every unit is
  // SIGKILLed before anything else runs.
  auto power_loss = [&](CrashCase c) {
    c.name.replace(c.name.find("_hsmctl"), 7, "_all_units");
    c.killed = Killed::kAllUnits;
    c.how = StrCat("power loss: ", c.how, ", then SIGKILL of unit1-3");
    c.kill_after = kAll;
    c.expect_dead = kAll;
    return c;
  };
  auto one_unit = [&](std::string where, std::string slug, std::string how,
                      std::vector<ArmedFault> faults, std::string dead, std::string phase,
                      std::string situation, std::vector<std::string> promoted) {
    CrashCase c;
    c.name = slug + "_one_unit";
    c.where = std::move(where);
    c.killed = Killed::kOneUnit;
    c.how = std::move(how);
    c.faults = std::move(faults);
    c.expect_dead = {std::move(dead)};
    c.expect_phase = std::move(phase);
    c.expect_situation = std::move(situation);
    c.expect_promoted = std::move(promoted);
    return c;
  };

  // journal-written: the journal says REENCRYPTING, nothing re-encrypted.
  cases.push_back(hsmctl("journal written", "journal_written", "journal-written", "REENCRYPTING",
                         "REENCRYPTION_UNFINISHED", {}));
  cases.push_back(one_unit("journal written", "journal_written",
                           "unit1: reencrypt-after-blobs crash 0 (dies on its first batch)",
                           {{"unit1", "reencrypt-after-blobs", 0}}, "unit1", "REENCRYPTED",
                           "SET_IMMEDIATE_ALL", {}));
  cases.push_back(power_loss(cases[0]));
  for (int pct : percents) {
    const std::string where = StrCat("re-encryption ", pct, "%");
    const std::string slug = StrCat("reencrypt_", pct, "pct");
    const int keys = kKeys * pct / 100;
    const int unit_blobs = kUnitShare * pct / 100;
    cases.push_back(hsmctl(where, slug, StrCat("reencrypt-batch-stored:", keys), "REENCRYPTING",
                           "REENCRYPTION_UNFINISHED", {}));
    cases.push_back(one_unit(where, slug,
                             StrCat("unit2: reencrypt-after-blobs crash ", unit_blobs, " (", pct,
                                    "% of its ", kUnitShare, ")"),
                             {{"unit2", "reencrypt-after-blobs", unit_blobs}}, "unit2",
                             "REENCRYPTED", "SET_IMMEDIATE_ALL", {}));
    CrashCase all;
    all.name = slug + "_all_units";
    all.where = where;
    all.killed = Killed::kAllUnits;
    all.how = StrCat("unit1-3: reencrypt-after-blobs crash ", unit_blobs, " each");
    for (const std::string& u : kAll)
      all.faults.push_back({u, "reencrypt-after-blobs", unit_blobs});
    all.expect_dead = kAll;
    all.expect_phase = "REENCRYPTING";
    all.expect_situation = "REENCRYPTION_UNFINISHED";
    cases.push_back(all);
  }
  // reencrypted: every pending blob stored, the rewrap message printed.
  cases.push_back(
      hsmctl("re-encrypted", "reencrypted", "reencrypted", "REENCRYPTED", "SET_IMMEDIATE_ALL", {}));
  cases.push_back(one_unit("re-encrypted", "reencrypted",
                           "unit1: before-persist crash (its set immediate, the first; a torn "
                           "unit.state.tmp is left)",
                           {{"unit1", "before-persist"}}, "unit1", "PROMOTING", "SET_IMMEDIATE_ALL",
                           {}));
  cases.back().torn_state_write = true;
  cases.push_back(power_loss(cases[cases.size() - 2]));
  // promoting: the journal says PROMOTING, no unit promoted yet.
  cases.push_back(
      hsmctl("promoting", "promoting", "promoting", "PROMOTING", "SET_IMMEDIATE_ALL", {}));
  cases.push_back(one_unit(
      "promoting", "promoting", "unit1: after-persist crash (its set immediate is saved, no reply)",
      {{"unit1", "after-persist"}}, "unit1", "PROMOTING", "SET_IMMEDIATE_REST", {"unit1"}));
  cases.push_back(power_loss(cases[cases.size() - 2]));
  cases.back().torn_state_write = true;
  // after the first unit was promoted.
  cases.push_back(hsmctl("after unit1 promoted", "unit_promoted_1", "unit-promoted:1", "PROMOTING",
                         "SET_IMMEDIATE_REST", {"unit1"}));
  cases.push_back(one_unit("after unit1 promoted", "unit_promoted_1",
                           "unit2: in-set-immediate crash (promoted and saved, no reply)",
                           {{"unit2", "in-set-immediate"}}, "unit2", "PROMOTING",
                           "SET_IMMEDIATE_REST", {"unit1", "unit2"}));
  cases.push_back(power_loss(cases[cases.size() - 2]));
  cases.back().torn_state_write = true;
  // promoted: every unit promoted.
  cases.push_back(
      hsmctl("promoted", "promoted", "promoted", "FINALIZING", "FINALIZE_KEYSTORE", kAll));
  cases.push_back(
      one_unit("promoted", "promoted", "unit3: in-set-immediate crash (the last set immediate)",
               {{"unit3", "in-set-immediate"}}, "unit3", "PROMOTING", "FINALIZE_KEYSTORE", kAll));
  cases.push_back(power_loss(cases[cases.size() - 2]));
  // during finalization (after the pending blobs became the blobs, before DONE).
  cases.push_back(hsmctl("finalizing", "finalizing", "finalize-chunk", "FINALIZING",
                         "FINALIZE_KEYSTORE", kAll));
  {
    CrashCase c = cases.back();
    c.name = "finalizing_one_unit";
    c.killed = Killed::kOneUnit;
    c.how =
        "HSMSIM_TEST_CRASH_AT=finalize-chunk, then SIGKILL of unit3 (no unit takes part in "
        "finalization)";
    c.kill_after = {"unit3"};
    c.expect_dead = {"unit3"};
    cases.push_back(c);
  }
  cases.push_back(power_loss(cases[cases.size() - 2]));
  // A subset on a PostgreSQL keystore (issue 14): hsmctl killed at every
  // checkpoint, and a unit killed mid-re-encryption.
  const std::vector<std::string> on_postgres = {
      "journal_written_hsmctl", "reencrypt_50pct_hsmctl", "reencrypt_50pct_one_unit",
      "reencrypted_hsmctl",     "promoting_hsmctl",       "unit_promoted_1_hsmctl",
      "promoted_hsmctl",        "finalizing_hsmctl"};
  const size_t sqlite_cases = cases.size();
  for (size_t i = 0; i < sqlite_cases; ++i) {
    if (std::find(on_postgres.begin(), on_postgres.end(), cases[i].name) == on_postgres.end()) {
      continue;
    }
    CrashCase c = cases[i];
    c.name += "_postgresql";
    c.where += " (PostgreSQL keystore)";
    c.postgres = true;
    cases.push_back(c);
  }
  return cases;
}

void PrintTo(const CrashCase& c, std::ostream* os) { *os << c.name; }

// The table printed when the matrix ran in one process.
std::vector<std::string>& Summary() {
  static std::vector<std::string> lines;
  return lines;
}

class SummaryPrinter : public ::testing::Environment {
 public:
  void TearDown() override {
    if (Summary().empty()) return;
    std::cout << "\ncrash matrix (" << Summary().size() << " cases, " << kKeys << " keys each):\n"
              << "where | killed | how | hsmctl exit | journal | recover before restart | "
                 "recover after restart | applied | result\n";
    for (const std::string& line : Summary()) std::cout << line << "\n";
  }
};
[[maybe_unused]] ::testing::Environment* const kSummaryPrinter =
    ::testing::AddGlobalTestEnvironment(new SummaryPrinter);

class CrashMatrixTest : public RotationFixture, public ::testing::WithParamInterface<CrashCase> {
 protected:
  std::string Situation(const RunResult& r) {
    auto doc = json::parse(r.out, nullptr, false);
    if (doc.is_discarded() || !doc.contains("situation")) return "NO_JSON: " + Describe(r);
    return doc["situation"].get<std::string>();
  }

  // LeaveTornStateWrite writes what a unit killed in the middle of saving
  // its state leaves behind: a partial temp file next to the intact state.
  void LeaveTornStateWrite(const std::string& unit) {
    FleetManifest m = Manifest();
    const FleetUnit* u = m.FindUnit(unit);
    ASSERT_NE(u, nullptr);
    auto state = ReadFileBytes((fs::path(u->state_dir) / "unit.state").string());
    ASSERT_TRUE(state.ok()) << state.status();
    std::ofstream((fs::path(u->state_dir) / "unit.state.tmp").string(), std::ios::binary)
        << state->substr(0, state->size() / 2);
  }
};

TEST_P(CrashMatrixTest, RecoverThenEveryKeyUnwraps) {
  const CrashCase& c = GetParam();
  if (c.postgres) {
    ASSERT_NO_FATAL_FAILURE(UsePostgres());
    if (IsSkipped()) return;
  }
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(kKeys, /*faults=*/true));
  std::map<std::string, std::string> unit_ids;
  for (const std::string& u : UnitNames()) {
    auto info = Client(u)->GetInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    unit_ids[u] = info->unit_id();
  }
  for (const ArmedFault& f : c.faults) {
    std::vector<std::string> args = {"fault", "inject", f.unit, f.point, "crash"};
    if (f.after_blobs >= 0) args.push_back(std::to_string(f.after_blobs));
    ASSERT_NO_FATAL_FAILURE(MustRun(args));
  }

  std::vector<std::string> rotate = {
      "mk",           "rotate",      "--sign",          sign_,          "--batch-size",
      StrCat(kBatch), "--in-flight", StrCat(kInFlight), "--timeout-ms", "3000"};
  std::vector<std::string> env;
  if (!c.crash_at.empty()) env.push_back("HSMSIM_TEST_CRASH_AT=" + c.crash_at);
  RunResult r = HsmctlWithEnv(rotate, env);
  // Power loss: every unit dies before anything else runs.
  ASSERT_NO_FATAL_FAILURE(KillUnits(c.kill_after));
  if (!c.crash_at.empty()) {
    ASSERT_EQ(r.exit_code, 137) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("HSMSIM_TEST_CRASH_AT")) << Describe(r);
  } else {
    ASSERT_NE(r.exit_code, 0) << "the unit's crash must stop the rotation\n" << Describe(r);
    ASSERT_NE(r.exit_code, 137) << Describe(r);
  }
  const std::string phase = JournalPhase();
  EXPECT_EQ(phase, c.expect_phase) << Describe(r);
  std::vector<std::string> dead;
  for (const std::string& u : UnitNames()) {
    if (!UnitAlive(u)) dead.push_back(u);
  }
  EXPECT_EQ(dead, c.expect_dead) << "the fault did not fire where expected\n" << Describe(r);

  std::string before_restart = "-";
  if (!dead.empty()) {
    RunResult rec = Hsmctl({"recover", "--json"});
    before_restart = Situation(rec);
    EXPECT_EQ(before_restart, "UNITS_UNREACHABLE") << Describe(rec);
    EXPECT_EQ(rec.exit_code, 1) << Describe(rec);
    for (const std::string& u : dead) {
      if (c.torn_state_write) {
        ASSERT_NO_FATAL_FAILURE(LeaveTornStateWrite(u));
      }
      ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "restart", u}));
    }
  }
  // Never a blank unit: every unit is the same unit after its restart.
  for (const std::string& u : UnitNames()) {
    auto info = Client(u)->GetInfo();
    ASSERT_TRUE(info.ok()) << u << ": " << info.status();
    EXPECT_EQ(info->unit_id(), unit_ids[u]) << u << " came back blank";
  }

  RunResult rec = Hsmctl({"recover", "--json"});
  const std::string situation = Situation(rec);
  EXPECT_EQ(situation, c.expect_situation) << Describe(rec);
  EXPECT_EQ(rec.exit_code, 1) << Describe(rec);
  // The registers: which units hold the target in CURRENT already (the old
  // or the new state, never neither).
  std::vector<std::string> promoted;
  auto doc = json::parse(rec.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << Describe(rec);
  for (const json& u : doc["units"]) {
    ASSERT_TRUE(u["reachable"].get<bool>()) << u.dump();
    const std::string current = u["current"].get<std::string>();
    if (current == "VALID " + target_vp_.substr(0, 16)) {
      promoted.push_back(u["unit"].get<std::string>());
    } else {
      EXPECT_EQ(u["new"].get<std::string>(), "FULL_COMMITTED " + target_vp_.substr(0, 16))
          << u.dump();
    }
  }
  EXPECT_EQ(promoted, c.expect_promoted) << rec.out;

  // Apply what recover says.
  std::string applied;
  RunResult apply;
  if (situation == "REENCRYPTION_UNFINISHED") {
    EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("mk rotate --resume"));
    applied = "mk rotate --resume";
    apply = Hsmctl(
        {"mk", "rotate", "--resume", "--sign", sign_, "--batch-size", StrCat(kBatch), "--json"});
  } else {
    EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("recover --apply"));
    applied = "recover --apply";
    apply =
        Hsmctl({"recover", "--apply", "--sign", sign_, "--batch-size", StrCat(kBatch), "--json"});
  }
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
  // No rotation in progress any more. (recover then runs the pre-checks of
  // a next rotation, which fail on the empty NEW registers: documented.)
  RunResult after = Hsmctl({"recover", "--json"});
  auto after_doc = json::parse(after.out, nullptr, false);
  ASSERT_FALSE(after_doc.is_discarded()) << Describe(after);
  EXPECT_EQ(after_doc["journal_phase"], "DONE") << after.out;
  EXPECT_THAT(after_doc["observed"].get<std::string>(), HasSubstr("no rotation in progress"));

  const bool passed = !HasFailure();
  std::ostringstream line;
  line << c.where << " | " << KilledName(c.killed) << " | " << c.how << " | " << r.exit_code
       << " | " << phase << " | " << before_restart << " | " << situation << " | " << applied
       << " | " << (passed ? "DONE, 1500/1500 keys verify, 5/5 samples unwrap" : "FAILED");
  std::cout << "CRASH-MATRIX " << line.str() << "\n";
  Summary().push_back(line.str());
  RecordProperty("where", c.where);
  RecordProperty("killed", std::string(KilledName(c.killed)));
  RecordProperty("how", c.how);
  RecordProperty("journal_at_stop", phase);
  RecordProperty("recover_before_restart", before_restart);
  RecordProperty("recover_situation", situation);
  RecordProperty("applied", applied);
}

INSTANTIATE_TEST_SUITE_P(Matrix, CrashMatrixTest, ::testing::ValuesIn(MakeCases()),
                         [](const ::testing::TestParamInfo<CrashCase>& param_info) {
                           return param_info.param.name;
                         });

}  // namespace
}  // namespace hsmsim::host

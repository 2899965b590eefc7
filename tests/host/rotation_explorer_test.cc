// The rotation explorer (tests/host/explorer/explorer.h, docs/reliability.md
// section 6): fixed seeds in CI, a long run on demand, and a test that the
// explorer catches and shrinks a planted bug.
//
//   HSMSIM_EXPLORER_CI_STEPS=N   steps per fixed seed (default 5000: 20,000
//                                in all; sanitizer builds may set less)
//   HSMSIM_EXPLORER_STEPS=N      run LongRun for N steps (skipped otherwise)
//   HSMSIM_EXPLORER_SEED=S       LongRun's seed (default 1)
//   HSMSIM_EXPLORER_SWITCHES=+name,-name   gated actions (explorer.h)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/status.h"
#include "common/str_cat.h"
#include "spdlog/spdlog.h"
#include "tests/host/explorer/explorer.h"
#include "tests/support/postgres_cluster.h"

namespace hsmsim::explorer {
namespace {

// The units' fault and persistence warnings would drown the report.
const bool kQuietUnits = [] {
  spdlog::set_level(spdlog::level::err);
  return true;
}();

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoll(v, nullptr, 10);
}

std::string Outcomes(const RunResult& r) {
  std::string out;
  for (const auto& [name, tally] : r.outcomes) {
    out += StrCat("    ", name, ": ", tally.first, " run, ", tally.second, " ended OK\n");
  }
  out += "  recover situations seen:\n";
  for (const auto& [name, n] : r.situations) out += StrCat("    ", name, ": ", n, "\n");
  return out;
}

// Explore runs `options`, and on a violation fails with the seed, the
// violation and the shrunk list of steps that reproduces it.
void Explore(const ExplorerOptions& options) {
  const std::vector<Step> steps = GenerateSteps(options);
  RunResult r = RunSteps(steps, options);
  std::printf("EXPLORER seed %llu: %lld steps (%lld heals) in %.1f s, switches %s, %s\n",
              static_cast<unsigned long long>(options.seed),
              static_cast<long long>(r.steps_run - r.heals), static_cast<long long>(r.heals),
              r.seconds, options.switches.Describe().c_str(),
              r.violation.has_value() ? "an invariant broken" : "0 invariants broken");
  if (!r.violation.has_value()) {
    if (EnvInt("HSMSIM_EXPLORER_VERBOSE", 0) != 0) std::printf("%s", Outcomes(r).c_str());
    return;
  }
  const Violation& v = *r.violation;
  std::vector<Step> shrunk = Shrink(steps, options, v, std::chrono::seconds(90));
  RunResult again = RunSteps(shrunk, options);
  ADD_FAILURE() << "seed " << options.seed << ": invariant " << v.invariant << " broken at step "
                << v.step_index + 1 << " (" << steps[static_cast<size_t>(v.step_index)].Describe()
                << "): " << v.message << "\nshrunk to " << shrunk.size() << " step(s)"
                << (again.violation.has_value()
                        ? StrCat(", which break ", again.violation->invariant, ": ",
                                 again.violation->message)
                        : std::string(" (the shrunk list did not fail again on replay)"))
                << ":\n"
                << FormatSteps(shrunk) << "reproduce: HSMSIM_EXPLORER_SEED=" << options.seed
                << " HSMSIM_EXPLORER_STEPS=" << options.steps
                << " HSMSIM_EXPLORER_SWITCHES=" << options.switches.Describe()
                << " build/tests/host/rotation_explorer_test --gtest_filter='*LongRun*'\n";
}

Switches SwitchesFromEnv() {
  std::string bad;
  Switches sw = Switches::FromEnv(&bad);
  EXPECT_TRUE(bad.empty()) << "unknown HSMSIM_EXPLORER_SWITCHES: " << bad;
  return sw;
}

class FixedSeedTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(FixedSeedTest, NoInvariantBroken) {
  ExplorerOptions options;
  options.seed = GetParam();
  options.steps = EnvInt("HSMSIM_EXPLORER_CI_STEPS", 5000);
  options.switches = SwitchesFromEnv();
  Explore(options);
}

// Four seeds of 5,000 steps: 20,000 steps in CI, two at a time under ctest -j2.
INSTANTIATE_TEST_SUITE_P(RotationExplorer, FixedSeedTest,
                         ::testing::Values(uint64_t{11}, uint64_t{1011}, uint64_t{20261130},
                                           uint64_t{424242}),
                         [](const auto& param_info) { return StrCat("seed_", param_info.param); });

// The explorer's seeds on the PostgreSQL keystore (issue 14, item 5): the
// same random operator actions and faults, the keystore in a database of
// a throwaway cluster (a new one for every run and replay). Fewer steps:
// each keystore call crosses a socket.
class PostgresSeedTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(PostgresSeedTest, NoInvariantBroken) {
  if (!test_support::PostgresCluster::ServerBinDir().has_value()) {
    GTEST_SKIP() << "the PostgreSQL server is not installed (Debian package postgresql, which "
                    "scripts/setup.sh installs)";
  }
  test_support::PostgresCluster* cluster = test_support::SharedPostgresCluster();
  ASSERT_NE(cluster, nullptr);
  ExplorerOptions options;
  options.seed = GetParam();
  options.steps = EnvInt("HSMSIM_EXPLORER_PG_STEPS", 1000);
  options.switches = SwitchesFromEnv();
  options.new_keystore = [cluster]() -> absl::StatusOr<std::string> {
    static int databases = 0;
    const std::string db = StrCat("explorer_", ::getpid(), "_", ++databases);
    HSMSIM_RETURN_IF_ERROR(cluster->CreateDatabase(db));
    return cluster->Url(db);
  };
  Explore(options);
}

INSTANTIATE_TEST_SUITE_P(RotationExplorer, PostgresSeedTest,
                         ::testing::Values(uint64_t{11}, uint64_t{20261130}),
                         [](const auto& param_info) { return StrCat("seed_", param_info.param); });

TEST(RotationExplorerTest, LongRun) {
  const int64_t steps = EnvInt("HSMSIM_EXPLORER_STEPS", 0);
  if (steps <= 0) GTEST_SKIP() << "set HSMSIM_EXPLORER_STEPS to run the long exploration";
  ExplorerOptions options;
  options.seed = static_cast<uint64_t>(EnvInt("HSMSIM_EXPLORER_SEED", 1));
  options.steps = steps;
  options.switches = SwitchesFromEnv();
  options.progress = [](int64_t steps_run, double seconds) {
    std::printf(
        "EXPLORER progress: %lld steps run (heal steps included), no invariant broken, "
        "%.0f s\n",
        static_cast<long long>(steps_run), seconds);
    std::fflush(stdout);
  };
  Explore(options);
}

// The explorer itself: a planted bug (every CURRENT cleared without the
// interlock and without --force) is caught as a stranded key and shrunk to
// the one step that does it.
TEST(RotationExplorerSelfTest, CatchesAPlantedStrandingAndShrinksIt) {
  ExplorerOptions options;
  options.seed = 7;
  options.steps = 60;
  std::vector<Step> steps = GenerateSteps(options);
  // After a heal every unit answers, so the sabotage reaches them all.
  steps.insert(steps.begin() + 30, {Step{ActionId::kHeal}, Step{ActionId::kSabotage}});
  RunResult r = RunSteps(steps, options);
  ASSERT_TRUE(r.violation.has_value()) << "the planted bug was not caught";
  EXPECT_EQ(r.violation->invariant, "no-stranded-key") << r.violation->message;
  EXPECT_LE(r.violation->step_index, 31);
  std::vector<Step> shrunk = Shrink(steps, options, *r.violation, std::chrono::seconds(60));
  ASSERT_EQ(shrunk.size(), 1u) << FormatSteps(shrunk);
  EXPECT_EQ(shrunk[0].action, ActionId::kSabotage);
  EXPECT_NE(FormatSteps(shrunk).find("1. sabotage"), std::string::npos) << FormatSteps(shrunk);
}

// Switches parse from the environment's syntax and reject unknown names.
TEST(RotationExplorerSelfTest, SwitchesDescribeEveryGate) {
  Switches sw;
  EXPECT_EQ(sw.Describe(),
            "+setimm_unguarded +clrcur_during_rotation +deselect_during_rotation +damaged_blob "
            "+lose_parts +state_write_fails -forced_changes");
}

}  // namespace
}  // namespace hsmsim::explorer

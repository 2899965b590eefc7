#include "host/fleet_manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/status.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

FleetManifest Sample() {
  FleetManifest m;
  m.instance = "inst1";
  m.keystore = "/tmp/f/keystore.db";
  m.units.push_back({"unit1", "127.0.0.1:4001", "/tmp/f/unit1", 101, true, false,
                     std::string("\x9f\x00\x01", 3)});
  m.units.push_back({"unit2", "127.0.0.1:4002", "/tmp/f/unit2", 0, false, true});
  return m;
}

TEST(FleetManifestTest, RoundTrip) {
  auto parsed = ParseFleetManifest(SerializeFleetManifest(Sample()), "mem");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->instance, "inst1");
  EXPECT_EQ(parsed->keystore, "/tmp/f/keystore.db");
  ASSERT_EQ(parsed->units.size(), 2u);
  EXPECT_EQ(parsed->units[0].name, "unit1");
  EXPECT_EQ(parsed->units[0].endpoint, "127.0.0.1:4001");
  EXPECT_EQ(parsed->units[0].pid, 101);
  EXPECT_TRUE(parsed->units[0].selected);
  EXPECT_FALSE(parsed->units[1].selected);
  EXPECT_TRUE(parsed->units[1].stopped);
  EXPECT_EQ(parsed->units[0].unit_id, std::string("\x9f\x00\x01", 3)) << "the pinned id";
  EXPECT_EQ(parsed->units[1].unit_id, "") << "not pinned";
  ASSERT_EQ(parsed->SelectedUnits().size(), 1u);
  EXPECT_EQ(parsed->SelectedUnits()[0]->name, "unit1");
}

TEST(FleetManifestTest, SelectOnlyReplacesTheSelectionOrChangesNothing) {
  FleetManifest m = Sample();
  ASSERT_TRUE(m.SelectOnly({"unit2"}).ok());
  ASSERT_EQ(m.SelectedUnits().size(), 1u);
  EXPECT_EQ(m.SelectedUnits()[0]->name, "unit2");
  EXPECT_TRUE(m.selection_overridden);
  EXPECT_THAT(m.SelectAdvice({"unit1"}), HasSubstr("in --unit too"));
  // An unknown name: NO_SUCH_UNIT naming it, and the selection is kept.
  absl::Status s = m.SelectOnly({"unit1", "unit9"});
  EXPECT_EQ(ReasonOf(s), "NO_SUCH_UNIT") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("no unit unit9 (its units: unit1, unit2)"));
  EXPECT_EQ(m.SelectedUnits()[0]->name, "unit2");
  // Without --unit the advice is hsmctl unit add.
  EXPECT_EQ(Sample().SelectAdvice({"unit2", "unit3"}), "hsmctl unit add unit2 unit3");
}

TEST(FleetManifestTest, TruncatedFileIsAClearError) {
  std::string text = SerializeFleetManifest(Sample());
  text.resize(text.size() / 2);
  auto parsed = ParseFleetManifest(text, "/x/fleet.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(parsed.status()), "BAD_MANIFEST");
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("/x/fleet.json"));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("not valid JSON"));
}

struct BadCase {
  const char* name;
  const char* text;
  const char* reason;
  const char* mentions;
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class FleetManifestBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(FleetManifestBadTest, NamesTheProblem) {
  auto parsed = ParseFleetManifest(GetParam().text, "fleet.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(ReasonOf(parsed.status()), GetParam().reason);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(GetParam().mentions));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FleetManifestBadTest,
    ::testing::Values(
        BadCase{"NotAnObject", "[1,2]", "BAD_MANIFEST", "not a JSON object"},
        BadCase{"WrongFormat", R"({"format":"other","format_version":1,"units":[]})",
                "BAD_MANIFEST", "format"},
        BadCase{"NewerVersion", R"({"format":"hsmsim-fleet","format_version":2,"units":[]})",
                "UNSUPPORTED_MANIFEST_VERSION", "format_version 2"},
        BadCase{"NoUnits", R"({"format":"hsmsim-fleet","format_version":1})", "BAD_MANIFEST",
                "units"},
        BadCase{"NoEndpoint",
                R"({"format":"hsmsim-fleet","format_version":1,"units":[{"name":"u1"}]})",
                "BAD_MANIFEST", "units[0]: \"endpoint\" is missing"},
        BadCase{"DuplicateName", R"({"format":"hsmsim-fleet","format_version":1,"units":[
                  {"name":"u1","endpoint":"127.0.0.1:1"},{"name":"u1","endpoint":"127.0.0.1:2"}]})",
                "BAD_MANIFEST", "appears twice"},
        BadCase{"PidNotANumber", R"({"format":"hsmsim-fleet","format_version":1,"units":[
                  {"name":"u1","endpoint":"127.0.0.1:1","pid":"12"}]})",
                "BAD_MANIFEST", "pid"},
        BadCase{"UnitIdNotHex", R"({"format":"hsmsim-fleet","format_version":1,"units":[
                  {"name":"u1","endpoint":"127.0.0.1:1","unit_id":"zz"}]})",
                "BAD_MANIFEST", "\"unit_id\" 'zz' is not hex"},
        BadCase{"EndpointWithoutPort", R"({"format":"hsmsim-fleet","format_version":1,"units":[
                  {"name":"u1","endpoint":"nohostport"}]})",
                "BAD_MANIFEST", "HOST:PORT"}),
    [](const ::testing::TestParamInfo<BadCase>& param_info) {
      return std::string(param_info.param.name);
    });

TEST(FleetManifestTest, SaveAndLoad) {
  char tmpl[] = "/tmp/hsmsim-manifest-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto missing = LoadFleetManifest(dir);
  EXPECT_EQ(ReasonOf(missing.status()), "NO_FLEET");
  ASSERT_TRUE(SaveFleetManifest(dir, Sample()).ok());
  ASSERT_TRUE(SaveFleetManifest(dir, Sample()).ok());  // replaces
  auto loaded = LoadFleetManifest(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->units.size(), 2u);
  {
    std::ofstream damage(FleetManifestPath(dir), std::ios::trunc);
    damage << "{\"format\": \"hsmsim-fl";
  }
  auto damaged = LoadFleetManifest(dir);
  EXPECT_EQ(ReasonOf(damaged.status()), "BAD_MANIFEST");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hsmsim::host

// hsmctl with its keystore in PostgreSQL (issue 14): the rotation end to
// end, a server that goes away between two steps of a rotation, and the
// operator's mistakes with keystore locations (a password in the URL, a
// wrong login, a keystore that still holds keys). Real hsmctl and
// hsmsim-unit processes and a throwaway PostgreSQL cluster
// (tests/support/postgres_cluster.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "host/keystore.h"
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class PostgresRotationTest : public RotationFixture {
 protected:
  void SetUp() override {
    RotationFixture::SetUp();
    ASSERT_NO_FATAL_FAILURE(UsePostgres());
  }
};

TEST_F(PostgresRotationTest, RotationEndsDoneAndEveryKeyVerifies) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(1000));
  EXPECT_EQ(Manifest().keystore, keystore_url_);
  EXPECT_FALSE(fs::exists(fleet_ + "/keystore.db")) << "no SQLite keystore beside it";
  RunResult rotate = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_EQ(rotate.exit_code, 0) << Describe(rotate);
  EXPECT_THAT(rotate.out, HasSubstr("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm."));
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
  // The progress of a rotation on a database server is published in the
  // fleet directory.
  EXPECT_TRUE(fs::exists(fleet_ + "/keystore.progress.json"));
  RunResult migrate = Hsmctl({"keys", "migrate", "--json"});
  ASSERT_EQ(migrate.exit_code, 0) << Describe(migrate);
  EXPECT_EQ(json::parse(migrate.out)["migrated"], false);
  // Brought down and up again without --keystore: the fleet still keeps its
  // keys in PostgreSQL (never a new, empty SQLite keystore beside it).
  MustRun({"fleet", "down"});
  MustRun({"fleet", "up", "--units", "3", "--instance", "it"});
  EXPECT_EQ(Manifest().keystore, keystore_url_);
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

// The server goes away while a rotation waits between re-encryption and
// set immediate: the next step fails naming the keystore, changes no unit,
// and once the server is back recover --apply finishes the rotation.
TEST_F(PostgresRotationTest, ServerThatGoesAwayChangesNothingAndTheRotationResumes) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(300));
  RunResult crashed =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=reencrypted"});
  ASSERT_EQ(crashed.exit_code, 137) << Describe(crashed);
  test_support::PostgresCluster* cluster = test_support::SharedPostgresCluster();
  ASSERT_TRUE(cluster->Stop().ok());
  RunResult refused = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_NE(refused.exit_code, 0) << Describe(refused);
  EXPECT_THAT(refused.err, HasSubstr("KEYSTORE_IO"));
  EXPECT_THAT(refused.err, HasSubstr("PostgreSQL keystore"));
  // No unit was promoted: every NEW still holds the target, every CURRENT
  // the old key.
  RunResult st = Hsmctl({"status", "--json", "--long"});
  ASSERT_EQ(st.exit_code, 0) << Describe(st);
  const json status = json::parse(st.out);  // kept alive for the loop below
  for (const json& u : status["units"]) {
    EXPECT_EQ(u["registers"]["new"]["verification_pattern"], target_vp_) << u.dump();
    EXPECT_NE(u["registers"]["current"]["verification_pattern"], target_vp_) << u.dump();
  }
  ASSERT_TRUE(cluster->StartAgain().ok());
  EXPECT_EQ(JournalPhase(), "REENCRYPTED");
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

// fleet up checks the keystore before it starts any unit: a password in
// the URL and a wrong login are refused, and nothing is left behind.
TEST_F(PostgresRotationTest, FleetUpRefusesAPasswordInTheUrlAndAWrongLogin) {
  FleetGuard guard(tmp_, fleet_);
  std::string with_password = keystore_url_;
  with_password.replace(with_password.find('@'), 1, ":test-only-password@");
  RunResult pw = Hsmctl({"fleet", "up", "--units", "1", "--keystore", with_password});
  EXPECT_EQ(pw.exit_code, 4) << Describe(pw);
  EXPECT_THAT(pw.err, HasSubstr("KEYSTORE_URL_HAS_PASSWORD"));
  EXPECT_THAT(pw.err, Not(HasSubstr("test-only-password")));
  EXPECT_FALSE(fs::exists(fleet_ + "/fleet.json"));

  RunResult wrong = HsmctlWithEnv({"fleet", "up", "--units", "1", "--keystore", keystore_url_},
                                  {"PGPASSWORD=not-the-password"});
  EXPECT_EQ(wrong.exit_code, 1) << Describe(wrong);
  EXPECT_THAT(wrong.err, HasSubstr("KEYSTORE_IO"));
  EXPECT_THAT(wrong.err, HasSubstr("password authentication failed"));
  EXPECT_FALSE(fs::exists(fleet_ + "/fleet.json")) << "no unit was started";

  RunResult ok = Hsmctl({"fleet", "up", "--units", "1", "--keystore", keystore_url_});
  ASSERT_EQ(ok.exit_code, 0) << Describe(ok);
  EXPECT_EQ(Manifest().keystore, keystore_url_);
}

// keys set-keystore moves an empty fleet to PostgreSQL, and refuses while
// the current keystore holds keys, which the new location would leave
// behind.
TEST_F(PostgresRotationTest, SetKeystoreMovesOnlyAnEmptyFleet) {
  FleetGuard guard(tmp_, fleet_);
  const std::string url = keystore_url_;
  keystore_url_.clear();  // a fleet on its SQLite keystore
  ASSERT_NO_FATAL_FAILURE(Prepare(20));
  RunResult refused = Hsmctl({"keys", "set-keystore", url});
  EXPECT_EQ(refused.exit_code, 1) << Describe(refused);
  EXPECT_THAT(refused.err, HasSubstr("KEYSTORE_NOT_EMPTY"));
  EXPECT_THAT(refused.err, HasSubstr("20 key(s)"));
  EXPECT_EQ(Manifest().keystore, fleet_ + "/keystore.db") << "nothing changed";

  // A second fleet directory, no keys yet: it moves, and its keys go there.
  const std::string other = tmp_.Join("other");
  RunResult up = RunHsmctl(tmp_, {"fleet", "up", "--units", "1", "--fleet", other});
  ASSERT_EQ(up.exit_code, 0) << Describe(up);
  FleetGuard other_guard(tmp_, other);
  RunResult moved = RunHsmctl(tmp_, {"keys", "set-keystore", url, "--fleet", other, "--json"});
  ASSERT_EQ(moved.exit_code, 0) << Describe(moved);
  EXPECT_EQ(json::parse(moved.out)["keys"], 0);
  auto manifest = LoadFleetManifest(other);
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(manifest->keystore, url);
  auto store = OpenKeystore(url, false);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->CountKeys(), 0);
}

}  // namespace
}  // namespace hsmsim::host

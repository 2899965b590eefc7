// Rotation workers (issue 14, item 2): several hsmctl processes rotate one
// PostgreSQL keystore together. hsmctl mk rotate leads (it changes the
// phases); hsmctl mk rotate --join adds a worker that claims ranges of keys.
// A worker killed half way leaves its claims to the others, and the
// rotation still ends DONE with every key verifying. Real hsmctl and
// hsmsim-unit processes, units on distinct loopback addresses with mutual
// TLS, and a throwaway PostgreSQL cluster (tests/support/postgres_cluster.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <string>
#include <thread>

#include "common/hex.h"
#include "host/keystore.h"
#include "tests/host/rotation_fixture.h"
#include "tests/support/unit_process.h"

namespace hsmsim::host {
namespace {

using test_support::ChildProcess;
using ::testing::HasSubstr;

// The figure: a million keys. Under the sanitizers every unit and
// hsmctl runs several times slower, so the ASan build rotates a tenth of
// them: what is tested (claims, a killed worker, every key verifying) does
// not depend on the count.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kManyKeys = 100'000;
#else
constexpr int kManyKeys = 1'000'000;
#endif

class RotationWorkersTest : public RotationFixture {
 protected:
  void SetUp() override {
    RotationFixture::SetUp();
    ASSERT_NO_FATAL_FAILURE(UsePostgres());
  }

  // StartRemoteUnit starts a unit on `host` (another loopback address, as
  // another machine) with a certificate from hsmctl fleet issue-cert, and
  // adds it to the fleet with fleet add --tls.
  void StartRemoteUnit(const std::string& host, const std::string& name) {
    const std::string state = tmp_.Join(name);
    RunResult id =
        test_support::RunProgram({HSMSIM_UNIT_PATH, "--state-dir", state, "--print-unit-id"});
    ASSERT_EQ(id.exit_code, 0) << Describe(id);
    const std::string certs = tmp_.Join(name + "-tls");
    MustRun({"fleet", "issue-cert", name, "--unit-id", id.out.substr(0, id.out.find('\n')), "--out",
             certs});
    const std::string port_file = tmp_.Join(name + ".port");
    test_support::ChildOptions options;
    options.output_path = tmp_.Join(name + ".log");
    options.die_with_parent = true;
    auto child =
        ChildProcess::Start({HSMSIM_UNIT_PATH, "--listen", StrCat(host, ":0"), "--port-file",
                             port_file, "--state-dir", state, "--tls-cert", certs + "/unit.crt",
                             "--tls-key", certs + "/unit.key", "--tls-ca", certs + "/fleet-ca.crt"},
                            options);
    ASSERT_TRUE(child.ok()) << child.status();
    remotes_.push_back(*std::move(child));
    std::string endpoint;
    for (int i = 0; i < 1000 && endpoint.empty() && remotes_.back()->Running(); ++i) {
      auto text = ReadFileBytes(port_file);
      if (text.ok() && !text->empty() && text->back() == '\n') {
        endpoint = StrCat(host, ":", text->substr(0, text->size() - 1));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    ASSERT_FALSE(endpoint.empty()) << test_support::ReadWholeFile(options.output_path);
    MustRun({"fleet", "add", name, endpoint, "--tls"});
  }

  // Async runs hsmctl (with `env` added) on a thread of its own.
  std::future<RunResult> Async(std::vector<std::string> args, std::vector<std::string> env) {
    return std::async(std::launch::async, [this, args = std::move(args), env = std::move(env)] {
      return HsmctlWithEnv(args, env);
    });
  }

  std::vector<std::unique_ptr<ChildProcess>> remotes_;
};

// The multi-host test: units on 127.0.0.1, 127.0.0.2 and 127.0.0.3
// with mutual TLS; two workers rotate a million keys in PostgreSQL and one
// of them is killed half way through its share. The lead goes on, takes
// over what the dead worker held, and the rotation ends DONE with every
// key verifying under the new master key.
TEST_F(RotationWorkersTest, TwoWorkersOnTlsUnitsAtThreeAddressesWithOneKilledHalfWay) {
  FleetGuard guard(tmp_, fleet_);
  MustRun({"fleet", "up", "--units", "1", "--tls", "--keystore", keystore_url_});
  ASSERT_NO_FATAL_FAILURE(StartRemoteUnit("127.0.0.2", "remote2"));
  ASSERT_NO_FATAL_FAILURE(StartRemoteUnit("127.0.0.3", "remote3"));
  ASSERT_NO_FATAL_FAILURE(PrepareCeremony(kManyKeys));
  // The rotation begins (pre-checks, journal), and its first hsmctl stops
  // right there; then the lead (--resume) and a joining worker start
  // together, so that both take a share.
  RunResult begun =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=journal-written"});
  ASSERT_EQ(begun.exit_code, 137) << Describe(begun);
  std::future<RunResult> lead = Async({"mk", "rotate", "--resume", "--sign", sign_, "--json"}, {});
  // The worker is killed (as kill -9) once it stored a sixth of the keys of
  // its own, about half of its share.
  std::future<RunResult> worker =
      Async({"mk", "rotate", "--join", "--json"},
            {StrCat("HSMSIM_TEST_CRASH_AT=reencrypt-batch-stored:", kManyKeys / 6)});
  RunResult killed = worker.get();
  RunResult led = lead.get();
  EXPECT_EQ(killed.exit_code, 137) << Describe(killed);
  EXPECT_THAT(killed.err, HasSubstr("joining the rotation"));
  ASSERT_EQ(led.exit_code, 0) << Describe(led);
  const json report = json::parse(led.out);
  EXPECT_EQ(report["phase"], "DONE");
  // The worker's stored keys stayed: the lead re-encrypted the rest only,
  // each key once.
  EXPECT_LE(report["keys_rewrapped"].get<int64_t>(), kManyKeys - kManyKeys / 6) << led.out;
  EXPECT_GT(report["ranges_claimed"].get<int64_t>(), 0) << led.out;
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

// The lead is killed half way while a worker re-encrypts: the worker goes
// on through every range (also the one the lead held) and says that no
// hsmctl leads; mk rotate --resume then finishes the rotation.
TEST_F(RotationWorkersTest, LeadKilledHalfWayTheWorkerGoesOnAndResumeFinishes) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(30'000));
  RunResult begun =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=journal-written"});
  ASSERT_EQ(begun.exit_code, 137) << Describe(begun);
  // Small batches: ranges of 4,000 ids, so both take several.
  std::future<RunResult> lead =
      Async({"mk", "rotate", "--resume", "--sign", sign_, "--batch-size", "500"},
            {"HSMSIM_TEST_CRASH_AT=reencrypt-batch-stored:5000"});
  std::future<RunResult> worker = Async({"mk", "rotate", "--join", "--batch-size", "500"}, {});
  RunResult killed = lead.get();
  RunResult joined = worker.get();
  EXPECT_EQ(killed.exit_code, 137) << Describe(killed);
  ASSERT_EQ(joined.exit_code, 0) << Describe(joined);
  EXPECT_THAT(joined.out, HasSubstr("this worker re-encrypted"));
  EXPECT_EQ(JournalPhase(), "REENCRYPTING") << "a worker never changes the phase";
  RunResult status = Hsmctl({"mk", "rotate", "--status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  const json st = json::parse(status.out);
  EXPECT_GE(st["ranges"]["total"].get<int64_t>(), 7) << status.out;
  EXPECT_EQ(st["ranges"]["finished"], st["ranges"]["total"])
      << "the worker took over the range the lead held: " << status.out;
  EXPECT_TRUE(st["lock_holder"].is_null()) << "the lead is dead: " << status.out;
  RunResult resumed = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resumed.exit_code, 0) << Describe(resumed);
  EXPECT_THAT(resumed.out,
              HasSubstr("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm."));
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

// A worker joins only a rotation that is re-encrypting, on a keystore that
// workers can share; each refusal names why and changes nothing.
TEST_F(RotationWorkersTest, JoinIsRefusedWithoutARotationToJoin) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(300));
  RunResult none = Hsmctl({"mk", "rotate", "--join"});
  EXPECT_EQ(none.exit_code, 1) << Describe(none);
  EXPECT_THAT(none.err, HasSubstr("NO_REENCRYPTION_TO_JOIN"));
  EXPECT_THAT(none.err, HasSubstr("no rotation is open"));
  RunResult both = Hsmctl({"mk", "rotate", "--join", "--resume"});
  EXPECT_EQ(both.exit_code, 2) << Describe(both);

  RunResult crashed =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=reencrypted"});
  ASSERT_EQ(crashed.exit_code, 137) << Describe(crashed);
  RunResult late = Hsmctl({"mk", "rotate", "--join", "--json"});
  EXPECT_EQ(late.exit_code, 1) << Describe(late);
  EXPECT_THAT(late.out, HasSubstr("NO_REENCRYPTION_TO_JOIN"));
  EXPECT_THAT(late.out, HasSubstr("REENCRYPTED"));
  EXPECT_EQ(JournalPhase(), "REENCRYPTED") << "nothing changed";
  RunResult resumed = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  ASSERT_EQ(resumed.exit_code, 0) << Describe(resumed);
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

// On a SQLite keystore (one writer) --join is refused naming what to use.
TEST_F(RotationWorkersTest, JoinOnASqliteKeystoreIsRefused) {
  FleetGuard guard(tmp_, fleet_);
  keystore_url_.clear();
  ASSERT_NO_FATAL_FAILURE(Prepare(100));
  RunResult refused = Hsmctl({"mk", "rotate", "--join"});
  EXPECT_EQ(refused.exit_code, 1) << Describe(refused);
  EXPECT_THAT(refused.err, HasSubstr("KEYSTORE_NOT_SHARED"));
  EXPECT_THAT(refused.err, HasSubstr("PostgreSQL"));
}

}  // namespace
}  // namespace hsmsim::host

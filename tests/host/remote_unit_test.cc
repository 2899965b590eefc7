// Remote units (issue 14): hsmctl fleet add NAME HOST:PORT [--tls] pins the
// unit id at first contact, every later command refuses another unit at
// that address, and fleet rm removes only such units. The "remote" units
// are hsmsim-unit processes started here on other loopback addresses
// (127.0.0.2, 127.0.0.3), so they look like other hosts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/reasons.h"
#include "host/keystore.h"
#include "host/tls_certificates.h"
#include "tests/host/hsmctl_harness.h"
#include "tests/support/unit_process.h"

namespace hsmsim::host {
namespace {

using test_support::ChildProcess;
using ::testing::HasSubstr;
using ::testing::Not;

struct Remote {
  std::unique_ptr<ChildProcess> child;
  std::string endpoint;
  std::string unit_id;  // bytes
};

class RemoteUnitTest : public HsmctlFleetTest {
 protected:
  // StartRemote starts a unit on `host` (port 0: any) on the state
  // directory `name`, with mutual TLS when `tls`: a certificate for its own
  // unit id, issued by the fleet's CA.
  Remote StartRemote(const std::string& host, const std::string& name, bool tls,
                     uint16_t port = 0) {
    Remote r;
    const std::string state = tmp_.Join(name);
    auto printed =
        test_support::RunProgram({HSMSIM_UNIT_PATH, "--state-dir", state, "--print-unit-id"});
    EXPECT_EQ(printed.exit_code, 0) << printed.err;
    r.unit_id = FromHex(printed.out.substr(0, printed.out.find('\n'))).value_or("");
    const std::string port_file = tmp_.Join(name + ".port");
    std::filesystem::remove(port_file);
    std::vector<std::string> argv = {
        HSMSIM_UNIT_PATH, "--listen", StrCat(host, ":", port), "--port-file", port_file,
        "--state-dir",    state};
    if (tls) {
      TlsIdentity ca;
      ca.cert_pem = *ReadFileBytes(fleet_ + "/tls/ca.pem");
      ca.key_pem = MakeSecret(*ReadFileBytes(fleet_ + "/tls/ca.key"));
      auto cert = IssueCertificate(ca, name, r.unit_id);
      EXPECT_TRUE(cert.ok()) << cert.status();
      const std::string cert_file = tmp_.Join(name + "-cert.pem");
      const std::string key_file = tmp_.Join(name + "-key.pem");
      std::filesystem::remove(cert_file);
      std::filesystem::remove(key_file);
      EXPECT_TRUE(WriteTlsIdentity(*cert, cert_file, key_file).ok());
      argv.insert(argv.end(), {"--tls-cert", cert_file, "--tls-key", key_file, "--tls-ca",
                               fleet_ + "/tls/ca.pem"});
    }
    test_support::ChildOptions options;
    options.output_path = tmp_.Join(name + ".log");
    options.die_with_parent = true;
    auto child = ChildProcess::Start(argv, options);
    EXPECT_TRUE(child.ok()) << child.status();
    r.child = *std::move(child);
    for (int i = 0; i < 1000 && r.endpoint.empty() && r.child->Running(); ++i) {
      auto text = ReadFileBytes(port_file);
      if (text.ok() && !text->empty() && text->back() == '\n') {
        r.endpoint = StrCat(host, ":", text->substr(0, text->size() - 1));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    EXPECT_FALSE(r.endpoint.empty()) << test_support::ReadWholeFile(options.output_path);
    return r;
  }

  static uint16_t PortOf(const Remote& r) {
    return static_cast<uint16_t>(std::stoi(r.endpoint.substr(r.endpoint.rfind(':') + 1)));
  }

  void MustRun(std::vector<std::string> args) {
    RunResult r = Hsmctl(std::move(args));
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
};

TEST_F(RemoteUnitTest, TlsRemoteUnitIsPinnedAtFirstContactAndAnotherUnitIsRefused) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "up", "--units", "1", "--tls"}));
  Remote first = StartRemote("127.0.0.2", "remote-a", /*tls=*/true);
  RunResult plain = Hsmctl({"fleet", "add", "remote1", first.endpoint});
  EXPECT_NE(plain.exit_code, 0) << "added a TLS unit as plaintext: " << Describe(plain);
  EXPECT_THAT(plain.err, HasSubstr("TLS_HANDSHAKE_FAILED"));
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "add", "remote1", first.endpoint, "--tls"}));
  FleetManifest m = *LoadFleetManifest(fleet_);
  const FleetUnit* u = m.FindUnit("remote1");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->unit_id, first.unit_id);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->pid, 0);
  EXPECT_EQ(u->state_dir, "");
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "status"}));
  RunResult taken = Hsmctl({"fleet", "add", "remote1", first.endpoint, "--tls"});
  EXPECT_EQ(taken.exit_code, 4) << Describe(taken);
  EXPECT_THAT(taken.err, HasSubstr("UNIT_NAME_TAKEN"));

  // Another unit (its own certificate, from the same CA) at the same
  // address: refused before any request, naming both ids; nothing changes.
  const uint16_t port = PortOf(first);
  first.child->Stop();
  const std::string before = *ReadFileBytes(fleet_ + "/fleet.json");
  Remote other = StartRemote("127.0.0.2", "remote-b", /*tls=*/true, port);
  RunResult refused = Hsmctl({"fleet", "status"});
  EXPECT_NE(refused.exit_code, 0) << Describe(refused);
  EXPECT_THAT(refused.out, HasSubstr("UNIT_CERT_ID_MISMATCH"));
  EXPECT_THAT(refused.out, HasSubstr(ToHex(first.unit_id)));
  EXPECT_THAT(refused.out, HasSubstr(ToHex(other.unit_id)));
  EXPECT_EQ(*ReadFileBytes(fleet_ + "/fleet.json"), before) << "the other id was adopted";

  // The right unit back at its address: served again.
  other.child->Stop();
  Remote back = StartRemote("127.0.0.2", "remote-a", /*tls=*/true, port);
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "status"}));

  RunResult launched = Hsmctl({"fleet", "rm", "unit1"});
  EXPECT_EQ(launched.exit_code, 1) << Describe(launched);
  EXPECT_THAT(launched.err, HasSubstr("UNIT_LAUNCHED_HERE"));
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "rm", "remote1"}));
  m = *LoadFleetManifest(fleet_);
  EXPECT_EQ(m.FindUnit("remote1"), nullptr);
  EXPECT_NE(m.FindUnit("unit1"), nullptr);
}

TEST_F(RemoteUnitTest, PlaintextRemoteUnitAnsweringWithAnotherIdIsRefused) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "up", "--units", "1"}));
  Remote first = StartRemote("127.0.0.3", "plain-a", /*tls=*/false);
  RunResult no_tls = Hsmctl({"fleet", "add", "remote2", first.endpoint, "--tls"});
  EXPECT_EQ(no_tls.exit_code, 4) << Describe(no_tls);
  EXPECT_THAT(no_tls.err, HasSubstr("BAD_TLS_FILES"));
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "add", "remote2", first.endpoint}));
  RunResult twice = Hsmctl({"fleet", "add", "again", first.endpoint});
  EXPECT_NE(twice.exit_code, 0) << Describe(twice);
  EXPECT_THAT(twice.err, HasSubstr("already has as remote2"));

  const uint16_t port = PortOf(first);
  first.child->Stop();
  Remote other = StartRemote("127.0.0.3", "plain-b", /*tls=*/false, port);
  RunResult refused = Hsmctl({"fleet", "status"});
  EXPECT_NE(refused.exit_code, 0) << Describe(refused);
  EXPECT_THAT(refused.out, HasSubstr("UNIT_ID_MISMATCH"));
  EXPECT_THAT(refused.out, HasSubstr(ToHex(first.unit_id)));
  EXPECT_THAT(refused.out, HasSubstr(ToHex(other.unit_id)));
  other.child->Stop();
  Remote back = StartRemote("127.0.0.3", "plain-a", /*tls=*/false, port);
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "status"}));

  // While a rotation is journaled, the fleet's units do not change.
  auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", /*create=*/true);
  ASSERT_TRUE(store.ok()) << store.status();
  RotationJournal journal;
  journal.phase = RotationPhase::kReencrypting;
  journal.source_vp = std::string(32, '\x01');
  journal.target_vp = std::string(32, '\x02');
  journal.started_at = journal.updated_at = "2026-11-30T00:00:00Z";
  ASSERT_TRUE((*store)->WriteJournal(journal).ok());
  const std::string before = *ReadFileBytes(fleet_ + "/fleet.json");
  RunResult rotating = Hsmctl({"fleet", "rm", "remote2"});
  EXPECT_EQ(rotating.exit_code, 1) << Describe(rotating);
  EXPECT_THAT(rotating.err, HasSubstr("ROTATION_IN_PROGRESS"));
  EXPECT_EQ(*ReadFileBytes(fleet_ + "/fleet.json"), before);
  journal.phase = RotationPhase::kDone;
  ASSERT_TRUE((*store)->WriteJournal(journal).ok());
  ASSERT_NO_FATAL_FAILURE(MustRun({"fleet", "rm", "remote2"}));
  EXPECT_EQ(LoadFleetManifest(fleet_)->FindUnit("remote2"), nullptr);
}

}  // namespace
}  // namespace hsmsim::host

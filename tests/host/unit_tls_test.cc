// Mutual TLS between hsmctl's UnitClient and a real hsmsim-unit (issue 14,
// docs/tls.md): the unit id in the unit's certificate, and each bad input
// (another CA, an expired certificate, a certificate for another unit id,
// plaintext on one side only, a client that never handshakes, a listen
// address that is not loopback without TLS) failing with a clear error and
// working again once fixed. Certificates are made here, fresh each run.
#include "host/unit_tls.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/tls_certificates.h"
#include "host/unit_client.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/unit_process.h"

namespace hsmsim::host {
namespace {

using test_support::TempDir;
using test_support::UnitProcess;
using test_support::UnitProcessOptions;
using ::testing::HasSubstr;
using ::testing::Not;

// Files of one TLS identity written under the test's directory.
struct Files {
  std::string cert;
  std::string key;
};

class UnitTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = tmp_.Join("state");
    auto id = RunUnit({"--state-dir", state_dir_, "--print-unit-id"});
    ASSERT_EQ(id.exit_code, 0) << id.err;
    std::string hex = id.out.substr(0, id.out.find('\n'));
    auto bytes = FromHex(hex);
    ASSERT_TRUE(bytes.ok() && !bytes->empty()) << id.out;
    unit_id_ = *bytes;
    auto ca = MakeFleetCa("test fleet CA");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    ca_file_ = Write("ca", ca_).cert;
    unit_files_ = Issue("unit", unit_id_);
    client_files_ = Issue("client", "");
  }

  static test_support::RunResult RunUnit(std::vector<std::string> args) {
    args.insert(args.begin(), HSMSIM_UNIT_PATH);
    test_support::RunOptions options;
    options.timeout = std::chrono::seconds(60);
    return test_support::RunProgram(args, options);
  }

  Files Write(const std::string& name, const TlsIdentity& identity) {
    Files f{tmp_.Join(name + ".pem"), tmp_.Join(name + ".key")};
    std::filesystem::remove(f.cert);
    std::filesystem::remove(f.key);
    absl::Status written = WriteTlsIdentity(identity, f.cert, f.key);
    EXPECT_TRUE(written.ok()) << written;
    return f;
  }

  Files Issue(const std::string& name, const std::string& unit_id, CertificateValidity v = {},
              const TlsIdentity* ca = nullptr) {
    auto id = IssueCertificate(ca != nullptr ? *ca : ca_, name, unit_id, v);
    EXPECT_TRUE(id.ok()) << id.status();
    return Write(name, *id);
  }

  // StartUnit starts the unit on its state directory, with TLS when `unit`
  // names files.
  std::unique_ptr<UnitProcess> StartUnit(const Files* unit, std::vector<std::string> extra = {}) {
    UnitProcessOptions o;
    o.binary = HSMSIM_UNIT_PATH;
    o.state_dir = state_dir_;
    o.work_dir = tmp_.Join(StrCat("run", runs_++));
    std::filesystem::create_directories(o.work_dir);
    if (unit != nullptr) {
      o.args = {"--tls-cert", unit->cert, "--tls-key", unit->key, "--tls-ca", ca_file_};
    }
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    auto p = std::make_unique<UnitProcess>(o);
    auto port = p->WaitForPort();
    EXPECT_TRUE(port.has_value()) << p->Stderr();
    port_ = port.value_or(0);
    return p;
  }

  // Client returns a UnitClient to the unit: TLS with `ca` and `client`
  // when `ca` is not empty, its certificate expected to name `expect_id`.
  std::unique_ptr<UnitClient> Client(const std::string& ca, const Files& client,
                                     const std::string& expect_id) {
    UnitClientOptions options;
    options.timeout = std::chrono::milliseconds(5000);
    options.idempotent_attempts = 1;
    if (!ca.empty()) {
      auto config = LoadTlsClientConfig(ca, client.cert, client.key);
      EXPECT_TRUE(config.ok()) << config.status();
      options.tls = *config;
      options.tls_unit_id = expect_id;
    }
    return std::move(*UnitClient::Create("u1", StrCat("127.0.0.1:", port_), options));
  }

  absl::StatusOr<v1::GetInfoResponse> GetInfoOverTls() {
    return Client(ca_file_, client_files_, unit_id_)->GetInfo();
  }

  TempDir tmp_;
  std::string state_dir_, unit_id_, ca_file_;
  TlsIdentity ca_;
  Files unit_files_, client_files_;
  uint16_t port_ = 0;
  int runs_ = 0;
};

TEST_F(UnitTlsTest, MutualTlsServesTheUnitAndItsCertificateNamesItsId) {
  auto unit = StartUnit(&unit_files_);
  auto info = GetInfoOverTls();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->unit_id(), unit_id_);
  auto cert = test_support::ReadWholeFile(unit_files_.cert);
  EXPECT_EQ(UnitIdOfCertificatePem(cert), unit_id_);
  EXPECT_THAT(cert, ::testing::StartsWith("-----BEGIN CERTIFICATE-----"));
  struct stat st {};
  ASSERT_EQ(::stat(unit_files_.key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "private keys are written 0600";
  EXPECT_THAT(unit->Stderr(), HasSubstr("mutual TLS"));
}

TEST_F(UnitTlsTest, UnitOfAnotherCaIsRefusedAndWorksOnceTheCaIsRight) {
  auto unit = StartUnit(&unit_files_);
  auto other = MakeFleetCa("another CA");
  ASSERT_TRUE(other.ok());
  const std::string other_ca = Write("other-ca", *other).cert;
  auto refused = Client(other_ca, client_files_, unit_id_)->GetInfo();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), reason::kTlsHandshakeFailed) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("certificate verify failed"));
  // A client certificate of another CA: the unit refuses it.
  const Files stranger = Issue("stranger", "", {}, &*other);
  auto stranger_refused = Client(ca_file_, stranger, unit_id_)->GetInfo();
  ASSERT_FALSE(stranger_refused.ok());
  EXPECT_EQ(ReasonOf(stranger_refused.status()), reason::kTlsHandshakeFailed)
      << stranger_refused.status();
  EXPECT_THAT(unit->Stderr(), HasSubstr("TLS handshake failed"));
  // The right CA and client certificate: served, the unit unchanged.
  auto info = GetInfoOverTls();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->unit_id(), unit_id_);
}

TEST_F(UnitTlsTest, ConsoleServerCertificateIsNotAClientCredential) {
  auto unit = StartUnit(&unit_files_);
  // hsmctl console's certificate (same CA, serverAuth only): a unit must
  // not take it for hsmctl's client certificate.
  auto console = IssueIpCertificate(ca_, "hsmctl console", "127.0.0.1");
  ASSERT_TRUE(console.ok()) << console.status();
  const Files console_files = Write("console", *console);
  auto refused = Client(ca_file_, console_files, unit_id_)->GetInfo();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), reason::kTlsHandshakeFailed) << refused.status();
  ASSERT_TRUE(GetInfoOverTls().ok());
}

TEST_F(UnitTlsTest, CaKeyThatIsNotTheCaCertificatesIsRefused) {
  auto other = MakeFleetCa("another CA");
  ASSERT_TRUE(other.ok());
  const TlsIdentity mixed{ca_.cert_pem, other->key_pem};
  auto issued = IssueCertificate(mixed, "client", "");
  ASSERT_FALSE(issued.ok());
  EXPECT_EQ(ReasonOf(issued.status()), reason::kBadTlsFiles) << issued.status();
  EXPECT_THAT(issued.status().message(), HasSubstr("not the key of its certificate"));
}

TEST_F(UnitTlsTest, ExpiredUnitCertificateIsRefusedAndWorksOnceRenewed) {
  const Files expired =
      Issue("expired", unit_id_, {.not_before_seconds = -7200, .not_after_seconds = -3600});
  {
    auto unit = StartUnit(&expired);
    auto refused = GetInfoOverTls();
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(ReasonOf(refused.status()), reason::kTlsHandshakeFailed) << refused.status();
    EXPECT_THAT(refused.status().message(), HasSubstr("certificate has expired"));
  }
  auto unit = StartUnit(&unit_files_);
  auto info = GetInfoOverTls();
  ASSERT_TRUE(info.ok()) << info.status();
}

TEST_F(UnitTlsTest, CertificateForAnotherUnitIdIsRefusedNamingBothIds) {
  const std::string other_id(unit_id_.size(), '\x42');
  const Files wrong = Issue("wrong-id", other_id);
  {
    auto unit = StartUnit(&wrong);
    auto refused = GetInfoOverTls();
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(ReasonOf(refused.status()), reason::kUnitCertIdMismatch) << refused.status();
    EXPECT_THAT(refused.status().message(), HasSubstr(ToHex(other_id)));
    EXPECT_THAT(refused.status().message(), HasSubstr(ToHex(unit_id_)));
    EXPECT_THAT(refused.status().message(), HasSubstr("nothing was sent"));
    // The unit never saw a request: no frame was read after the handshake.
    EXPECT_THAT(unit->Stderr(), Not(HasSubstr("answering and closing")));
  }
  auto unit = StartUnit(&unit_files_);
  ASSERT_TRUE(GetInfoOverTls().ok());
}

TEST_F(UnitTlsTest, PlaintextClientOfATlsUnitIsToldTheUnitSpeaksTls) {
  auto unit = StartUnit(&unit_files_);
  auto refused = Client("", {}, "")->GetInfo();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), reason::kTlsHandshakeFailed) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("speaks mutual TLS only"));
  ASSERT_TRUE(GetInfoOverTls().ok());
}

TEST_F(UnitTlsTest, TlsClientOfAPlaintextUnitFailsTheHandshake) {
  {
    auto unit = StartUnit(nullptr);
    auto refused = GetInfoOverTls();
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(ReasonOf(refused.status()), reason::kTlsHandshakeFailed) << refused.status();
    EXPECT_THAT(refused.status().message(), HasSubstr("does it speak TLS"));
  }
  auto unit = StartUnit(&unit_files_);
  ASSERT_TRUE(GetInfoOverTls().ok());
}

TEST_F(UnitTlsTest, ClientThatNeverHandshakesIsClosedAfterTheReadTimeout) {
  auto unit = StartUnit(&unit_files_, {"--read-timeout-ms", "300"});
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // Generous: the unit closes after 300 ms; 30 s means it never did.
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, 0);
  const int err = errno;
  ::close(fd);
  EXPECT_EQ(n, 0) << "the unit did not close a connection that never handshakes (errno " << err
                  << ")";
  EXPECT_THAT(unit->Stderr(), HasSubstr("no TLS handshake within 300 ms"));
  ASSERT_TRUE(GetInfoOverTls().ok());
}

TEST_F(UnitTlsTest, NonLoopbackListenNeedsTlsOrInsecure) {
  auto refused = RunUnit({"--state-dir", state_dir_, "--listen", "0.0.0.0:0"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("INSECURE_LISTEN"));
  EXPECT_THAT(refused.err, HasSubstr("--insecure"));
  auto partial = RunUnit({"--state-dir", state_dir_, "--tls-cert", unit_files_.cert});
  EXPECT_EQ(partial.exit_code, 2) << partial.err;
  EXPECT_THAT(partial.err, HasSubstr("TLS_SETUP_FAILED"));
  // Loopback addresses other than 127.0.0.1 need nothing; 0.0.0.0 with
  // TLS or with --insecure starts (--print-unit-id stops right after the
  // checks, without listening).
  for (std::vector<std::string> ok :
       {std::vector<std::string>{"--listen", "127.0.0.2:0"},
        std::vector<std::string>{"--listen", "0.0.0.0:0", "--insecure"},
        std::vector<std::string>{"--listen", "0.0.0.0:0", "--tls-cert", unit_files_.cert,
                                 "--tls-key", unit_files_.key, "--tls-ca", ca_file_}}) {
    ok.insert(ok.end(), {"--state-dir", state_dir_, "--print-unit-id"});
    auto r = RunUnit(ok);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(ToHex(unit_id_)));
  }
  auto bad_key = RunUnit({"--state-dir", state_dir_, "--tls-cert", unit_files_.cert, "--tls-key",
                          client_files_.key, "--tls-ca", ca_file_});
  EXPECT_EQ(bad_key.exit_code, 2) << bad_key.err;
  EXPECT_THAT(bad_key.err, HasSubstr("TLS_SETUP_FAILED"));
  EXPECT_THAT(bad_key.err, HasSubstr("key values mismatch"));
}

}  // namespace
}  // namespace hsmsim::host

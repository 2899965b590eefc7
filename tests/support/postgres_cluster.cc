#include "tests/support/postgres_cluster.h"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/internal/pq.h"

namespace hsmsim::test_support {
namespace {

namespace fs = std::filesystem;

// A port that was free a moment ago on 127.0.0.1.
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

absl::Status StepFailed(std::string_view step, const std::string& detail) {
  return Error(absl::StatusCode::kUnavailable, reason::kKeystoreIo,
               StrCat("throwaway PostgreSQL cluster: ", step, " failed: ", detail));
}

}  // namespace

std::optional<std::string> PostgresCluster::ServerBinDir() {
  std::vector<std::string> candidates;
  if (std::optional<std::string> pg_config = FindProgram("pg_config")) {
    RunResult r = RunProgram({*pg_config, "--bindir"});
    std::string dir = r.out;
    while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
    if (r.exit_code == 0) candidates.push_back(dir);
  }
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"}) {
    candidates.push_back(dir);
  }
  for (const std::string& dir : candidates) {
    if (::access((dir + "/postgres").c_str(), X_OK) == 0 &&
        ::access((dir + "/initdb").c_str(), X_OK) == 0 &&
        ::access((dir + "/pg_isready").c_str(), X_OK) == 0) {
      return dir;
    }
  }
  return std::nullopt;
}

std::vector<std::string> PostgresCluster::AsServerUser(std::vector<std::string> argv) const {
  if (!as_postgres_) return argv;
  // --pdeathsig after the change of user (which clears the one
  // ChildOptions::die_with_parent sets): a killed test process takes its
  // server with it (SIGQUIT: PostgreSQL's immediate shutdown).
  std::vector<std::string> out = {"/usr/bin/setpriv", "--reuid=postgres",    "--regid=postgres",
                                  "--init-groups",    "--pdeathsig=SIGQUIT", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

absl::StatusOr<std::unique_ptr<PostgresCluster>> PostgresCluster::Start() {
  std::optional<std::string> bin = ServerBinDir();
  if (!bin.has_value()) return StepFailed("finding the server", "postgres/initdb not installed");
  std::unique_ptr<PostgresCluster> c(new PostgresCluster());
  c->bin_ = *bin;
  char tmpl[] = "/tmp/hsmsim-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return StepFailed("mkdtemp", std::strerror(errno));
  c->dir_ = tmpl;
  const std::string pwfile = c->dir_ + "/pw";
  std::ofstream(pwfile) << kPassword << "\n";
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) return StepFailed("finding the postgres user", "no such user");
    c->as_postgres_ = true;
    for (const std::string& p : {c->dir_, pwfile}) {
      if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        return StepFailed("chown", std::strerror(errno));
      }
    }
  }
  RunResult init = RunProgram(c->AsServerUser({c->bin_ + "/initdb", "-D", c->dir_ + "/data", "-U",
                                               kUser, "--auth=scram-sha-256", "--pwfile=" + pwfile,
                                               "--no-sync", "--encoding=UTF8", "--locale=C"}));
  if (init.exit_code != 0) return StepFailed("initdb", Describe(init));
  c->port_ = FreePort();
  ::setenv("PGPASSWORD", kPassword, 1);
  HSMSIM_RETURN_IF_ERROR(c->Launch());
  return c;
}

absl::Status PostgresCluster::Launch() {
  ChildOptions options;
  options.output_path = dir_ + "/log";
  options.die_with_parent = true;
  options.stop_grace = std::chrono::seconds(20);
  auto server = ChildProcess::Start(
      AsServerUser({bin_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_), "-c",
                    "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir_, "-c",
                    "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"}),
      options);
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    RunResult ready =
        RunProgram({bin_ + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", std::to_string(port_)});
    if (ready.exit_code == 0) return absl::OkStatus();
    if (!server_->Running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return StepFailed("starting postgres", ReadFile(dir_ + "/log"));
}

std::string PostgresCluster::Url(const std::string& database) const {
  return StrCat("postgresql://", kUser, "@127.0.0.1:", port_, "/", database);
}

absl::Status PostgresCluster::CreateDatabase(const std::string& name) {
  HSMSIM_ASSIGN_OR_RETURN(auto conn, host::internal::PgConnection::Connect(Url("postgres")));
  return conn->Exec(StrCat("CREATE DATABASE \"", name, "\"").c_str());
}

absl::Status PostgresCluster::Stop() {
  if (server_ == nullptr) return absl::OkStatus();
  server_->Signal(SIGINT);  // fast shutdown: sessions are cut
  if (!server_->WaitForExit(std::chrono::seconds(30)).has_value()) server_->Signal(SIGKILL);
  server_.reset();
  return absl::OkStatus();
}

absl::Status PostgresCluster::StartAgain() { return Launch(); }

PostgresCluster::~PostgresCluster() {
  (void)Stop();
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

PostgresCluster* SharedPostgresCluster() {
  static std::unique_ptr<PostgresCluster> cluster = [] {
    auto started = PostgresCluster::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return std::unique_ptr<PostgresCluster>();
    }
    return std::move(*started);
  }();
  return cluster.get();
}

}  // namespace hsmsim::test_support

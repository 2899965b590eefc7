// PostgresCluster: a throwaway PostgreSQL server for tests (issue 14): a new
// cluster (initdb) in a temporary directory, a postgres server on a free
// port of 127.0.0.1 (TCP, password authentication; no Unix socket outside
// the cluster's directory), stopped and deleted with the object. When this
// process runs as root the cluster runs as the `postgres` user (initdb
// refuses root). The binaries are found through `pg_config --bindir`
// (Debian: /usr/lib/postgresql/15/bin) or PATH.
#ifndef HSMSIM_TESTS_SUPPORT_POSTGRES_CLUSTER_H_
#define HSMSIM_TESTS_SUPPORT_POSTGRES_CLUSTER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace hsmsim::test_support {

class PostgresCluster {
 public:
  // The superuser the cluster is made with, and its password.
  static constexpr char kUser[] = "hsmsim";
  static constexpr char kPassword[] = "test-only-password";

  // ServerBinDir returns the directory of initdb and postgres, or nullopt
  // when the server is not installed (tests then skip, naming this).
  static std::optional<std::string> ServerBinDir();

  // Start makes and starts a cluster; waits up to 60 s for it to accept
  // connections. UNAVAILABLE naming the step and its output when a step
  // fails (the cluster's log is quoted).
  static absl::StatusOr<std::unique_ptr<PostgresCluster>> Start();

  ~PostgresCluster();  // fast shutdown, then the directory is removed
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  int port() const { return port_; }
  // Url returns postgresql://hsmsim@127.0.0.1:PORT/DB (no password: set
  // PGPASSWORD or a password file, as users do).
  std::string Url(const std::string& database) const;
  // CreateDatabase creates `name` (letters, digits, _); INTERNAL on failure.
  absl::Status CreateDatabase(const std::string& name);
  // Stop and StartAgain stop the server (fast shutdown: connections are
  // cut) and start it again on the same port and data, to test a server
  // that goes away.
  absl::Status Stop();
  absl::Status StartAgain();

 private:
  PostgresCluster() = default;
  std::vector<std::string> AsServerUser(std::vector<std::string> argv) const;
  absl::Status Launch();

  std::string bin_;
  std::string dir_;  // cluster's own directory (data/, socket, log)
  int port_ = 0;
  bool as_postgres_ = false;
  std::unique_ptr<ChildProcess> server_;
};

// SharedPostgresCluster returns this process's cluster, started at the first
// call and stopped when the process exits; nullptr (after printing why on
// stderr) when it cannot start.
PostgresCluster* SharedPostgresCluster();

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_POSTGRES_CLUSTER_H_

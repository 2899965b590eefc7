#include "host/hsmctl/bench_baselines.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "host/internal/sqlite.h"

namespace hsmsim::hsmctl {
namespace {

namespace fs = std::filesystem;

// RemoveDatabase removes a SQLite file and its WAL and shared-memory files.
void RemoveDatabase(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(path + suffix, ec);
}

absl::Status AppendRows(host::internal::Database& db, int64_t rows, const std::string& blob) {
  HSMSIM_RETURN_IF_ERROR(
      db.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
              "CREATE TABLE rows(id INTEGER PRIMARY KEY, blob BLOB NOT NULL);"));
  HSMSIM_ASSIGN_OR_RETURN(auto insert, db.Prepare("INSERT INTO rows(id, blob) VALUES(?,?)"));
  for (int64_t first = 1; first <= rows; first += kAppendTransactionRows) {
    HSMSIM_RETURN_IF_ERROR(db.Exec("BEGIN"));
    const int64_t last = std::min(rows, first + kAppendTransactionRows - 1);
    for (int64_t id = first; id <= last; ++id) {
      insert.Reset();
      insert.Bind(1, id).Bind(2, blob);
      HSMSIM_RETURN_IF_ERROR(insert.Run());
    }
    HSMSIM_RETURN_IF_ERROR(db.Exec("COMMIT"));
  }
  return absl::OkStatus();
}

// PeerBinary is `binary`, else ../bench/softhsm_peer_bench next to hsmctl.
std::string PeerBinary(const std::string& binary) {
  if (!binary.empty()) return binary;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "softhsm_peer_bench";
  return (self.parent_path().parent_path() / "bench" / "softhsm_peer_bench").string();
}

absl::Status PeerError(std::string_view what) {
  return Error(absl::StatusCode::kUnavailable, reason::kPeerUnavailable,
               StrCat("the SoftHSMv2 peer benchmark did not run: ", what));
}

}  // namespace

absl::StatusOr<double> MeasureSqliteAppendLimit(const std::string& dir, int64_t rows,
                                                size_t blob_bytes) {
  const std::string path = (fs::path(dir) / "sqlite-append-limit.db").string();
  RemoveDatabase(path);
  std::string blob(blob_bytes, '\0');
  HSMSIM_RETURN_IF_ERROR(crypto::OpenSslEntropyInstance().Generate(
      absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(blob.data()), blob.size())));
  absl::StatusOr<double> rate = [&]() -> absl::StatusOr<double> {
    HSMSIM_ASSIGN_OR_RETURN(auto db, host::internal::Database::Open(path, true));
    const auto start = std::chrono::steady_clock::now();
    HSMSIM_RETURN_IF_ERROR(AppendRows(*db, rows, blob));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return static_cast<double>(rows) / std::max(seconds, 1e-9);
  }();
  RemoveDatabase(path);
  return rate;
}

absl::StatusOr<double> RunSoftHsmPeer(const std::string& binary) {
  const std::string program = PeerBinary(binary);
  if (access(program.c_str(), X_OK) != 0) {
    return PeerError(StrCat(program,
                            " is not there (built with libp11-kit-dev; or pass "
                            "--peer-binary PATH)"));
  }
  // The program's arguments are fixed; only its path comes from outside,
  // and it is quoted for the shell.
  std::string quoted = "'";
  for (char c : program) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  const std::string command =
      StrCat(quoted,
             " --benchmark_filter='BM_SoftHsmRewrap/keys:4096' --benchmark_format=json "
             "--benchmark_min_time=1 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return PeerError(StrCat("cannot start ", program));
  std::string out;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) out.append(buffer, n);
  const int status = pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return PeerError(StrCat(program, " failed (status ", status, ")"));
  }
  const nlohmann::json doc = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.contains("benchmarks") || doc["benchmarks"].empty()) {
    return PeerError(StrCat(program, " printed no benchmark result"));
  }
  const nlohmann::json& run = doc["benchmarks"][0];
  if (run.value("error_occurred", false)) {
    return PeerError(run.value("error_message", std::string("skipped")));
  }
  if (!run.contains("keys_per_s") || !run["keys_per_s"].is_number()) {
    return PeerError(StrCat(program, " gave no keys_per_s"));
  }
  return run["keys_per_s"].get<double>();
}

}  // namespace hsmsim::hsmctl

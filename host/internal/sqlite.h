// A thin RAII wrapper over SQLite's C API: a connection and prepared
// statements, with errors as Status values naming the database file.
// Not thread-safe: one Database per thread.
#ifndef HSMSIM_HOST_INTERNAL_SQLITE_H_
#define HSMSIM_HOST_INTERNAL_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace hsmsim::host::internal {

class Statement;

class Database {
 public:
  // Open opens (creating if `create`) the database file at `path`.
  // Returns NOT_FOUND (NO_KEYSTORE) when it does not exist and !create,
  // DATA_LOSS (BAD_KEYSTORE) when it is not a SQLite database.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path, bool create);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Exec runs one or more statements without results.
  absl::Status Exec(std::string_view sql);
  // Prepare compiles one statement.
  absl::StatusOr<Statement> Prepare(std::string_view sql);
  // Error returns a status for the connection's last error.
  absl::Status Error(std::string_view what) const;

  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

// Statement is a prepared statement; Reset() before re-binding.
class Statement {
 public:
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
    other.stmt_ = nullptr;
  }
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::string_view text_or_blob, bool blob = true);
  // BindUnowned binds like Bind without copying the bytes: SQLite reads
  // them where they are. REQUIRES: they stay there, unchanged, until the
  // statement is Reset (Run resets it) or bound again.
  Statement& BindUnowned(int index, std::string_view text_or_blob, bool blob = true);
  Statement& BindNull(int index);
  // Step returns true when a row is ready, false when done, or an error.
  absl::StatusOr<bool> Step();
  // Run steps to completion (statements without rows).
  absl::Status Run();
  void Reset();

  int64_t Int(int column) const;
  std::string_view Text(int column) const;  // also for blobs
  bool IsNull(int column) const;

 private:
  friend class Database;
  Statement(const Database* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  const Database* db_;
  sqlite3_stmt* stmt_;
};

}  // namespace hsmsim::host::internal

#endif  // HSMSIM_HOST_INTERNAL_SQLITE_H_

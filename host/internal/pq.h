// A thin layer over libpq (PostgreSQL 15's C client,
// https://www.postgresql.org/docs/15/libpq.html) for the PostgreSQL
// keystore: one connection, statements with text parameters and binary
// results, COPY FROM STDIN, and errors mapped to hsmsim's reasons. Never
// used from two threads at once (a connection is not thread-safe).
#ifndef HSMSIM_HOST_INTERNAL_PQ_H_
#define HSMSIM_HOST_INTERNAL_PQ_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct pg_conn;
struct pg_result;

namespace hsmsim::host::internal {

// IsPostgresUrl is true for "postgresql://..." and "postgres://..." (the two
// URI schemes libpq accepts, libpq section 34.1.1).
bool IsPostgresUrl(std::string_view location);

// RedactPostgresUrl returns `url` with any password replaced by "***", for
// messages and logs.
std::string RedactPostgresUrl(std::string_view url);

// UrlHasPassword is true when libpq would read a password or an
// sslpassword from the URL (postgresql://user:PASSWORD@host/db, or a
// password= or sslpassword= parameter, however spelled), or when the URL
// does not parse and may hold one.
bool UrlHasPassword(std::string_view url);

// One parameter of a statement: text (PostgreSQL's input syntax for its
// type), raw bytes (a bytea, sent in binary format) or SQL NULL.
struct PgParam {
  enum class Kind { kText, kBytes, kNull };
  Kind kind = Kind::kText;
  std::string value;

  static PgParam Text(std::string v) { return PgParam{Kind::kText, std::move(v)}; }
  static PgParam Bytes(std::string v) { return PgParam{Kind::kBytes, std::move(v)}; }
  static PgParam Int(int64_t v) { return PgParam{Kind::kText, std::to_string(v)}; }
  static PgParam Null() { return PgParam{Kind::kNull, ""}; }
};

struct PgResultDeleter {
  void operator()(pg_result* r) const;
};

// A result in binary format (every column: int8 as 8 big-endian bytes, bool
// as one byte, text and bytea as their bytes).
class PgRows {
 public:
  explicit PgRows(pg_result* r) : result_(r) {}
  int rows() const;
  bool IsNull(int row, int col) const;
  int64_t Int(int row, int col) const;  // int8, int4 or int2 columns
  bool Bool(int row, int col) const;
  std::string Bytes(int row, int col) const;  // text or bytea; "" for NULL
  // The row count of an INSERT, UPDATE or DELETE (PQcmdTuples).
  int64_t Affected() const;

 private:
  std::unique_ptr<pg_result, PgResultDeleter> result_;
};

// PgConnection: one libpq connection. Errors of every call are
// UNAVAILABLE (KEYSTORE_IO) when the server cannot be reached, refuses the
// login or the connection was lost; ABORTED (KEYSTORE_BUSY) for a
// serialization failure or deadlock; ALREADY_EXISTS (KEY_EXISTS) for a
// unique violation (SQLSTATE 23505); INTERNAL (KEYSTORE_ERROR) otherwise.
// Messages name the redacted URL and the server's message, never a
// password.
class PgConnection {
 public:
  // Connect opens a connection to `url` (a libpq connection URI) with
  // `connect_timeout` seconds to reach the server.
  static absl::StatusOr<std::unique_ptr<PgConnection>> Connect(const std::string& url,
                                                               int connect_timeout_seconds = 10);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Query runs one statement with `params` ($1, $2, ...) and returns its
  // rows (binary format).
  absl::StatusOr<PgRows> Query(const char* sql, const std::vector<PgParam>& params = {});
  // Exec runs one statement or, without params, several separated by ";".
  absl::Status Exec(const char* sql, const std::vector<PgParam>& params = {});
  // CopyIn runs `copy_sql` (COPY ... FROM STDIN, text format) and sends
  // `data` (lines in COPY's text format, section "COPY" of the SQL
  // reference) as its input.
  absl::Status CopyIn(const char* copy_sql, std::string_view data);

  // Begin, Commit and Rollback a transaction; Rollback never fails (a
  // broken connection has no transaction left).
  absl::Status Begin() { return Exec("BEGIN"); }
  absl::Status Commit() { return Exec("COMMIT"); }
  void Rollback();

  const std::string& url() const { return url_; }      // as given
  const std::string& shown() const { return shown_; }  // redacted

 private:
  PgConnection(pg_conn* conn, std::string url);
  absl::Status ResultError(pg_result* r, std::string_view what);

  pg_conn* conn_;
  std::string url_;
  std::string shown_;
};

// CopyEscapeText appends `text` escaped for COPY's text format (backslash,
// tab, newline and carriage return) to `out`.
void CopyEscapeText(std::string_view text, std::string& out);
// CopyEscapeBytes appends `bytes` as a bytea in COPY's text format
// ("\\x" and lowercase hex) to `out`.
void CopyEscapeBytes(std::string_view bytes, std::string& out);
// HexArray returns a text[] literal of the items' lowercase hex, e.g.
// {0a0b,ff}, for decode(x, 'hex') on the server; `items` may hold empty
// strings (empty elements are written "").
std::string HexArray(const std::vector<std::string_view>& items);
// IntArray returns a bigint[] literal, e.g. {1,2,3}.
std::string IntArray(const std::vector<int64_t>& items);
// TextArray returns a text[] literal with every element quoted and
// escaped (array input syntax, section 8.15.6 of the PostgreSQL manual).
std::string TextArray(const std::vector<std::string_view>& items);

}  // namespace hsmsim::host::internal

#endif  // HSMSIM_HOST_INTERNAL_PQ_H_

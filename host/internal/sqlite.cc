#include "host/internal/sqlite.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host::internal {
namespace {

// CreatePrivateFile creates an empty `path` with mode 0600 when there is no
// file there yet. SQLite would create it 0644 less the umask, readable by
// everyone; it gives its -wal, -shm and -journal files the mode of the
// database file, so all of them end up 0600. SQLite reads an empty file as an
// empty database. An existing file is left as it is.
absl::Status CreatePrivateFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return absl::OkStatus();
    return hsmsim::Error(absl::StatusCode::kUnavailable, reason::kKeystoreIo,
                         StrCat("keystore ", path, ": cannot create: ", std::strerror(errno)));
  }
  // The umask can only have narrowed the mode; set it exactly.
  const int rc = ::fchmod(fd, 0600);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return hsmsim::Error(absl::StatusCode::kUnavailable, reason::kKeystoreIo,
                         StrCat("keystore ", path, ": cannot set its mode: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

// ConfigureSqliteOnce turns off SQLite's memory statistics, which take a
// global mutex on every allocation (SQLITE_CONFIG_MEMSTATUS,
// https://sqlite.org/c3ref/c_config_covering_index_scan.html). It must come
// before SQLite initializes; if something else initialized it first, the
// call fails harmlessly and the statistics stay on.
void ConfigureSqliteOnce() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path, bool create) {
  struct stat st;
  if (!create && ::stat(path.c_str(), &st) != 0) {
    return hsmsim::Error(absl::StatusCode::kNotFound, reason::kNoKeystore,
                         StrCat("keystore ", path,
                                " does not exist (create keys first: hsmctl "
                                "keys create)"));
  }
  if (create) HSMSIM_RETURN_IF_ERROR(CreatePrivateFile(path));
  sqlite3* db = nullptr;
  ConfigureSqliteOnce();
  // A Database is used from one thread at a time (sqlite.h): no mutex on
  // every call (SQLite's multi-thread mode, https://sqlite.org/threadsafe.html).
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  std::unique_ptr<Database> out(new Database(db, path));
  if (rc != SQLITE_OK) return out->Error("cannot open");
  sqlite3_busy_timeout(db, 10'000);
  // Reading the schema proves the file is a database before anything else.
  if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    return hsmsim::Error(
        absl::StatusCode::kDataLoss, reason::kBadKeystore,
        StrCat("keystore ", path, " is not a usable SQLite database: ", sqlite3_errmsg(db)));
  }
  return out;
}

Database::~Database() { sqlite3_close_v2(db_); }

absl::Status Database::Error(std::string_view what) const {
  int code = db_ ? sqlite3_extended_errcode(db_) : SQLITE_CANTOPEN;
  const char* msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
  absl::StatusCode status_code = absl::StatusCode::kInternal;
  std::string_view reason = reason::kKeystoreError;
  if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB) {
    status_code = absl::StatusCode::kDataLoss;
    reason = reason::kBadKeystore;
  } else if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) {
    status_code = absl::StatusCode::kUnavailable;
    reason = reason::kKeystoreBusy;
  } else if ((code & 0xff) == SQLITE_CONSTRAINT) {
    status_code = absl::StatusCode::kAlreadyExists;
    reason = reason::kKeyExists;
  } else if ((code & 0xff) == SQLITE_CANTOPEN || (code & 0xff) == SQLITE_READONLY ||
             (code & 0xff) == SQLITE_FULL || (code & 0xff) == SQLITE_IOERR) {
    status_code = absl::StatusCode::kUnavailable;
    reason = reason::kKeystoreIo;
  }
  return hsmsim::Error(status_code, reason, StrCat("keystore ", path_, ": ", what, ": ", msg));
}

absl::Status Database::Exec(std::string_view sql) {
  std::string s(sql);
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Error(StrCat("executing ", s.substr(0, 40)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statement> Database::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    return Error(StrCat("preparing ", sql.substr(0, 40)));
  }
  return Statement(this, stmt);
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = other.stmt_;
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::Bind(int index, std::string_view value, bool blob) {
  if (blob) {
    sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  } else {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  return *this;
}

Statement& Statement::BindUnowned(int index, std::string_view value, bool blob) {
  if (blob) {
    sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  } else {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  }
  return *this;
}

Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->Error("step");
}

absl::Status Statement::Run() {
  while (true) {
    HSMSIM_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) break;
  }
  Reset();
  return absl::OkStatus();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string_view Statement::Text(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) return {};
  return std::string_view(static_cast<const char*>(data), static_cast<size_t>(size));
}

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

}  // namespace hsmsim::host::internal

#include "host/internal/pq.h"

#include <endian.h>
#include <libpq-fe.h>

#include <cstring>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host::internal {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(std::string_view bytes, std::string& out) {
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
}

// The server's message without its trailing newline.
std::string Trimmed(const char* message) {
  std::string m = message == nullptr ? "" : message;
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

}  // namespace

bool IsPostgresUrl(std::string_view location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

bool UrlHasPassword(std::string_view url) {
  // libpq's own parser (section 34.1.2), so that every spelling it accepts
  // (percent-encoded keywords, '?' or '/' in an unencoded password) counts.
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(std::string(url).c_str(), &error);
  if (options == nullptr) {
    PQfreemem(error);  // never shown: libpq quotes the URL in it
    // Unparseable: a password may be in it; the redacted form says so.
    return RedactPostgresUrl(url) != url;
  }
  bool found = false;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    const std::string_view key = o->keyword;
    if ((key == "password" || key == "sslpassword") && o->val != nullptr && o->val[0] != '\0') {
      found = true;
    }
  }
  PQconninfoFree(options);
  // Also what libpq would misread ("user:pa/ss@host": a '/' in an
  // unencoded password) but would show in its error about the URL.
  return found || RedactPostgresUrl(url) != url;
}

std::string RedactPostgresUrl(std::string_view url) {
  std::string out(url);
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    // The user info ends at the last '@' of the URL's authority; libpq
    // reads a password up to '@', so '?', '/' and ':' may be inside it.
    const size_t start = scheme + 3;
    const size_t at = out.rfind('@');
    const size_t colon = out.find(':', start);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // Every password= or sslpassword= value, however often given.
  for (const std::string key : {"password=", "sslpassword="}) {
    for (size_t p = out.find(key); p != std::string::npos; p = out.find(key, p + 1)) {
      if (p == 0 || (out[p - 1] != '?' && out[p - 1] != '&')) continue;
      const size_t value = p + key.size();
      const size_t end = std::min(out.find('&', value), out.size());
      out.replace(value, end - value, "***");
    }
  }
  return out;
}

namespace {

// Scrubbed returns libpq's `message` about `url` with the URL, and any
// password libpq parsed out of it, replaced by their redacted forms.
std::string Scrubbed(std::string message, const std::string& url) {
  auto replace_all = [&message](const std::string& from, const std::string& to) {
    if (from.empty()) return;
    for (size_t p = message.find(from); p != std::string::npos;
         p = message.find(from, p + to.size())) {
      message.replace(p, from.size(), to);
    }
  };
  replace_all(url, RedactPostgresUrl(url));
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  PQfreemem(error);
  if (options != nullptr) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      const std::string_view key = o->keyword;
      if ((key == "password" || key == "sslpassword") && o->val != nullptr) {
        replace_all(o->val, "***");
      }
    }
    PQconninfoFree(options);
  }
  return message;
}

}  // namespace

void PgResultDeleter::operator()(pg_result* r) const { PQclear(r); }

int PgRows::rows() const { return PQntuples(result_.get()); }

bool PgRows::IsNull(int row, int col) const { return PQgetisnull(result_.get(), row, col) != 0; }

int64_t PgRows::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  const char* v = PQgetvalue(result_.get(), row, col);
  switch (PQgetlength(result_.get(), row, col)) {
    case 8: {
      uint64_t x;
      std::memcpy(&x, v, 8);
      return static_cast<int64_t>(be64toh(x));
    }
    case 4: {
      uint32_t x;
      std::memcpy(&x, v, 4);
      return static_cast<int32_t>(be32toh(x));
    }
    case 2: {
      uint16_t x;
      std::memcpy(&x, v, 2);
      return static_cast<int16_t>(be16toh(x));
    }
    default:
      return 0;
  }
}

bool PgRows::Bool(int row, int col) const {
  return !IsNull(row, col) && PQgetlength(result_.get(), row, col) == 1 &&
         PQgetvalue(result_.get(), row, col)[0] != 0;
}

std::string PgRows::Bytes(int row, int col) const {
  if (IsNull(row, col)) return "";
  return std::string(PQgetvalue(result_.get(), row, col),
                     static_cast<size_t>(PQgetlength(result_.get(), row, col)));
}

int64_t PgRows::Affected() const {
  const char* n = PQcmdTuples(result_.get());
  return n == nullptr || *n == '\0' ? 0 : std::strtoll(n, nullptr, 10);
}

PgConnection::PgConnection(pg_conn* conn, std::string url)
    : conn_(conn), url_(std::move(url)), shown_(RedactPostgresUrl(url_)) {}

PgConnection::~PgConnection() { PQfinish(conn_); }

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::Connect(const std::string& url,
                                                                    int connect_timeout_seconds) {
  const std::string timeout = std::to_string(connect_timeout_seconds);
  // Defaults first; `dbname`, last, is the URI (expand_dbname=1), whose own
  // settings win. TCP keepalives so that a dead peer is noticed in about a
  // minute (the rotation lock's connection idles for a whole rotation).
  const char* keys[] = {"connect_timeout",     "application_name", "keepalives", "keepalives_idle",
                        "keepalives_interval", "keepalives_count", "dbname",     nullptr};
  const char* values[] = {timeout.c_str(), "hsmctl", "1", "30", "10", "3", url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 1);
  if (conn == nullptr) {
    return Error(absl::StatusCode::kResourceExhausted, reason::kKeystoreIo,
                 "out of memory for a PostgreSQL connection");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string message = Scrubbed(Trimmed(PQerrorMessage(conn)), url);
    PQfinish(conn);
    return Error(absl::StatusCode::kUnavailable, reason::kKeystoreIo,
                 StrCat("cannot connect to the PostgreSQL keystore ", RedactPostgresUrl(url), ": ",
                        message));
  }
  std::unique_ptr<PgConnection> c(new PgConnection(conn, url));
  // No notices on stderr. Commits synchronous unless a transaction says
  // otherwise, whatever the database's or role's default (the keystore's
  // durability rests on it). A lock held by a stuck writer is waited for
  // at most a minute (KEYSTORE_BUSY), never forever.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  // Transactions are READ COMMITTED whatever the defaults: the journal
  // checks of rotation workers' stores and the claims (SKIP LOCKED) rest on
  // each statement seeing what committed before it. The server probes
  // this session too (its side of the TCP keepalives), so that it ends the
  // session of a host that vanished, and with it that host's rotation lock
  // or claimed range, in about a minute rather than the kernel's two hours.
  HSMSIM_RETURN_IF_ERROR(
      c->Exec("SET client_min_messages TO warning; SET synchronous_commit TO on; "
              "SET lock_timeout TO '60s'; "
              "SET default_transaction_isolation TO 'read committed'"));
  (void)c->Exec(
      "SET tcp_keepalives_idle TO 30; SET tcp_keepalives_interval TO 10; "
      "SET tcp_keepalives_count TO 3");
  // PostgreSQL 14 and later would end an idle session, and with it the
  // rotation lock; older servers do not know the setting.
  (void)c->Exec("SET idle_session_timeout TO 0");
  return c;
}

absl::Status PgConnection::ResultError(pg_result* r, std::string_view what) {
  const char* state = r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const std::string sqlstate = state == nullptr ? "" : state;
  const std::string message =
      Trimmed(r != nullptr && PQresultErrorMessage(r)[0] != '\0' ? PQresultErrorMessage(r)
                                                                 : PQerrorMessage(conn_));
  if (PQstatus(conn_) != CONNECTION_OK || sqlstate.rfind("08", 0) == 0 ||
      sqlstate.rfind("57P", 0) == 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kKeystoreIo,
                 StrCat("the PostgreSQL keystore ", shown_, " went away (", what, "): ", message));
  }
  if (sqlstate == "23505") {
    return Error(absl::StatusCode::kAlreadyExists, reason::kKeyExists, message);
  }
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03") {
    return Error(absl::StatusCode::kAborted, reason::kKeystoreBusy,
                 StrCat("PostgreSQL keystore ", shown_, " (", what, "): ", message));
  }
  return Error(absl::StatusCode::kInternal, reason::kKeystoreError,
               StrCat("PostgreSQL keystore ", shown_, " (", what, "): ", message,
                      sqlstate.empty() ? "" : StrCat(" [SQLSTATE ", sqlstate, "]")));
}

absl::StatusOr<PgRows> PgConnection::Query(const char* sql, const std::vector<PgParam>& params) {
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const PgParam& p = params[i];
    values[i] = p.kind == PgParam::Kind::kNull ? nullptr : p.value.data();
    lengths[i] = static_cast<int>(p.value.size());
    formats[i] = p.kind == PgParam::Kind::kBytes ? 1 : 0;
    if (p.kind == PgParam::Kind::kText && p.value.find('\0') != std::string::npos) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kKeystoreError,
                   "a text value for the PostgreSQL keystore holds a NUL byte");
    }
  }
  // Text parameters must be NUL-terminated: std::string's data() is.
  pg_result* r = PQexecParams(conn_, sql, static_cast<int>(params.size()), nullptr, values.data(),
                              lengths.data(), formats.data(), /*resultFormat=*/1);
  const ExecStatusType st = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    absl::Status e = ResultError(r, std::string_view(sql).substr(0, 40));
    PQclear(r);
    return e;
  }
  return PgRows(r);
}

absl::Status PgConnection::Exec(const char* sql, const std::vector<PgParam>& params) {
  if (!params.empty()) return Query(sql, params).status();
  pg_result* r = PQexec(conn_, sql);
  const ExecStatusType st = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
  absl::Status out = absl::OkStatus();
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    out = ResultError(r, std::string_view(sql).substr(0, 40));
  }
  PQclear(r);
  return out;
}

absl::Status PgConnection::CopyIn(const char* copy_sql, std::string_view data) {
  pg_result* r = PQexec(conn_, copy_sql);
  if (r == nullptr || PQresultStatus(r) != PGRES_COPY_IN) {
    absl::Status e = ResultError(r, "COPY");
    PQclear(r);
    return e;
  }
  PQclear(r);
  constexpr size_t kChunk = size_t{1} << 20;
  bool sent = true;
  for (size_t at = 0; at < data.size() && sent; at += kChunk) {
    const size_t n = std::min(kChunk, data.size() - at);
    sent = PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) == 1;
  }
  if (PQputCopyEnd(conn_, sent ? nullptr : "hsmctl could not send the COPY data") != 1) {
    return ResultError(nullptr, "COPY");
  }
  absl::Status out = absl::OkStatus();
  while ((r = PQgetResult(conn_)) != nullptr) {
    if (out.ok() && PQresultStatus(r) != PGRES_COMMAND_OK) out = ResultError(r, "COPY");
    PQclear(r);
  }
  return out;
}

void PgConnection::Rollback() {
  if (PQtransactionStatus(conn_) == PQTRANS_IDLE) return;
  pg_result* r = PQexec(conn_, "ROLLBACK");
  PQclear(r);
}

void CopyEscapeText(std::string_view text, std::string& out) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
}

void CopyEscapeBytes(std::string_view bytes, std::string& out) {
  out += "\\\\x";  // COPY unescapes "\\" to "\", and bytea reads "\x..." as hex
  AppendHex(bytes, out);
}

std::string HexArray(const std::vector<std::string_view>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(',');
    if (items[i].empty()) {
      out += "\"\"";
    } else {
      AppendHex(items[i], out);
    }
  }
  out.push_back('}');
  return out;
}

std::string IntArray(const std::vector<int64_t>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(items[i]);
  }
  out.push_back('}');
  return out;
}

std::string TextArray(const std::vector<std::string_view>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.push_back('"');
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

}  // namespace hsmsim::host::internal

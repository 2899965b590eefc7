#include "pkcs11/token_store.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::pkcs11 {
namespace {

using host::internal::Database;
using host::internal::Statement;

constexpr size_t kSaltSize = 16;
constexpr size_t kHashSize = 32;

constexpr char kCreateTables[] = R"sql(
CREATE TABLE IF NOT EXISTS pkcs11_token(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  label TEXT NOT NULL DEFAULT '',
  user_salt BLOB, user_hash BLOB, user_iterations INTEGER,
  user_failures INTEGER NOT NULL DEFAULT 0,
  so_salt BLOB, so_hash BLOB, so_iterations INTEGER,
  so_failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pkcs11_objects(
  name TEXT PRIMARY KEY,
  attributes BLOB NOT NULL);
)sql";

absl::StatusOr<std::string> HashPin(absl::Span<const uint8_t> pin, std::string_view salt,
                                    int iterations) {
  std::string out(kHashSize, '\0');
  if (PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(pin.data()), static_cast<int>(pin.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kCryptoFailed, "PBKDF2 failed");
  }
  return out;
}

// Column names the role's columns: Column(kSo, "hash") is "so_hash".
std::string Column(PinRole role, std::string_view what) {
  return StrCat(role == PinRole::kUser ? "user_" : "so_", what);
}

}  // namespace

absl::Status ValidatePin(absl::Span<const uint8_t> pin) {
  if (pin.size() < kMinPinSize || pin.size() > kMaxPinSize) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kBadPin,
        StrCat("a user PIN is ", kMinPinSize, "..", kMaxPinSize, " bytes, got ", pin.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(const std::string& path) {
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<Database> db, Database::Open(path, /*create=*/false));
  HSMSIM_RETURN_IF_ERROR(db->Exec("PRAGMA busy_timeout = 10000"));
  HSMSIM_RETURN_IF_ERROR(db->Exec(kCreateTables));
  std::unique_ptr<TokenStore> store(new TokenStore(std::move(db)));
  HSMSIM_RETURN_IF_ERROR(store->EnsureRow());
  return store;
}

absl::Status TokenStore::EnsureRow() {
  return db_->Exec("INSERT OR IGNORE INTO pkcs11_token(id) VALUES (1)");
}

absl::StatusOr<TokenRow> TokenStore::ReadToken() {
  HSMSIM_ASSIGN_OR_RETURN(
      Statement s,
      db_->Prepare("SELECT label, user_hash IS NOT NULL, user_failures, so_hash IS NOT NULL, "
                   "so_failures FROM pkcs11_token WHERE id=1"));
  HSMSIM_ASSIGN_OR_RETURN(bool row, s.Step());
  TokenRow token;
  if (!row) return token;
  token.label = std::string(s.Text(0));
  token.user_pin_set = s.Int(1) != 0;
  token.user_failures = s.Int(2);
  token.so_pin_set = s.Int(3) != 0;
  token.so_failures = s.Int(4);
  return token;
}

absl::Status TokenStore::SetPin(PinRole role, absl::Span<const uint8_t> pin) {
  HSMSIM_RETURN_IF_ERROR(ValidatePin(pin));
  std::string salt(kSaltSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), kSaltSize) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kEntropyFailed, "RAND_bytes failed");
  }
  HSMSIM_ASSIGN_OR_RETURN(std::string hash, HashPin(pin, salt, kPinIterations));
  HSMSIM_ASSIGN_OR_RETURN(
      Statement s, db_->Prepare(StrCat("UPDATE pkcs11_token SET ", Column(role, "salt"), "=?1, ",
                                       Column(role, "hash"), "=?2, ", Column(role, "iterations"),
                                       "=?3, ", Column(role, "failures"), "=0 WHERE id=1")));
  s.Bind(1, salt).Bind(2, hash).Bind(3, int64_t{kPinIterations});
  return s.Run();
}

absl::StatusOr<PinCheck> TokenStore::CheckPin(PinRole role, absl::Span<const uint8_t> pin,
                                              int64_t max_failures) {
  HSMSIM_ASSIGN_OR_RETURN(
      Statement s,
      db_->Prepare(StrCat("SELECT ", Column(role, "salt"), ", ", Column(role, "hash"), ", ",
                          Column(role, "iterations"), ", ", Column(role, "failures"),
                          " FROM pkcs11_token WHERE id=1 AND ", Column(role, "hash"),
                          " IS NOT NULL")));
  HSMSIM_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return PinCheck::kNotSet;
  if (s.Int(3) >= max_failures) return PinCheck::kLocked;
  const std::string salt(s.Text(0));
  const std::string stored(s.Text(1));
  HSMSIM_ASSIGN_OR_RETURN(std::string hash, HashPin(pin, salt, static_cast<int>(s.Int(2))));
  s.Reset();
  const bool match =
      hash.size() == stored.size() && CRYPTO_memcmp(hash.data(), stored.data(), hash.size()) == 0;
  const std::string failures = Column(role, "failures");
  HSMSIM_RETURN_IF_ERROR(
      db_->Exec(match ? StrCat("UPDATE pkcs11_token SET ", failures, "=0")
                      : StrCat("UPDATE pkcs11_token SET ", failures, "=", failures, "+1")));
  return match ? PinCheck::kOk : PinCheck::kWrong;
}

absl::Status TokenStore::InitToken(std::string_view label) {
  HSMSIM_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  HSMSIM_ASSIGN_OR_RETURN(Statement s,
                          db_->Prepare("UPDATE pkcs11_token SET label=?1, user_salt=NULL, "
                                       "user_hash=NULL, user_iterations=NULL, user_failures=0"));
  s.Bind(1, label, /*blob=*/false);
  absl::Status status = s.Run();
  if (status.ok()) status = db_->Exec("DELETE FROM pkcs11_objects");
  if (!status.ok()) {
    (void)db_->Exec("ROLLBACK");
    return status;
  }
  return db_->Exec("COMMIT");
}

absl::Status TokenStore::PutObject(std::string_view name, std::string_view attributes) {
  HSMSIM_ASSIGN_OR_RETURN(Statement s,
                          db_->Prepare("INSERT OR REPLACE INTO pkcs11_objects(name, attributes) "
                                       "VALUES (?1, ?2)"));
  s.Bind(1, name, /*blob=*/false).Bind(2, attributes);
  return s.Run();
}

absl::Status TokenStore::DeleteObject(std::string_view name) {
  HSMSIM_ASSIGN_OR_RETURN(Statement s, db_->Prepare("DELETE FROM pkcs11_objects WHERE name=?1"));
  s.Bind(1, name, /*blob=*/false);
  return s.Run();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> TokenStore::ReadObjects() {
  HSMSIM_ASSIGN_OR_RETURN(
      Statement s, db_->Prepare("SELECT name, attributes FROM pkcs11_objects ORDER BY name"));
  std::vector<std::pair<std::string, std::string>> out;
  while (true) {
    HSMSIM_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.emplace_back(std::string(s.Text(0)), std::string(s.Text(1)));
  }
  return out;
}

}  // namespace hsmsim::pkcs11

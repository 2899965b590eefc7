// TokenStore: what the PKCS#11 token keeps beside the fleet's keystore, in
// two tables of the same SQLite file that the keystore's own code (and so a
// rotation) never reads or writes:
//   pkcs11_token(id = 1, label, user_salt, user_hash, user_iterations,
//                user_failures, so_salt, so_hash, so_iterations,
//                so_failures)        the token's label, user and SO PINs
//   pkcs11_objects(name, attributes) per token object, the PKCS#11
//                                    attributes of the keystore key `name`
// The tables are created when missing (CREATE TABLE IF NOT EXISTS): they are
// an addition beside keystore schema version 2, not a new version, so older
// hsmctl keeps reading the keystore and `hsmctl keys migrate` keeps them.
//
// A PIN is kept as PBKDF2-HMAC-SHA-256 (random 16-byte salt,
// kPinIterations iterations) and compared in constant time; wrong PINs are
// counted in the database, so the count survives the process.
//
// Thread-safety: one TokenStore per thread (one SQLite connection).
#ifndef HSMSIM_PKCS11_TOKEN_STORE_H_
#define HSMSIM_PKCS11_TOKEN_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "host/internal/sqlite.h"

namespace hsmsim::pkcs11 {

inline constexpr int kPinIterations = 100'000;
inline constexpr size_t kMinPinSize = 4;
inline constexpr size_t kMaxPinSize = 64;

struct TokenRow {
  std::string label;  // "" until C_InitToken names it
  bool user_pin_set = false;
  int64_t user_failures = 0;
  bool so_pin_set = false;
  int64_t so_failures = 0;
};

// Whose PIN: the normal user's or the security officer's.
enum class PinRole { kUser, kSo };

enum class PinCheck { kOk, kWrong, kLocked, kNotSet };

class TokenStore {
 public:
  // Open opens the token tables in the keystore file `path` (which must
  // exist), creating them when missing. Errors: the database's (NOT_FOUND
  // NO_KEYSTORE for a missing file).
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(const std::string& path);

  absl::StatusOr<TokenRow> ReadToken();

  // SetPin replaces `role`'s PIN and clears its failure count. Returns
  // INVALID_ARGUMENT (BAD_PIN) for a PIN outside 4..64 bytes.
  absl::Status SetPin(PinRole role, absl::Span<const uint8_t> pin);

  // CheckPin compares `pin` with `role`'s PIN: kOk clears the failure
  // count, kWrong adds one, kLocked when `max_failures` wrong PINs were
  // counted (nothing is compared then), kNotSet when no PIN was set.
  absl::StatusOr<PinCheck> CheckPin(PinRole role, absl::Span<const uint8_t> pin,
                                    int64_t max_failures);

  // InitToken sets the label, forgets the user PIN (the SO PIN stays) and
  // every object's attributes (the keystore's keys stay: they are no longer
  // token objects).
  absl::Status InitToken(std::string_view label);

  absl::Status PutObject(std::string_view name, std::string_view attributes);
  absl::Status DeleteObject(std::string_view name);
  // ReadObjects returns every (name, attributes), in name order.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadObjects();

 private:
  explicit TokenStore(std::unique_ptr<host::internal::Database> db) : db_(std::move(db)) {}
  absl::Status EnsureRow();

  std::unique_ptr<host::internal::Database> db_;
};

// ValidatePin returns OK for a PIN of 4..64 bytes, INVALID_ARGUMENT (BAD_PIN)
// naming its size otherwise.
absl::Status ValidatePin(absl::Span<const uint8_t> pin);

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_TOKEN_STORE_H_

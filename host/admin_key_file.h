// Administrator signature keys and the files that hold them.
//
// An admin key file is text: header lines naming the format and the
// administrator, then the P-521 private key as a password-protected PKCS#8
// PEM block (PBES2, AES-256-CBC):
//
//   # hsmsim-admin-key v1
//   # name: alice
//   -----BEGIN ENCRYPTED PRIVATE KEY-----
//   ...
//   -----END ENCRYPTED PRIVATE KEY-----
//
// The name is not secret and is what `hsmctl admin add` installs on the unit.
// Files written before the cost was raised (OpenSSL's default of 2,048
// PBKDF2 iterations), and PBES2 files with scrypt, still open.
#ifndef HSMSIM_HOST_ADMIN_KEY_FILE_H_
#define HSMSIM_HOST_ADMIN_KEY_FILE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "crypto/ec_p521.h"

namespace hsmsim::host {

inline constexpr char kAdminKeyFileHeader[] = "# hsmsim-admin-key v1";

// PBKDF2-HMAC-SHA-256 iterations of new admin key files: the same cost as key
// part files (OWASP's 2023 figure), not OpenSSL's default of 2,048.
inline constexpr int kAdminKeyPbkdf2Iterations = 600'000;
// The range SerializeAdminKeyFile accepts and ParseAdminKeyFile opens (the
// lower bound only for writing: older files used 2,048). A file asking for
// more is refused before any work, so it cannot stall hsmctl.
inline constexpr int kMinAdminKeyPbkdf2Iterations = 10'000;
inline constexpr int kMaxAdminKeyPbkdf2Iterations = 10'000'000;

// ExternalSigner signs for an administrator whose private key is not in
// this process: a smart card (host/pkcs11/card_admin_key.h).
class ExternalSigner {
 public:
  virtual ~ExternalSigner() = default;
  // SignSha512 returns a DER ECDSA signature over SHA-512(message), the same
  // bytes crypto::SignSha512 gives for a key in memory; errors name the card.
  virtual absl::StatusOr<std::string> SignSha512(absl::Span<const uint8_t> message) const = 0;
};

// AdminKey is an administrator's name and P-521 key pair. Movable, not
// copyable; the private key is owned by OpenSSL and freed (and wiped) with it.
// With `external_signer` set, `key` holds only the public key and the
// signer holds the private one.
struct AdminKey {
  std::string name;
  crypto::EvpPkeyPtr key;
  std::string public_key_der;  // DER SubjectPublicKeyInfo
  crypto::KeyId key_id{};      // SHA-256 of public_key_der
  std::shared_ptr<const ExternalSigner> external_signer;
};

// MakeAdminKey wraps a key pair with its derived public key and id. Returns
// INVALID_ARGUMENT (BAD_ADMIN_NAME) for a name of 0 or more than 30
// characters or with a line break.
absl::StatusOr<AdminKey> MakeAdminKey(std::string name, crypto::EvpPkeyPtr key);

// SerializeAdminKeyFile returns the file text for `admin` under `password`,
// the key encrypted with PBKDF2 at `pbkdf2_iterations`. Returns
// INVALID_ARGUMENT (EMPTY_PASSWORD) for an empty password and (BAD_KDF_COST)
// for iterations outside kMin..kMaxAdminKeyPbkdf2Iterations.
absl::StatusOr<std::string> SerializeAdminKeyFile(
    const AdminKey& admin, std::string_view password,
    int pbkdf2_iterations = kAdminKeyPbkdf2Iterations);

// ParseAdminKeyFile opens file text. Returns INVALID_ARGUMENT
// (BAD_ADMIN_KEY_FILE) naming what is wrong with the format (including
// PBKDF2 iterations above kMaxAdminKeyPbkdf2Iterations), and
// PERMISSION_DENIED (WRONG_PASSWORD) when the password does not open the key.
absl::StatusOr<AdminKey> ParseAdminKeyFile(std::string_view text, std::string_view password);

// ReadAdminKeyFile reads and opens `path`; errors name the path. A missing
// or unreadable file is NOT_FOUND (FILE_UNREADABLE).
absl::StatusOr<AdminKey> ReadAdminKeyFile(const std::string& path, std::string_view password);

// WriteAdminKeyFile writes `admin` to a new file `path` with mode 0600.
// Refuses (ALREADY_EXISTS, FILE_EXISTS) to overwrite an existing file;
// errors of SerializeAdminKeyFile otherwise.
absl::Status WriteAdminKeyFile(const std::string& path, const AdminKey& admin,
                               std::string_view password,
                               int pbkdf2_iterations = kAdminKeyPbkdf2Iterations);

// ReadFileBytes returns a whole file. NOT_FOUND (FILE_UNREADABLE) naming the
// path and the OS error when it cannot be read.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// WriteNewFile creates `path` (mode `mode` exactly, whatever the umask;
// refusing to overwrite) and writes `bytes`, fsynced. ALREADY_EXISTS (FILE_EXISTS) or INTERNAL
// (FILE_WRITE_FAILED) naming the path.
absl::Status WriteNewFile(const std::string& path, std::string_view bytes, int mode);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_ADMIN_KEY_FILE_H_

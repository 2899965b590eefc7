// Administrator public keys read from files, so that installing an
// administrator (`hsmctl admin add`) needs nothing secret: neither the
// administrator's private key file nor its password.
//
// Two PEM forms are read:
//   - a public key: "-----BEGIN PUBLIC KEY-----" (SubjectPublicKeyInfo, as
//     `openssl pkey -pubout` writes it), optionally after a "# name: NAME"
//     line as in an admin key file;
//   - an X.509 certificate: "-----BEGIN CERTIFICATE-----"; its public key
//     is the administrator's and its subject's common name (CN) the name.
// The key must be EC P-521. Nothing in the file is checked for trust (a
// certificate's signature and dates are not verified): the key is the
// operator's choice, as with a key file.
#ifndef HSMSIM_HOST_ADMIN_PUBLIC_KEY_H_
#define HSMSIM_HOST_ADMIN_PUBLIC_KEY_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "host/admin_key_file.h"

namespace hsmsim::host {

// IsAdminPublicKeyText is true when `text` holds a PEM public key or
// certificate block and no private key block: a file ReadAdminPublicKey
// reads, not an admin key file.
bool IsAdminPublicKeyText(std::string_view text);

// ParseAdminPublicKey returns the administrator in `text` (read from
// `source`, named in errors) as an AdminKey holding only its public key (it
// cannot sign). The name is `name` when not empty, else the text's "# name:"
// line, else the certificate's subject CN. INVALID_ARGUMENT
// (BAD_PUBLIC_KEY_FILE) when no block parses or the key is not EC P-521;
// (BAD_ADMIN_NAME) when there is no name or it is not a valid one.
absl::StatusOr<AdminKey> ParseAdminPublicKey(std::string_view text, std::string_view name,
                                             std::string_view source);

// SerializeAdminPublicKey returns the public key file text of `admin`: the
// line "# name: NAME", then its public key as a PEM "PUBLIC KEY" block (what
// `hsmctl admin keygen --public-out` writes). Returns INTERNAL
// (CRYPTO_FAILED) when OpenSSL cannot encode the key.
absl::StatusOr<std::string> SerializeAdminPublicKey(const AdminKey& admin);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_ADMIN_PUBLIC_KEY_H_

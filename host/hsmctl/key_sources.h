// Where hsmctl's administrator keys and key parts come from: files, each
// opened with its own secret (--password-file FILE=PWFILE, or a prompt that
// names the file), or smart cards named by RFC 7512 `pkcs11:` URIs
// (docs/smart-cards.md).
#ifndef HSMSIM_HOST_HSMCTL_KEY_SOURCES_H_
#define HSMSIM_HOST_HSMCTL_KEY_SOURCES_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "host/admin_key_file.h"
#include "host/hsmctl/context.h"
#include "host/key_part_loading.h"
#include "host/pkcs11/card_set.h"

namespace hsmsim::hsmctl {

// AddPkcs11ModuleOption adds --pkcs11-module PATH|NAME to a command.
void AddPkcs11ModuleOption(CLI::App* cmd, Invocation& inv);

// Cards returns the invocation's smart cards (created on first use with
// --pkcs11-module, else $HSMSIM_PKCS11_MODULE, else p11-kit's registered
// modules).
host::pkcs11::CardSet& Cards(Invocation& inv);

// PasswordForFile returns the secret that opens `file`: the first line of
// PWFILE for --password-file FILE=PWFILE, else the invocation's one password
// (a plain --password-file, or $HSMSIM_PASSWORD), else a prompt naming the
// file. Errors of host::ResolvePassword.
absl::StatusOr<SecretBytes> PasswordForFile(Invocation& inv, const std::string& file);

// NewFilePassword returns the password for a file about to be written:
// the first line of PWFILE for --password-file FILE=PWFILE, else
// GetPassword (asking twice on a terminal).
absl::StatusOr<SecretBytes> NewFilePassword(Invocation& inv, const std::string& file,
                                            std::string_view prompt);

// OpenAdminKey opens an administrator key from `spec`: a `pkcs11:` URI
// (host/pkcs11/card_admin_key.h; `name` overrides the object's label) or an
// admin key file (its own secret, PasswordForFile; `name` must then be empty
// or equal the file's name). Errors of either.
absl::StatusOr<host::AdminKey> OpenAdminKey(Invocation& inv, const std::string& spec,
                                            const std::string& name = "");

// OpenAdminPublicKey opens the administrator `spec` names for installing
// it: a public key or certificate file (host/admin_public_key.h: no secret
// needed; `name` overrides its name), else as OpenAdminKey does (a key file
// with its own secret, or a card). Errors of either.
absl::StatusOr<host::AdminKey> OpenAdminPublicKey(Invocation& inv, const std::string& spec,
                                                  const std::string& name = "");

// KeyParts are the parts of one `mk load` / `recover --apply`.
struct KeyParts {
  std::vector<host::PartEncryptor> encryptors;
  std::vector<std::string> sources;   // file path, or "part 'L' on token 'T' (serial S)"
  std::vector<std::string> part_vps;  // 32-byte VP of each part
  // The VP of the XOR of the parts when every part is a file; unset when a
  // part is on a card (its clear value never reaches the host: the units
  // compute the VP and must agree).
  std::optional<std::string> expected_vp;
};

// The most parts one master key may have (LOAD_KEY_PARTS total_parts,
// docs/protocol.md section 7.7: 2..20).
inline constexpr size_t kMaxKeyParts = 20;

// OpenKeyParts opens 1 to kMaxKeyParts parts, each a key part file (its own
// secret) or a `pkcs11:` URI of a part on a card: all parts of a key, or a
// custodian's share of a load in parts (callers that need the whole key
// check for at least 2). INVALID_ARGUMENT (BAD_PART_COUNT) for none or too
// many, and the errors of files and cards, naming the file or token.
absl::StatusOr<KeyParts> OpenKeyParts(Invocation& inv, const std::vector<std::string>& specs);

// AddCardCommands registers `hsmctl card ...` (card_commands.cc).
void AddCardCommands(CLI::App& app, Invocation& inv);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_KEY_SOURCES_H_

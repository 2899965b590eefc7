// RFC 7512 `pkcs11:` URIs naming a token object (an administrator key or a
// key part on a smart card), parsed with p11-kit's parser (p11-kit/uri.h).
#ifndef HSMSIM_HOST_PKCS11_TOKEN_URI_H_
#define HSMSIM_HOST_PKCS11_TOKEN_URI_H_

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"

namespace hsmsim::host::pkcs11 {

// IsPkcs11Uri is true when `spec` starts with "pkcs11:" (RFC 7512 section 3),
// i.e. names a token object rather than a file.
bool IsPkcs11Uri(std::string_view spec);

// TokenUri is one parsed `pkcs11:` URI. Movable, not copyable; owns the
// p11-kit URI. Not thread-safe.
class TokenUri {
 public:
  // Parse parses `text` with p11_kit_uri_parse. Returns INVALID_ARGUMENT
  // (BAD_PKCS11_URI) naming the problem (p11_kit_uri_message) for text that
  // is not an RFC 7512 URI, or that has both pin-value and pin-source. The
  // error never repeats a pin-value.
  static absl::StatusOr<TokenUri> Parse(std::string_view text);

  // MatchesToken is p11_kit_uri_match_token_info: true when every token
  // attribute of the URI (token, manufacturer, serial, model) matches.
  bool MatchesToken(const CK_TOKEN_INFO& info) const;

  // Object attributes: the URI's `object` (CKA_LABEL) and `id` (CKA_ID,
  // percent-decoded bytes); empty when the URI has none.
  const std::string& object_label() const { return object_label_; }
  const std::string& object_id() const { return object_id_; }
  // The `type` (CKA_CLASS) when given.
  std::optional<CK_OBJECT_CLASS> object_class() const { return object_class_; }

  // Query attributes (RFC 7512 section 2.4): module-name, module-path,
  // pin-source, pin-value. Empty when absent.
  const std::string& module_name() const { return module_name_; }
  const std::string& module_path() const { return module_path_; }
  const std::string& pin_source() const { return pin_source_; }
  const SecretBytes& pin_value() const { return pin_value_; }

  // Printable is the URI as given with any pin-value replaced by "***", for
  // messages and the audit log.
  const std::string& Printable() const { return printable_; }

 private:
  struct UriFree {
    void operator()(P11KitUri* uri) const { p11_kit_uri_free(uri); }
  };
  std::unique_ptr<P11KitUri, UriFree> uri_;
  std::string object_label_;
  std::string object_id_;
  std::optional<CK_OBJECT_CLASS> object_class_;
  std::string module_name_;
  std::string module_path_;
  std::string pin_source_;
  SecretBytes pin_value_;
  std::string printable_;
};

}  // namespace hsmsim::host::pkcs11

#endif  // HSMSIM_HOST_PKCS11_TOKEN_URI_H_

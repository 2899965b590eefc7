// A logged-in session on one PKCS#11 token ("smart card"), loaded through
// p11-kit, and the few token operations hsmsim needs: find objects, read
// public attributes, sign, generate, derive, wrap, digest a key. Every error
// names the token (label and serial) and the PKCS#11 function and return
// value; none contains a PIN or key bytes.
//
// Function lists and types: PKCS#11 2.40 (p11-kit/pkcs11.h).
#ifndef HSMSIM_HOST_PKCS11_TOKEN_H_
#define HSMSIM_HOST_PKCS11_TOKEN_H_

#include <p11-kit/pkcs11.h>

#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"

namespace hsmsim::host::pkcs11 {

// LoadedModule is one initialized PKCS#11 module. It is finalized and
// released (p11_kit_module_finalize / p11_kit_module_release, or with the
// rest of the registered modules) when the last owner drops it. Shared by
// the tokens it serves; not thread-safe.
class LoadedModule {
 public:
  // LoadPath loads the module at `path` (p11_kit_module_load) and
  // initializes it. NOT_FOUND (PKCS11_MODULE_UNAVAILABLE) naming the path.
  static absl::StatusOr<std::shared_ptr<LoadedModule>> LoadPath(const std::string& path);
  // LoadRegistered loads and initializes every module registered with p11-kit
  // (p11_kit_modules_load_and_initialize); with `name` not empty only the one
  // of that name (p11_kit_module_get_name). NOT_FOUND
  // (PKCS11_MODULE_UNAVAILABLE) when none is there.
  static absl::StatusOr<std::vector<std::shared_ptr<LoadedModule>>> LoadRegistered(
      const std::string& name);

  LoadedModule(CK_FUNCTION_LIST* functions, std::string name, std::shared_ptr<void> owner)
      : functions_(functions), name_(std::move(name)), owner_(std::move(owner)) {}
  LoadedModule(const LoadedModule&) = delete;
  LoadedModule& operator=(const LoadedModule&) = delete;

  CK_FUNCTION_LIST* functions() const { return functions_; }
  const std::string& name() const { return name_; }

 private:
  CK_FUNCTION_LIST* functions_;
  std::string name_;
  std::shared_ptr<void> owner_;  // finalizes and releases the module
};

// Template is a CK_ATTRIBUTE array that owns its values.
class Template {
 public:
  Template& Bool(CK_ATTRIBUTE_TYPE type, bool value);
  Template& Ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  Template& Bytes(CK_ATTRIBUTE_TYPE type, std::string_view value);
  CK_ATTRIBUTE* data() { return attrs_.data(); }
  CK_ULONG size() const { return static_cast<CK_ULONG>(attrs_.size()); }

 private:
  std::list<std::string> values_;  // stable addresses
  std::vector<CK_ATTRIBUTE> attrs_;
};

// Token is a read-write session on one token, logged in as the user when
// the token requires it. Shared (std::shared_ptr) by the keys opened on it;
// the session closes with the last owner. Not thread-safe.
class Token {
 public:
  // Open opens a session on `slot` of `module` and, when the token requires
  // a login, logs in with `pin`. Errors name the token: PERMISSION_DENIED
  // (WRONG_PIN) for CKR_PIN_INCORRECT / CKR_PIN_INVALID / CKR_PIN_LEN_RANGE,
  // (PIN_LOCKED) for CKR_PIN_LOCKED, FAILED_PRECONDITION (TOKEN_REMOVED) when
  // the token is gone, INTERNAL (TOKEN_FAILED) otherwise.
  static absl::StatusOr<std::shared_ptr<Token>> Open(std::shared_ptr<LoadedModule> module,
                                                     CK_SLOT_ID slot, const CK_TOKEN_INFO& info,
                                                     const SecretBytes* pin);
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  // Describe is "token 'LABEL' (serial SERIAL)" for messages.
  const std::string& Describe() const { return description_; }
  const std::string& label() const { return label_; }
  const std::string& serial() const { return serial_; }

  // RequireMechanism returns OK when the token offers `mechanism` with every
  // flag of `flags` (CKF_SIGN, CKF_DERIVE, ...), else FAILED_PRECONDITION
  // (MECHANISM_NOT_SUPPORTED) naming the token and `name`.
  absl::Status RequireMechanism(CK_MECHANISM_TYPE mechanism, CK_FLAGS flags,
                                std::string_view name) const;

  // Find returns the handles of every object matching `match` (0 or more).
  absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> Find(Template& match);

  // GetBytes returns an attribute's value; NOT_FOUND (NO_SUCH_ATTRIBUTE)
  // when the object has none or it is sensitive (CKR_ATTRIBUTE_SENSITIVE is
  // never turned into a value).
  absl::StatusOr<std::string> GetBytes(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);
  // GetBool / GetUlong read a CK_BBOOL / CK_ULONG attribute; `fallback` when
  // the object has no such attribute.
  absl::StatusOr<bool> GetBool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, bool fallback);
  absl::StatusOr<CK_ULONG> GetUlong(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);

  // Sign returns C_Sign of `data` with `key` under `mechanism` (no
  // parameters), logging in for the operation when the key has
  // CKA_ALWAYS_AUTHENTICATE.
  absl::StatusOr<std::string> Sign(CK_MECHANISM_TYPE mechanism, CK_OBJECT_HANDLE key,
                                   std::string_view data);

  // GenerateKeyPair / GenerateKey / Derive return new object handles.
  absl::Status GenerateKeyPair(CK_MECHANISM_TYPE mechanism, Template& public_template,
                               Template& private_template, CK_OBJECT_HANDLE* public_key,
                               CK_OBJECT_HANDLE* private_key);
  absl::StatusOr<CK_OBJECT_HANDLE> GenerateKey(CK_MECHANISM_TYPE mechanism, Template& tmpl);
  absl::StatusOr<CK_OBJECT_HANDLE> Derive(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE base,
                                          Template& tmpl);

  // Wrap returns C_WrapKey of `key` under `wrapping_key` with `mechanism`.
  absl::StatusOr<std::string> Wrap(CK_MECHANISM_TYPE mechanism, CK_OBJECT_HANDLE wrapping_key,
                                   CK_OBJECT_HANDLE key);

  // DigestKey returns the digest (`mechanism`) of `prefix` followed by the
  // value of secret key `key` (C_DigestUpdate, C_DigestKey, C_DigestFinal):
  // the value is digested on the token and never read.
  absl::StatusOr<std::string> DigestKey(CK_MECHANISM_TYPE mechanism, std::string_view prefix,
                                        CK_OBJECT_HANDLE key);

  // Destroy destroys an object (session objects this code made).
  absl::Status Destroy(CK_OBJECT_HANDLE object);

  // Failure maps a PKCS#11 return value of `function` to a status naming
  // this token (see Open for the codes).
  absl::Status Failure(CK_RV rv, std::string_view function) const;

 private:
  Token(std::shared_ptr<LoadedModule> module, CK_SLOT_ID slot, const CK_TOKEN_INFO& info);
  CK_FUNCTION_LIST& f() const { return *module_->functions(); }

  std::shared_ptr<LoadedModule> module_;
  CK_SLOT_ID slot_;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  std::string label_;
  std::string serial_;
  std::string description_;
  SecretBytes pin_;  // kept for CKA_ALWAYS_AUTHENTICATE keys only
};

// SessionObject destroys a session object of `token` when it goes out of
// scope (ephemeral keys of a part export).
class SessionObject {
 public:
  SessionObject(Token& token, CK_OBJECT_HANDLE handle) : token_(token), handle_(handle) {}
  ~SessionObject() {
    if (handle_ != CK_INVALID_HANDLE) (void)token_.Destroy(handle_);
  }
  SessionObject(const SessionObject&) = delete;
  SessionObject& operator=(const SessionObject&) = delete;
  CK_OBJECT_HANDLE get() const { return handle_; }

 private:
  Token& token_;
  CK_OBJECT_HANDLE handle_;
};

// TrimPadded returns a blank-padded PKCS#11 string field (CK_TOKEN_INFO
// label, serialNumber, ...) without the padding.
std::string TrimPadded(const unsigned char* field, size_t size);

}  // namespace hsmsim::host::pkcs11

#endif  // HSMSIM_HOST_PKCS11_TOKEN_H_

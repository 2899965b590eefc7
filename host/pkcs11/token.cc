#include "host/pkcs11/token.h"

#include <p11-kit/p11-kit.h>

#include <cstdio>
#include <cstdlib>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

// PKCS#11 modules are other people's code, loaded at run time and not built
// with our sanitizers: LeakSanitizer is not to report what they keep (SoftHSM
// keeps its singletons until exit). Used only in sanitizer builds.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libsofthsm2.so\nleak:libp11-kit.so\nleak:p11-kit-proxy.so\n";
}

namespace hsmsim::host::pkcs11 {
namespace {

std::string RvText(CK_RV rv) {
  char hex[32];
  std::snprintf(hex, sizeof(hex), "0x%08lx", static_cast<unsigned long>(rv));
  return StrCat(p11_kit_strerror(rv), " (", hex, ")");
}

absl::Status ModuleUnavailable(std::string_view what) {
  return Error(absl::StatusCode::kNotFound, reason::kPkcs11ModuleUnavailable, what);
}

}  // namespace

std::string TrimPadded(const unsigned char* field, size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  const size_t end = s.find_last_not_of(" \0", std::string::npos, 2);
  return end == std::string::npos ? "" : s.substr(0, end + 1);
}

absl::StatusOr<std::shared_ptr<LoadedModule>> LoadedModule::LoadPath(const std::string& path) {
  CK_FUNCTION_LIST* functions = p11_kit_module_load(path.c_str(), 0);
  if (functions == nullptr) {
    return ModuleUnavailable(StrCat("cannot load the PKCS#11 module ", path, ": ",
                                    p11_kit_message() ? p11_kit_message() : "unknown error"));
  }
  if (CK_RV rv = p11_kit_module_initialize(functions); rv != CKR_OK) {
    p11_kit_module_release(functions);
    return ModuleUnavailable(
        StrCat("the PKCS#11 module ", path, " does not initialize: ", RvText(rv)));
  }
  std::shared_ptr<void> owner(functions, [](void* f) {
    auto* list = static_cast<CK_FUNCTION_LIST*>(f);
    p11_kit_module_finalize(list);
    p11_kit_module_release(list);
  });
  return std::make_shared<LoadedModule>(functions, path, std::move(owner));
}

absl::StatusOr<std::vector<std::shared_ptr<LoadedModule>>> LoadedModule::LoadRegistered(
    const std::string& name) {
  CK_FUNCTION_LIST** all = p11_kit_modules_load_and_initialize(0);
  if (all == nullptr) {
    return ModuleUnavailable(StrCat("p11-kit loads no registered PKCS#11 modules: ",
                                    p11_kit_message() ? p11_kit_message() : "none registered"));
  }
  std::shared_ptr<void> owner(all, [](void* list) {
    p11_kit_modules_finalize_and_release(static_cast<CK_FUNCTION_LIST**>(list));
  });
  std::vector<std::shared_ptr<LoadedModule>> out;
  std::string names;
  for (CK_FUNCTION_LIST** m = all; *m != nullptr; ++m) {
    char* module_name = p11_kit_module_get_name(*m);
    std::string n = module_name != nullptr ? module_name : "";
    std::free(module_name);
    names += StrCat(names.empty() ? "" : ", ", n);
    if (name.empty() || n == name) out.push_back(std::make_shared<LoadedModule>(*m, n, owner));
  }
  if (out.empty()) {
    return ModuleUnavailable(name.empty()
                                 ? std::string("no PKCS#11 module is registered with p11-kit")
                                 : StrCat("no PKCS#11 module named '", name,
                                          "' is registered with p11-kit (registered: ",
                                          names.empty() ? "none" : names, ")"));
  }
  return out;
}

Template& Template::Bool(CK_ATTRIBUTE_TYPE type, bool value) {
  return Bytes(type, std::string(1, static_cast<char>(value ? CK_TRUE : CK_FALSE)));
}

Template& Template::Ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  return Bytes(type, std::string(reinterpret_cast<const char*>(&value), sizeof(value)));
}

Template& Template::Bytes(CK_ATTRIBUTE_TYPE type, std::string_view value) {
  std::string& stored = values_.emplace_back(value);
  attrs_.push_back(CK_ATTRIBUTE{type, stored.data(), static_cast<CK_ULONG>(stored.size())});
  return *this;
}

Token::Token(std::shared_ptr<LoadedModule> module, CK_SLOT_ID slot, const CK_TOKEN_INFO& info)
    : module_(std::move(module)),
      slot_(slot),
      label_(TrimPadded(info.label, sizeof(info.label))),
      serial_(TrimPadded(info.serialNumber, sizeof(info.serialNumber))) {
  description_ = StrCat("token '", label_, "' (serial ", serial_, ")");
}

Token::~Token() {
  if (session_ != CK_INVALID_HANDLE) f().C_CloseSession(session_);
}

absl::StatusOr<std::shared_ptr<Token>> Token::Open(std::shared_ptr<LoadedModule> module,
                                                   CK_SLOT_ID slot, const CK_TOKEN_INFO& info,
                                                   const SecretBytes* pin) {
  std::shared_ptr<Token> token(new Token(std::move(module), slot, info));
  CK_RV rv = token->f().C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                      &token->session_);
  if (rv != CKR_OK) {
    token->session_ = CK_INVALID_HANDLE;
    return token->Failure(rv, "C_OpenSession");
  }
  if ((info.flags & CKF_LOGIN_REQUIRED) == 0) return token;
  if (pin == nullptr) {
    // A protected authentication path (PIN pad): the token asks for the PIN.
    rv = token->f().C_Login(token->session_, CKU_USER, nullptr, 0);
  } else {
    rv = token->f().C_Login(token->session_, CKU_USER, const_cast<CK_UTF8CHAR*>(pin->data()),
                            static_cast<CK_ULONG>(pin->size()));
    token->pin_ = *pin;
  }
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) return token->Failure(rv, "C_Login");
  return token;
}

absl::Status Token::Failure(CK_RV rv, std::string_view function) const {
  const std::string what = StrCat(description_, ": ", function, ": ", RvText(rv));
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
      return Error(absl::StatusCode::kPermissionDenied, reason::kWrongPin,
                   StrCat(description_, " refused the PIN (", function, ": ", RvText(rv), ")"));
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
      return Error(absl::StatusCode::kPermissionDenied, reason::kPinLocked,
                   StrCat(what, "; the token's security officer must reset the PIN"));
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SLOT_ID_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
      return Error(absl::StatusCode::kFailedPrecondition, reason::kTokenRemoved,
                   StrCat(what, ": the token was removed or its session closed"));
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_FUNCTION_NOT_SUPPORTED:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_INDIGESTIBLE:
    case CKR_KEY_UNEXTRACTABLE:
    case CKR_KEY_NOT_WRAPPABLE:
      return Error(absl::StatusCode::kFailedPrecondition, reason::kMechanismNotSupported, what);
    default:
      return Error(absl::StatusCode::kInternal, reason::kTokenFailed, what);
  }
}

absl::Status Token::RequireMechanism(CK_MECHANISM_TYPE mechanism, CK_FLAGS flags,
                                     std::string_view name) const {
  CK_MECHANISM_INFO info{};
  CK_RV rv = f().C_GetMechanismInfo(slot_, mechanism, &info);
  if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && (info.flags & flags) != flags)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kMechanismNotSupported,
                 StrCat(description_, " does not offer ", name,
                        " (hsmsim needs it; see docs/smart-cards.md)"));
  }
  if (rv != CKR_OK) return Failure(rv, "C_GetMechanismInfo");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> Token::Find(Template& match) {
  if (CK_RV rv = f().C_FindObjectsInit(session_, match.data(), match.size()); rv != CKR_OK) {
    return Failure(rv, "C_FindObjectsInit");
  }
  std::vector<CK_OBJECT_HANDLE> out;
  CK_RV rv = CKR_OK;
  while (true) {
    CK_OBJECT_HANDLE batch[16];
    CK_ULONG count = 0;
    rv = f().C_FindObjects(session_, batch, 16, &count);
    if (rv != CKR_OK || count == 0) break;
    out.insert(out.end(), batch, batch + count);
  }
  f().C_FindObjectsFinal(session_);
  if (rv != CKR_OK) return Failure(rv, "C_FindObjects");
  return out;
}

absl::StatusOr<std::string> Token::GetBytes(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  CK_RV rv = f().C_GetAttributeValue(session_, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
      attr.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchAttribute,
                 StrCat(description_, ": the object has no readable attribute 0x",
                        static_cast<unsigned long>(type)));
  }
  if (rv != CKR_OK) return Failure(rv, "C_GetAttributeValue");
  std::string value(attr.ulValueLen, '\0');
  attr.pValue = value.data();
  rv = f().C_GetAttributeValue(session_, object, &attr, 1);
  if (rv != CKR_OK) return Failure(rv, "C_GetAttributeValue");
  value.resize(attr.ulValueLen);
  return value;
}

absl::StatusOr<bool> Token::GetBool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                                    bool fallback) {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE attr{type, &value, sizeof(value)};
  CK_RV rv = f().C_GetAttributeValue(session_, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || attr.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return fallback;
  }
  if (rv != CKR_OK) return Failure(rv, "C_GetAttributeValue");
  return value == CK_TRUE;
}

absl::StatusOr<CK_ULONG> Token::GetUlong(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ULONG value = 0;
  CK_ATTRIBUTE attr{type, &value, sizeof(value)};
  CK_RV rv = f().C_GetAttributeValue(session_, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || attr.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return Error(
        absl::StatusCode::kNotFound, reason::kNoSuchAttribute,
        StrCat(description_, ": the object has no attribute 0x", static_cast<unsigned long>(type)));
  }
  if (rv != CKR_OK) return Failure(rv, "C_GetAttributeValue");
  return value;
}

absl::StatusOr<std::string> Token::Sign(CK_MECHANISM_TYPE mechanism, CK_OBJECT_HANDLE key,
                                        std::string_view data) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  if (CK_RV rv = f().C_SignInit(session_, &mech, key); rv != CKR_OK) {
    return Failure(rv, "C_SignInit");
  }
  HSMSIM_ASSIGN_OR_RETURN(bool always_authenticate,
                          GetBool(key, CKA_ALWAYS_AUTHENTICATE, /*fallback=*/false));
  if (always_authenticate) {
    CK_RV rv = f().C_Login(session_, CKU_CONTEXT_SPECIFIC,
                           pin_.empty() ? nullptr : const_cast<CK_UTF8CHAR*>(pin_.data()),
                           static_cast<CK_ULONG>(pin_.size()));
    if (rv != CKR_OK) return Failure(rv, "C_Login (context specific)");
  }
  auto* in = reinterpret_cast<CK_BYTE*>(const_cast<char*>(data.data()));
  CK_ULONG length = 0;
  CK_RV rv = f().C_Sign(session_, in, static_cast<CK_ULONG>(data.size()), nullptr, &length);
  if (rv != CKR_OK) return Failure(rv, "C_Sign");
  std::string signature(length, '\0');
  rv = f().C_Sign(session_, in, static_cast<CK_ULONG>(data.size()),
                  reinterpret_cast<CK_BYTE*>(signature.data()), &length);
  if (rv != CKR_OK) return Failure(rv, "C_Sign");
  signature.resize(length);
  return signature;
}

absl::Status Token::GenerateKeyPair(CK_MECHANISM_TYPE mechanism, Template& public_template,
                                    Template& private_template, CK_OBJECT_HANDLE* public_key,
                                    CK_OBJECT_HANDLE* private_key) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  CK_RV rv = f().C_GenerateKeyPair(session_, &mech, public_template.data(), public_template.size(),
                                   private_template.data(), private_template.size(), public_key,
                                   private_key);
  if (rv != CKR_OK) return Failure(rv, "C_GenerateKeyPair");
  return absl::OkStatus();
}

absl::StatusOr<CK_OBJECT_HANDLE> Token::GenerateKey(CK_MECHANISM_TYPE mechanism, Template& tmpl) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_RV rv = f().C_GenerateKey(session_, &mech, tmpl.data(), tmpl.size(), &key);
  if (rv != CKR_OK) return Failure(rv, "C_GenerateKey");
  return key;
}

absl::StatusOr<CK_OBJECT_HANDLE> Token::Derive(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE base,
                                               Template& tmpl) {
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_RV rv = f().C_DeriveKey(session_, &mechanism, base, tmpl.data(), tmpl.size(), &key);
  if (rv != CKR_OK) return Failure(rv, "C_DeriveKey");
  return key;
}

absl::StatusOr<std::string> Token::Wrap(CK_MECHANISM_TYPE mechanism, CK_OBJECT_HANDLE wrapping_key,
                                        CK_OBJECT_HANDLE key) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  CK_ULONG length = 0;
  CK_RV rv = f().C_WrapKey(session_, &mech, wrapping_key, key, nullptr, &length);
  if (rv != CKR_OK) return Failure(rv, "C_WrapKey");
  std::string wrapped(length, '\0');
  rv = f().C_WrapKey(session_, &mech, wrapping_key, key, reinterpret_cast<CK_BYTE*>(wrapped.data()),
                     &length);
  if (rv != CKR_OK) return Failure(rv, "C_WrapKey");
  wrapped.resize(length);
  return wrapped;
}

absl::StatusOr<std::string> Token::DigestKey(CK_MECHANISM_TYPE mechanism, std::string_view prefix,
                                             CK_OBJECT_HANDLE key) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  if (CK_RV rv = f().C_DigestInit(session_, &mech); rv != CKR_OK) {
    return Failure(rv, "C_DigestInit");
  }
  CK_RV rv =
      f().C_DigestUpdate(session_, reinterpret_cast<CK_BYTE*>(const_cast<char*>(prefix.data())),
                         static_cast<CK_ULONG>(prefix.size()));
  if (rv == CKR_OK) rv = f().C_DigestKey(session_, key);
  std::string digest(64, '\0');
  CK_ULONG length = static_cast<CK_ULONG>(digest.size());
  if (rv != CKR_OK) {
    f().C_DigestFinal(session_, reinterpret_cast<CK_BYTE*>(digest.data()), &length);
    return Failure(rv, "C_DigestKey");
  }
  rv = f().C_DigestFinal(session_, reinterpret_cast<CK_BYTE*>(digest.data()), &length);
  if (rv != CKR_OK) return Failure(rv, "C_DigestFinal");
  digest.resize(length);
  return digest;
}

absl::Status Token::Destroy(CK_OBJECT_HANDLE object) {
  if (CK_RV rv = f().C_DestroyObject(session_, object); rv != CKR_OK) {
    return Failure(rv, "C_DestroyObject");
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::host::pkcs11

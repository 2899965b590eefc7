// Object functions: C_GenerateKey, C_CreateObject, C_DestroyObject,
// C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit,
// C_FindObjects, C_FindObjectsFinal; C_WrapKey and C_UnwrapKey
// (CKM_AES_KEY_WRAP_PAD, in a unit).
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "common/secret_bytes.h"
#include "pkcs11/module_state.h"
#include "proto/wire/blob_attributes.h"

namespace hsmsim::pkcs11 {
namespace {

const CK_ATTRIBUTE* Find(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ATTRIBUTE_TYPE type) {
  for (CK_ULONG i = 0; i < count; ++i) {
    if (templ[i].type == type) return &templ[i];
  }
  return nullptr;
}

bool ValidAesSize(CK_ULONG size) { return size == 16 || size == 24 || size == 32; }

// NewKeyName returns a fresh keystore name for a token object.
std::string NewKeyName() {
  uint8_t random[16];
  if (RAND_bytes(random, sizeof(random)) != 1) return std::string();
  return "pkcs11-" + ToHex(absl::MakeConstSpan(random, sizeof(random)));
}

// NewKeyObject makes an AES key object from a template: a keystore key for
// CKA_TOKEN TRUE, else a session object. `source` says where the key comes
// from: generated (C_GenerateKey), a clear value (C_CreateObject) or a
// wrapped key (C_UnwrapKey).
CK_RV NewKeyObject(ModuleState& m, CK_SESSION_HANDLE handle, Session& s, CK_ATTRIBUTE_PTR templ,
                   CK_ULONG count, CK_ULONG key_bytes, CK_MECHANISM_TYPE mechanism,
                   const KeySource& source, CK_OBJECT_HANDLE_PTR out, const char* function) {
  Object object;
  CK_RV rv = ObjectAttributes::ForNewAesKey(templ, count, key_bytes, mechanism, &object.attributes);
  if (rv != CKR_OK) return rv;
  const bool token = object.attributes.Bool(CKA_TOKEN);
  if (token && !s.rw()) return CKR_SESSION_READ_ONLY;
  if (object.attributes.Bool(CKA_PRIVATE) && m.user != CKU_USER) return CKR_USER_NOT_LOGGED_IN;
  object.key.token = token;
  // Only a key made extractable may leave a unit wrapped: the unit checks
  // the blob's attribute, whatever the application does with this module.
  KeySource placed = source;
  placed.blob_attributes =
      object.attributes.Bool(CKA_EXTRACTABLE) ? wire::kBlobAttributeExtractable : 0;
  if (token) {
    object.key.name = NewKeyName();
    if (object.key.name.empty()) return CKR_FUNCTION_FAILED;
    absl::Status made = m.token->CreateTokenKey(object.key.name, key_bytes, placed);
    if (made.ok()) made = m.token->store().PutObject(object.key.name, object.attributes.Encode());
    if (!made.ok()) return ToCkRv(made, function);
  } else {
    absl::StatusOr<std::string> blob = m.token->CreateSessionBlob(key_bytes, placed);
    if (!blob.ok()) return ToCkRv(blob.status(), function);
    object.key.blob = std::move(*blob);
    object.owner = handle;
  }
  const CK_OBJECT_HANDLE h = m.next_object++;
  if (token) m.token_handles[object.key.name] = h;
  m.objects[h] = std::move(object);
  *out = h;
  return CKR_OK;
}

CK_RV GenerateKey(ModuleState& m, CK_SESSION_HANDLE handle, Session& s, CK_MECHANISM_PTR mech,
                  CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out) {
  if (mech->mechanism != CKM_AES_KEY_GEN) return CKR_MECHANISM_INVALID;
  if (mech->pParameter != nullptr || mech->ulParameterLen != 0) return CKR_MECHANISM_PARAM_INVALID;
  if (Find(templ, count, CKA_VALUE) != nullptr) return CKR_TEMPLATE_INCONSISTENT;
  const CK_ATTRIBUTE* len = Find(templ, count, CKA_VALUE_LEN);
  if (len == nullptr) return CKR_TEMPLATE_INCOMPLETE;
  if (len->pValue == nullptr || len->ulValueLen != sizeof(CK_ULONG)) {
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  CK_ULONG size = 0;
  std::memcpy(&size, len->pValue, sizeof(size));
  if (!ValidAesSize(size)) return CKR_ATTRIBUTE_VALUE_INVALID;
  return NewKeyObject(m, handle, s, templ, count, size, CKM_AES_KEY_GEN, KeySource(), out,
                      "C_GenerateKey");
}

CK_RV CreateObject(ModuleState& m, CK_SESSION_HANDLE handle, Session& s, CK_ATTRIBUTE_PTR templ,
                   CK_ULONG count, CK_OBJECT_HANDLE_PTR out) {
  const CK_ATTRIBUTE* cls = Find(templ, count, CKA_CLASS);
  const CK_ATTRIBUTE* type = Find(templ, count, CKA_KEY_TYPE);
  const CK_ATTRIBUTE* value = Find(templ, count, CKA_VALUE);
  if (cls == nullptr || type == nullptr || value == nullptr) return CKR_TEMPLATE_INCOMPLETE;
  if (value->pValue == nullptr || !ValidAesSize(value->ulValueLen)) {
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  if (const CK_ATTRIBUTE* len = Find(templ, count, CKA_VALUE_LEN); len != nullptr) {
    CK_ULONG size = 0;
    if (len->pValue == nullptr || len->ulValueLen != sizeof(size))
      return CKR_ATTRIBUTE_VALUE_INVALID;
    std::memcpy(&size, len->pValue, sizeof(size));
    if (size != value->ulValueLen) return CKR_TEMPLATE_INCONSISTENT;
  }
  const SecretBytes key = MakeSecret(
      absl::MakeConstSpan(static_cast<const uint8_t*>(value->pValue), value->ulValueLen));
  KeySource source;
  source.value = &key;
  return NewKeyObject(m, handle, s, templ, count, value->ulValueLen, CK_UNAVAILABLE_INFORMATION,
                      source, out, "C_CreateObject");
}

// The RFC 5649 overhead: a key is wrapped to its size rounded up to 8
// bytes, plus 8.
constexpr CK_ULONG kKeyWrapPadOverhead = 8;

CK_RV CheckKeyWrapMechanism(CK_MECHANISM_PTR mech) {
  if (mech->mechanism != CKM_AES_KEY_WRAP_PAD) return CKR_MECHANISM_INVALID;
  // The optional parameter (another initial value than RFC 5649's) is not
  // supported.
  if (mech->pParameter != nullptr || mech->ulParameterLen != 0) return CKR_MECHANISM_PARAM_INVALID;
  return CKR_OK;
}

// WrapKey: the attribute policy (CKA_WRAP, CKA_EXTRACTABLE,
// CKA_WRAP_WITH_TRUSTED), a size query, then the wrap in a unit.
CK_RV WrapKey(ModuleState& m, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping_handle,
              CK_OBJECT_HANDLE key_handle, CK_BYTE_PTR out, CK_ULONG_PTR out_size) {
  if (CK_RV rv = CheckKeyWrapMechanism(mech); rv != CKR_OK) return rv;
  const Object* wrapping = VisibleObject(m, wrapping_handle);
  if (wrapping == nullptr) return CKR_WRAPPING_KEY_HANDLE_INVALID;
  const Object* key = VisibleObject(m, key_handle);
  if (key == nullptr) return CKR_KEY_HANDLE_INVALID;
  if (!wrapping->attributes.Bool(CKA_WRAP)) return CKR_KEY_FUNCTION_NOT_PERMITTED;
  if (!key->attributes.Bool(CKA_EXTRACTABLE)) return CKR_KEY_UNEXTRACTABLE;
  // No key of this token is CKA_TRUSTED (a template may not set it), so a
  // key to be wrapped only with trusted keys is never wrapped.
  if (key->attributes.Bool(CKA_WRAP_WITH_TRUSTED) && !wrapping->attributes.Bool(CKA_TRUSTED)) {
    return CKR_KEY_NOT_WRAPPABLE;
  }
  const CK_ULONG need = (key->attributes.Ulong(CKA_VALUE_LEN) + 7) / 8 * 8 + kKeyWrapPadOverhead;
  if (out == nullptr) {
    *out_size = need;
    return CKR_OK;
  }
  if (*out_size < need) {
    *out_size = need;
    return CKR_BUFFER_TOO_SMALL;
  }
  absl::StatusOr<std::string> wrapped = m.token->WrapKey(wrapping->key, key->key);
  if (!wrapped.ok()) return ToCkRv(wrapped.status(), "C_WrapKey");
  AfterKeyUse(m);
  // The unit's answer is sized by the key it holds, which the attributes
  // should match; never write past the caller's buffer if they do not.
  if (wrapped->size() > *out_size) return CKR_DEVICE_ERROR;
  std::memcpy(out, wrapped->data(), wrapped->size());
  *out_size = wrapped->size();
  return CKR_OK;
}

// UnwrapKey makes a key object from an RFC 5649 wrapped AES key, unwrapped
// in a unit: not CKA_LOCAL, not CKA_ALWAYS_SENSITIVE, not
// CKA_NEVER_EXTRACTABLE (its value has been outside the token).
CK_RV UnwrapKey(ModuleState& m, CK_SESSION_HANDLE handle, Session& s, CK_MECHANISM_PTR mech,
                CK_OBJECT_HANDLE unwrapping_handle, CK_BYTE_PTR wrapped, CK_ULONG wrapped_size,
                CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR out) {
  if (CK_RV rv = CheckKeyWrapMechanism(mech); rv != CKR_OK) return rv;
  const Object* unwrapping = VisibleObject(m, unwrapping_handle);
  if (unwrapping == nullptr) return CKR_UNWRAPPING_KEY_HANDLE_INVALID;
  if (!unwrapping->attributes.Bool(CKA_UNWRAP)) return CKR_KEY_FUNCTION_NOT_PERMITTED;
  if (Find(templ, count, CKA_VALUE) != nullptr) return CKR_TEMPLATE_INCONSISTENT;
  // An AES key of 16, 24 or 32 bytes wraps to 24, 32 or 40.
  if (wrapped_size < kKeyWrapPadOverhead || !ValidAesSize(wrapped_size - kKeyWrapPadOverhead)) {
    return CKR_WRAPPED_KEY_LEN_RANGE;
  }
  const CK_ULONG key_bytes = wrapped_size - kKeyWrapPadOverhead;
  if (const CK_ATTRIBUTE* len = Find(templ, count, CKA_VALUE_LEN); len != nullptr) {
    CK_ULONG size = 0;
    if (len->pValue == nullptr || len->ulValueLen != sizeof(size))
      return CKR_ATTRIBUTE_VALUE_INVALID;
    std::memcpy(&size, len->pValue, sizeof(size));
    if (size != key_bytes) return CKR_TEMPLATE_INCONSISTENT;
  }
  KeySource source;
  source.wrapped.assign(reinterpret_cast<const char*>(wrapped), wrapped_size);
  absl::StatusOr<std::vector<std::string>> blobs = m.token->BlobsOf(unwrapping->key);
  if (!blobs.ok()) return ToCkRv(blobs.status(), "C_UnwrapKey");
  source.unwrapping_blobs = std::move(*blobs);
  return NewKeyObject(m, handle, s, templ, count, key_bytes, CK_UNAVAILABLE_INFORMATION, source,
                      out, "C_UnwrapKey");
}

CK_RV DestroyObject(ModuleState& m, Session& s, CK_OBJECT_HANDLE handle) {
  Object* object = VisibleObject(m, handle);
  if (object == nullptr) return CKR_OBJECT_HANDLE_INVALID;
  if (!object->attributes.Bool(CKA_DESTROYABLE)) return CKR_ACTION_PROHIBITED;
  if (object->key.token) {
    if (!s.rw()) return CKR_SESSION_READ_ONLY;
    absl::Status deleted = m.token->store().DeleteObject(object->key.name);
    if (!deleted.ok()) return ToCkRv(deleted, "C_DestroyObject");
    m.token_handles.erase(object->key.name);
  }
  m.objects.erase(handle);
  return CKR_OK;
}

CK_RV SetAttributes(ModuleState& m, Session& s, CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_PTR templ,
                    CK_ULONG count) {
  Object* object = VisibleObject(m, handle);
  if (object == nullptr) return CKR_OBJECT_HANDLE_INVALID;
  if (object->key.token && !s.rw()) return CKR_SESSION_READ_ONLY;
  ObjectAttributes next = object->attributes;
  if (CK_RV rv = next.Set(templ, count); rv != CKR_OK) return rv;
  if (object->key.token) {
    absl::Status stored = m.token->store().PutObject(object->key.name, next.Encode());
    if (!stored.ok()) return ToCkRv(stored, "C_SetAttributeValue");
  }
  object->attributes = std::move(next);
  return CKR_OK;
}

CK_RV FindObjectsInit(ModuleState& m, Session& s, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  if (s.finding) return CKR_OPERATION_ACTIVE;
  absl::Status refreshed = RefreshTokenObjects(m);
  if (!refreshed.ok()) return ToCkRv(refreshed, "C_FindObjectsInit");
  s.found.clear();
  s.found_pos = 0;
  for (const auto& [handle, object] : m.objects) {
    if (VisibleObject(m, handle) == nullptr) continue;
    if (object.attributes.Matches(templ, count)) s.found.push_back(handle);
  }
  s.finding = true;
  return CKR_OK;
}

}  // namespace
}  // namespace hsmsim::pkcs11

using namespace hsmsim::pkcs11;  // NOLINT: the C entry points below

extern "C" {

CK_RV C_GenerateKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR templ,
                    CK_ULONG count, CK_OBJECT_HANDLE_PTR key) {
  if (mech == nullptr || key == nullptr || (templ == nullptr && count > 0))
    return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return GenerateKey(m, session, s, mech, templ, count, key);
  });
}

CK_RV C_CreateObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                     CK_OBJECT_HANDLE_PTR object) {
  if (object == nullptr || templ == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return CreateObject(m, session, s, templ, count, object);
  });
}

CK_RV C_WrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping_key,
                CK_OBJECT_HANDLE key, CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_size) {
  if (mech == nullptr || wrapped_size == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session&) {
    return WrapKey(m, mech, wrapping_key, key, wrapped, wrapped_size);
  });
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping_key,
                  CK_BYTE_PTR wrapped, CK_ULONG wrapped_size, CK_ATTRIBUTE_PTR templ,
                  CK_ULONG count, CK_OBJECT_HANDLE_PTR key) {
  if (mech == nullptr || key == nullptr || wrapped == nullptr || (templ == nullptr && count > 0))
    return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return UnwrapKey(m, session, s, mech, unwrapping_key, wrapped, wrapped_size, templ, count, key);
  });
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) {
  return WithSession(session,
                     [&](ModuleState& m, Session& s) { return DestroyObject(m, s, object); });
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                          CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  if (templ == nullptr && count > 0) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session&) {
    Object* o = VisibleObject(m, object);
    if (o == nullptr) return CKR_OBJECT_HANDLE_INVALID;
    return o->attributes.Get(templ, count);
  });
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                          CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  if (templ == nullptr && count > 0) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return SetAttributes(m, s, object, templ, count);
  });
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  if (templ == nullptr && count > 0) return CKR_ARGUMENTS_BAD;
  return WithSession(
      session, [&](ModuleState& m, Session& s) { return FindObjectsInit(m, s, templ, count); });
}

CK_RV C_FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                    CK_ULONG_PTR count) {
  if (count == nullptr || (out == nullptr && max > 0)) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState&, Session& s) {
    if (!s.finding) return CKR_OPERATION_NOT_INITIALIZED;
    CK_ULONG n = 0;
    while (n < max && s.found_pos < s.found.size()) out[n++] = s.found[s.found_pos++];
    *count = n;
    return CKR_OK;
  });
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE session) {
  return WithSession(session, [&](ModuleState&, Session& s) {
    if (!s.finding) return CKR_OPERATION_NOT_INITIALIZED;
    s.finding = false;
    s.found.clear();
    return CKR_OK;
  });
}

}  // extern "C"

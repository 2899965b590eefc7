#include "pkcs11/module_state.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/reasons.h"
#include "common/status.h"

namespace hsmsim::pkcs11 {

ModuleState& Module() {
  static ModuleState* state = new ModuleState;  // NOLINT: never destroyed, see the header
  return *state;
}

CK_RV ToCkRv(const absl::Status& status, const char* function) {
  if (status.ok()) return CKR_OK;
  if (std::getenv("HSMSIM_PKCS11_LOG") != nullptr) {
    std::fprintf(stderr, "libhsmsim-pkcs11: %s: %s\n", function, status.ToString().c_str());
  }
  const std::string reason = ReasonOf(status);
  if (reason == reason::kCiphertextAuthenticationFailed) return CKR_ENCRYPTED_DATA_INVALID;
  if (reason == reason::kBadGcmParameters || reason == reason::kBadCbcParameters) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  if (reason == reason::kCbcPaddingInvalid) return CKR_ENCRYPTED_DATA_INVALID;
  if (reason == reason::kMessageTooLarge) return CKR_DATA_LEN_RANGE;
  if (reason == reason::kBadPin) return CKR_PIN_LEN_RANGE;
  if (reason == reason::kNoSuchKey) return CKR_KEY_HANDLE_INVALID;
  if (reason == reason::kKeyNotExtractable) return CKR_KEY_UNEXTRACTABLE;
  if (reason == reason::kWrappedKeyAuthenticationFailed || reason == reason::kMalformedWrappedKey ||
      (reason == reason::kBadAesKeySize && std::strcmp(function, "C_UnwrapKey") == 0)) {
    return CKR_WRAPPED_KEY_INVALID;
  }
  if (status.code() == absl::StatusCode::kUnavailable ||
      status.code() == absl::StatusCode::kDeadlineExceeded ||
      status.code() == absl::StatusCode::kFailedPrecondition) {
    return CKR_DEVICE_ERROR;
  }
  return CKR_GENERAL_ERROR;
}

void Pad(CK_UTF8CHAR* field, size_t size, const std::string& text) {
  std::memset(field, ' ', size);
  std::memcpy(field, text.data(), std::min(size, text.size()));
}

Session* SessionOf(ModuleState& m, CK_SESSION_HANDLE handle) {
  auto it = m.sessions.find(handle);
  return it == m.sessions.end() ? nullptr : &it->second;
}

Object* VisibleObject(ModuleState& m, CK_OBJECT_HANDLE handle) {
  auto it = m.objects.find(handle);
  if (it == m.objects.end()) return nullptr;
  if (it->second.attributes.Bool(CKA_PRIVATE) && m.user != CKU_USER) return nullptr;
  return &it->second;
}

void AfterKeyUse(ModuleState& m) {
  if (!m.token->TakeSessionBlobUnderOld()) return;
  std::vector<Object*> objects;
  std::vector<std::string> blobs;
  for (auto& [handle, object] : m.objects) {
    if (object.key.token) continue;
    objects.push_back(&object);
    blobs.push_back(object.key.blob);
  }
  absl::StatusOr<std::vector<std::string>> upgraded = m.token->ReencryptFromOld(blobs);
  if (!upgraded.ok()) {
    (void)ToCkRv(upgraded.status(), "re-encrypting session objects");  // logged only
    return;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    if (!(*upgraded)[i].empty()) objects[i]->key.blob = std::move((*upgraded)[i]);
  }
}

absl::Status RefreshTokenObjects(ModuleState& m) {
  HSMSIM_ASSIGN_OR_RETURN(auto rows, m.token->store().ReadObjects());
  std::set<std::string> names;
  for (auto& [name, bytes] : rows) {
    ObjectAttributes attributes;
    if (!ObjectAttributes::Decode(bytes, &attributes)) continue;  // damaged: not shown
    names.insert(name);
    auto [it, added] = m.token_handles.emplace(name, m.next_object);
    if (added) ++m.next_object;
    Object& object = m.objects[it->second];
    object.attributes = std::move(attributes);
    object.key.token = true;
    object.key.name = name;
  }
  for (auto it = m.token_handles.begin(); it != m.token_handles.end();) {
    if (names.count(it->first) != 0) {
      ++it;
      continue;
    }
    m.objects.erase(it->second);
    it = m.token_handles.erase(it);
  }
  return absl::OkStatus();
}

void CloseSession(ModuleState& m, CK_SESSION_HANDLE handle) {
  m.sessions.erase(handle);
  for (auto it = m.objects.begin(); it != m.objects.end();) {
    it = (!it->second.key.token && it->second.owner == handle) ? m.objects.erase(it) : ++it;
  }
  if (m.sessions.empty()) m.user = kNobody;
}

}  // namespace hsmsim::pkcs11

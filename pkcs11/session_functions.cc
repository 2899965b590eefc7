// Token, session and login functions: C_GetTokenInfo, C_InitToken,
// C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession, C_CloseAllSessions,
// C_GetSessionInfo, C_Login, C_Logout.
#include <p11-kit/pkcs11.h>

#include <cstring>
#include <string>

#include "pkcs11/module_state.h"
#include "pkcs11/token_store.h"

namespace hsmsim::pkcs11 {
namespace {

absl::Span<const uint8_t> PinOf(CK_UTF8CHAR_PTR pin, CK_ULONG size) {
  return absl::Span<const uint8_t>(pin, pin == nullptr ? 0 : size);
}

CK_RV FromPinCheck(const absl::StatusOr<PinCheck>& check, const char* function) {
  if (!check.ok()) return ToCkRv(check.status(), function);
  switch (*check) {
    case PinCheck::kOk:
      return CKR_OK;
    case PinCheck::kWrong:
      return CKR_PIN_INCORRECT;
    case PinCheck::kLocked:
      return CKR_PIN_LOCKED;
    case PinCheck::kNotSet:
      return CKR_USER_PIN_NOT_INITIALIZED;
  }
  return CKR_GENERAL_ERROR;
}

CK_FLAGS PinFlags(const TokenRow& row, int64_t max_failures) {
  CK_FLAGS flags = 0;
  if (row.user_pin_set) flags |= CKF_USER_PIN_INITIALIZED;
  if (row.user_failures >= max_failures) {
    flags |= CKF_USER_PIN_LOCKED;
  } else if (row.user_failures == max_failures - 1 && row.user_failures > 0) {
    flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
  } else if (row.user_failures > 0) {
    flags |= CKF_USER_PIN_COUNT_LOW;
  }
  if (row.so_failures >= max_failures) flags |= CKF_SO_PIN_LOCKED;
  return flags;
}

CK_RV FillTokenInfo(ModuleState& m, CK_TOKEN_INFO_PTR info) {
  absl::StatusOr<TokenRow> row = m.token->store().ReadToken();
  if (!row.ok()) return ToCkRv(row.status(), "C_GetTokenInfo");
  std::memset(info, 0, sizeof(*info));
  const ModuleConfig& config = m.token->config();
  Pad(info->label, sizeof(info->label), row->label.empty() ? config.token_label : row->label);
  Pad(info->manufacturerID, sizeof(info->manufacturerID), "hsmsim");
  Pad(info->model, sizeof(info->model), "hsmsim fleet");
  Pad(info->serialNumber, sizeof(info->serialNumber),
      m.token->instance().empty() ? "hsmsim" : m.token->instance());
  info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED |
                PinFlags(*row, config.max_pin_failures);
  info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulSessionCount = m.sessions.size();
  CK_ULONG rw = 0;
  for (const auto& [handle, s] : m.sessions) rw += s.rw() ? 1 : 0;
  info->ulRwSessionCount = rw;
  info->ulMaxPinLen = kMaxPinSize;
  info->ulMinPinLen = kMinPinSize;
  info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->hardwareVersion = {0, 1};
  info->firmwareVersion = {0, 1};
  return CKR_OK;
}

// InitToken: the first C_InitToken sets the SO PIN; later ones must give
// it. The label is the 32 blank-padded bytes, trailing blanks dropped.
CK_RV InitToken(ModuleState& m, CK_UTF8CHAR_PTR pin, CK_ULONG pin_size, CK_UTF8CHAR_PTR label) {
  if (!m.sessions.empty()) return CKR_SESSION_EXISTS;
  TokenStore& store = m.token->store();
  absl::StatusOr<TokenRow> row = store.ReadToken();
  if (!row.ok()) return ToCkRv(row.status(), "C_InitToken");
  if (row->so_pin_set) {
    CK_RV rv = FromPinCheck(
        store.CheckPin(PinRole::kSo, PinOf(pin, pin_size), m.token->config().max_pin_failures),
        "C_InitToken");
    if (rv != CKR_OK) return rv;
  } else if (absl::Status set = store.SetPin(PinRole::kSo, PinOf(pin, pin_size)); !set.ok()) {
    return ToCkRv(set, "C_InitToken");
  }
  std::string name(reinterpret_cast<const char*>(label), 32);
  name.erase(name.find_last_not_of(' ') + 1);
  if (absl::Status done = store.InitToken(name); !done.ok()) return ToCkRv(done, "C_InitToken");
  m.objects.clear();
  m.token_handles.clear();
  return CKR_OK;
}

CK_STATE StateOf(const ModuleState& m, const Session& s) {
  if (m.user == CKU_SO) return CKS_RW_SO_FUNCTIONS;
  if (m.user == CKU_USER) return s.rw() ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
  return s.rw() ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
}

CK_RV Login(ModuleState& m, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG size) {
  if (type != CKU_USER && type != CKU_SO) return CKR_USER_TYPE_INVALID;
  if (m.user == type) return CKR_USER_ALREADY_LOGGED_IN;
  if (m.user != kNobody) return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
  if (type == CKU_SO) {
    for (const auto& [handle, s] : m.sessions) {
      if (!s.rw()) return CKR_SESSION_READ_ONLY_EXISTS;
    }
  }
  const PinRole role = type == CKU_SO ? PinRole::kSo : PinRole::kUser;
  CK_RV rv = FromPinCheck(
      m.token->store().CheckPin(role, PinOf(pin, size), m.token->config().max_pin_failures),
      "C_Login");
  if (rv != CKR_OK) return rv;
  m.user = type;
  absl::Status refreshed = RefreshTokenObjects(m);
  return refreshed.ok() ? CKR_OK : ToCkRv(refreshed, "C_Login");
}

}  // namespace
}  // namespace hsmsim::pkcs11

using namespace hsmsim::pkcs11;  // NOLINT: the C entry points below

extern "C" {

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState& m) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    return FillTokenInfo(m, info);
  });
}

CK_RV C_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_size, CK_UTF8CHAR_PTR label) {
  if (label == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState& m) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    return InitToken(m, pin, pin_size, label);
  });
}

CK_RV C_InitPIN(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG size) {
  return WithSession(session, [&](ModuleState& m, Session& s) {
    if (m.user != CKU_SO) return CKR_USER_NOT_LOGGED_IN;
    if (!s.rw()) return CKR_SESSION_READ_ONLY;
    return ToCkRv(m.token->store().SetPin(PinRole::kUser, PinOf(pin, size)), "C_InitPIN");
  });
}

CK_RV C_SetPIN(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_size,
               CK_UTF8CHAR_PTR new_pin, CK_ULONG new_size) {
  return WithSession(session, [&](ModuleState& m, Session& s) {
    if (!s.rw()) return CKR_SESSION_READ_ONLY;
    const PinRole role = m.user == CKU_SO ? PinRole::kSo : PinRole::kUser;
    if (absl::Status valid = ValidatePin(PinOf(new_pin, new_size)); !valid.ok()) {
      return ToCkRv(valid, "C_SetPIN");
    }
    CK_RV rv = FromPinCheck(m.token->store().CheckPin(role, PinOf(old_pin, old_size),
                                                      m.token->config().max_pin_failures),
                            "C_SetPIN");
    if (rv != CKR_OK) return rv;
    return ToCkRv(m.token->store().SetPin(role, PinOf(new_pin, new_size)), "C_SetPIN");
  });
}

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR, CK_NOTIFY,
                    CK_SESSION_HANDLE_PTR session) {
  if (session == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState& m) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    if ((flags & CKF_SERIAL_SESSION) == 0) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (m.user == CKU_SO && (flags & CKF_RW_SESSION) == 0) return CKR_SESSION_READ_WRITE_SO_EXISTS;
    absl::Status refreshed = RefreshTokenObjects(m);
    if (!refreshed.ok()) return ToCkRv(refreshed, "C_OpenSession");
    const CK_SESSION_HANDLE handle = m.next_session++;
    m.sessions[handle].flags = flags;
    *session = handle;
    return CKR_OK;
  });
}

CK_RV C_CloseSession(CK_SESSION_HANDLE session) {
  return WithSession(session, [&](ModuleState& m, Session&) {
    CloseSession(m, session);
    return CKR_OK;
  });
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot) {
  return Guarded([&](ModuleState& m) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    while (!m.sessions.empty()) CloseSession(m, m.sessions.begin()->first);
    return CKR_OK;
  });
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info) {
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    info->slotID = kSlotId;
    info->state = StateOf(m, s);
    info->flags = s.flags;
    info->ulDeviceError = 0;
    return CKR_OK;
  });
}

CK_RV C_Login(CK_SESSION_HANDLE session, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG size) {
  return WithSession(session, [&](ModuleState& m, Session&) { return Login(m, type, pin, size); });
}

CK_RV C_Logout(CK_SESSION_HANDLE session) {
  return WithSession(session, [&](ModuleState& m, Session&) {
    if (m.user == kNobody) return CKR_USER_NOT_LOGGED_IN;
    m.user = kNobody;
    return CKR_OK;
  });
}

}  // extern "C"

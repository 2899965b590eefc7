// General-purpose, slot and token functions, and C_GenerateRandom.
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "pkcs11/function_list.h"
#include "pkcs11/module_config.h"
#include "pkcs11/module_state.h"

namespace hsmsim::pkcs11 {
namespace {

struct MechanismEntry {
  CK_MECHANISM_TYPE type;
  CK_MECHANISM_INFO info;
};

// Unit-backed mechanisms carry CKF_HW; the digest is computed on the host.
constexpr MechanismEntry kMechanisms[] = {
    {CKM_AES_KEY_GEN, {16, 32, CKF_HW | CKF_GENERATE}},
    {CKM_AES_GCM, {16, 32, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT}},
    {CKM_AES_CBC_PAD, {16, 32, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT}},
    {CKM_AES_KEY_WRAP_PAD, {16, 32, CKF_HW | CKF_WRAP | CKF_UNWRAP}},
    {CKM_SHA256, {0, 0, CKF_DIGEST}},
};

// The child of a fork must find the lock free: the forking thread holds it
// across fork() and both processes release it.
void LockForFork() { Module().mu.lock(); }
void UnlockAfterFork() { Module().mu.unlock(); }

CK_RV CheckInitArgs(CK_VOID_PTR init_args) {
  if (init_args == nullptr) return CKR_OK;
  const auto* args = static_cast<const CK_C_INITIALIZE_ARGS*>(init_args);
  if (args->pReserved != nullptr) return CKR_ARGUMENTS_BAD;
  const bool callbacks = args->CreateMutex != nullptr || args->DestroyMutex != nullptr ||
                         args->LockMutex != nullptr || args->UnlockMutex != nullptr;
  const bool all = args->CreateMutex != nullptr && args->DestroyMutex != nullptr &&
                   args->LockMutex != nullptr && args->UnlockMutex != nullptr;
  if (callbacks && !all) return CKR_ARGUMENTS_BAD;
  // Only the operating system's locks are used: callbacks without
  // CKF_OS_LOCKING_OK would have to be used instead.
  if (callbacks && (args->flags & CKF_OS_LOCKING_OK) == 0) return CKR_CANT_LOCK;
  return CKR_OK;
}

// Reset forgets every session and object; `forked` abandons what a parent
// process shares instead of closing it.
void Reset(ModuleState& m, bool forked) {
  if (forked && m.token != nullptr) m.token->AbandonAfterFork();
  m.token.reset();
  m.sessions.clear();
  m.objects.clear();
  m.token_handles.clear();
  m.user = kNobody;
  m.initialized = false;
}

CK_RV Initialize(CK_VOID_PTR init_args) {
  if (CK_RV rv = CheckInitArgs(init_args); rv != CKR_OK) return rv;
  static std::once_flag at_fork;
  std::call_once(at_fork, [] { pthread_atfork(LockForFork, UnlockAfterFork, UnlockAfterFork); });
  ModuleState& m = Module();
  std::lock_guard<std::mutex> lock(m.mu);
  const pid_t pid = getpid();
  if (m.initialized && m.pid == pid) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  if (m.initialized) Reset(m, /*forked=*/true);  // a child: the parent's state is not ours
  absl::StatusOr<ModuleConfig> config = LoadModuleConfig();
  absl::StatusOr<std::unique_ptr<FleetToken>> token =
      config.ok() ? FleetToken::Open(*config) : config.status();
  if (!token.ok()) {
    // An application cannot see why C_Initialize failed: say it once.
    std::fprintf(stderr, "libhsmsim-pkcs11: C_Initialize: %s\n", token.status().ToString().c_str());
    return CKR_GENERAL_ERROR;
  }
  m.token = std::move(*token);
  m.pid = pid;
  m.initialized = true;
  return CKR_OK;
}

}  // namespace
}  // namespace hsmsim::pkcs11

using namespace hsmsim::pkcs11;  // NOLINT: the C entry points below

extern "C" {

CK_RV C_Initialize(CK_VOID_PTR init_args) {
  try {
    return Initialize(init_args);
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
}

CK_RV C_Finalize(CK_VOID_PTR reserved) {
  if (reserved != nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([](ModuleState& m) {
    Reset(m, /*forked=*/false);
    return CKR_OK;
  });
}

CK_RV C_GetInfo(CK_INFO_PTR info) {
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState&) {
    std::memset(info, 0, sizeof(*info));
    info->cryptokiVersion = {2, 40};
    Pad(info->manufacturerID, sizeof(info->manufacturerID), "hsmsim");
    Pad(info->libraryDescription, sizeof(info->libraryDescription), "hsmsim PKCS#11 module");
    info->libraryVersion = {0, 1};
    return CKR_OK;
  });
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  static CK_FUNCTION_LIST functions = [] {
    CK_FUNCTION_LIST l{};
    FillFunctionList(&l);
    return l;
  }();
  *list = &functions;
  return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count) {
  if (count == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState&) {
    if (slots != nullptr) {
      if (*count < 1) {
        *count = 1;
        return CKR_BUFFER_TOO_SMALL;
      }
      slots[0] = kSlotId;
    }
    *count = 1;
    return CKR_OK;
  });
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState& m) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    std::memset(info, 0, sizeof(*info));
    Pad(info->slotDescription, sizeof(info->slotDescription),
        "hsmsim fleet " + m.token->config().fleet_dir);
    Pad(info->manufacturerID, sizeof(info->manufacturerID), "hsmsim");
    info->flags = CKF_TOKEN_PRESENT;
    info->hardwareVersion = {0, 1};
    info->firmwareVersion = {0, 1};
    return CKR_OK;
  });
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
  if (count == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState&) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    const CK_ULONG n = sizeof(kMechanisms) / sizeof(kMechanisms[0]);
    if (list != nullptr && *count < n) {
      *count = n;
      return CKR_BUFFER_TOO_SMALL;
    }
    if (list != nullptr) {
      for (CK_ULONG i = 0; i < n; ++i) list[i] = kMechanisms[i].type;
    }
    *count = n;
    return CKR_OK;
  });
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info) {
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  return Guarded([&](ModuleState&) {
    if (slot != kSlotId) return CKR_SLOT_ID_INVALID;
    for (const MechanismEntry& e : kMechanisms) {
      if (e.type == type) {
        *info = e.info;
        return CKR_OK;
      }
    }
    return CKR_MECHANISM_INVALID;
  });
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG size) {
  if (out == nullptr && size > 0) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState&, Session&) {
    if (size > INT_MAX) return CKR_ARGUMENTS_BAD;
    return RAND_bytes(out, static_cast<int>(size)) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
  });
}

}  // extern "C"

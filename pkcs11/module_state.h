// The state of libhsmsim-pkcs11.so between calls: sessions, objects, the
// login, the token. One instance per process (Module()), guarded by its
// mutex: every C_ function takes it for its whole call (the module is
// thread-safe with CKF_OS_LOCKING_OK; it starts no thread). Internal to
// pkcs11/.
#ifndef HSMSIM_PKCS11_MODULE_STATE_H_
#define HSMSIM_PKCS11_MODULE_STATE_H_

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>
#include <sys/types.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "pkcs11/fleet_token.h"
#include "pkcs11/object_attributes.h"

namespace hsmsim::pkcs11 {

inline constexpr CK_SLOT_ID kSlotId = 1;
inline constexpr CK_USER_TYPE kNobody = ~CK_USER_TYPE{0};

struct EvpMdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

enum class CryptOp { kNone, kEncrypt, kDecrypt };

struct Session {
  CK_FLAGS flags = 0;
  // C_FindObjects*
  bool finding = false;
  std::vector<CK_OBJECT_HANDLE> found;
  size_t found_pos = 0;
  // C_Encrypt* / C_Decrypt*
  CryptOp op = CryptOp::kNone;
  CK_OBJECT_HANDLE key = 0;
  CK_MECHANISM_TYPE mechanism = CKM_AES_GCM;  // or CKM_AES_CBC_PAD (IV in gcm.iv)
  GcmOperation gcm;
  // C_Digest*
  std::unique_ptr<EVP_MD_CTX, EvpMdCtxFree> digest;

  bool rw() const { return (flags & CKF_RW_SESSION) != 0; }
};

struct Object {
  ObjectAttributes attributes;
  KeyRef key;
  CK_SESSION_HANDLE owner = 0;  // session objects: the session that made it
};

struct ModuleState {
  std::mutex mu;
  bool initialized = false;
  pid_t pid = 0;  // the process that called C_Initialize
  std::unique_ptr<FleetToken> token;
  std::map<CK_SESSION_HANDLE, Session> sessions;
  CK_SESSION_HANDLE next_session = 1;
  std::map<CK_OBJECT_HANDLE, Object> objects;
  CK_OBJECT_HANDLE next_object = 1;
  std::map<std::string, CK_OBJECT_HANDLE> token_handles;  // keystore name -> handle
  CK_USER_TYPE user = kNobody;
};

// Module returns the process's state (never destroyed: an application may
// call C_Finalize from an atexit handler after static destructors ran).
ModuleState& Module();

// ToCkRv maps an error of the token or a unit to the PKCS#11 return value
// an application can act on, and logs it to stderr when HSMSIM_PKCS11_LOG
// is set (never with key material: statuses carry none).
CK_RV ToCkRv(const absl::Status& status, const char* function);

// Pad copies `text` into a blank-padded, not NUL-terminated field.
void Pad(CK_UTF8CHAR* field, size_t size, const std::string& text);

// SessionOf returns the session or null.
Session* SessionOf(ModuleState& m, CK_SESSION_HANDLE handle);

// VisibleObject returns the object if the caller may see it (a private
// object only when the user is logged in), or null.
Object* VisibleObject(ModuleState& m, CK_OBJECT_HANDLE handle);

// RefreshTokenObjects reads the token objects from the keystore: new ones
// get handles, gone ones lose theirs.
absl::Status RefreshTokenObjects(ModuleState& m);

// AfterKeyUse re-encrypts every session object's blob from OLD to CURRENT
// when the last key use found a session object's blob under OLD (a
// rotation promoted since it was made), so that session objects outlive the
// next rotation too. Best effort: a failure leaves the blobs as they were.
void AfterKeyUse(ModuleState& m);

// CloseSession drops a session and its session objects; the last session
// closed logs the user out.
void CloseSession(ModuleState& m, CK_SESSION_HANDLE handle);

// Guarded runs `body(m)` under the module's lock, after checking the module
// is initialized in this process; an exception becomes CKR_GENERAL_ERROR.
template <typename Body>
CK_RV Guarded(Body&& body) noexcept {
  try {
    ModuleState& m = Module();
    std::lock_guard<std::mutex> lock(m.mu);
    if (!m.initialized || m.pid != getpid()) return CKR_CRYPTOKI_NOT_INITIALIZED;
    return body(m);
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
}

// WithSession is Guarded for functions of a session: CKR_SESSION_HANDLE_INVALID
// for an unknown handle.
template <typename Body>
CK_RV WithSession(CK_SESSION_HANDLE handle, Body&& body) noexcept {
  return Guarded([&](ModuleState& m) -> CK_RV {
    Session* s = SessionOf(m, handle);
    if (s == nullptr) return CKR_SESSION_HANDLE_INVALID;
    return body(m, *s);
  });
}

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_MODULE_STATE_H_

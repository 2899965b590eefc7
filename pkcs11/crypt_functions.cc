// Encryption, decryption and digest functions: C_EncryptInit, C_Encrypt,
// C_DecryptInit, C_Decrypt (CKM_AES_GCM and CKM_AES_CBC_PAD, in a unit),
// C_DigestInit,
// C_Digest, C_DigestUpdate, C_DigestFinal (CKM_SHA256, on the host).
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include <cstring>
#include <string>
#include <utility>

#include "crypto/aes_gcm_ext.h"
#include "pkcs11/module_state.h"

namespace hsmsim::pkcs11 {
namespace {

constexpr CK_ULONG kSha256Size = 32;
constexpr CK_ULONG kAesBlockSize = 16;
// The unit's limit on AAD (docs/protocol.md section 10.7).
constexpr CK_ULONG kMaxAadSize = 65'536;

// GcmParameters reads a CKM_AES_GCM mechanism's CK_GCM_PARAMS, checking the
// limits the unit enforces (docs/protocol.md section 10.7).
CK_RV GcmParameters(CK_MECHANISM_PTR mech, GcmOperation* op) {
  if (mech->mechanism != CKM_AES_GCM) return CKR_MECHANISM_INVALID;
  if (mech->pParameter == nullptr || mech->ulParameterLen != sizeof(CK_GCM_PARAMS)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  const auto* p = static_cast<const CK_GCM_PARAMS*>(mech->pParameter);
  if (p->pIv == nullptr || p->ulIvLen < crypto::kMinGcmIvSize ||
      p->ulIvLen > crypto::kMaxGcmIvSize || p->ulTagBits % 8 != 0 ||
      p->ulTagBits / 8 < crypto::kMinGcmTagSize || p->ulTagBits / 8 > crypto::kMaxGcmTagSize ||
      p->ulAADLen > kMaxAadSize || (p->pAAD == nullptr && p->ulAADLen > 0)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  op->iv.assign(reinterpret_cast<const char*>(p->pIv), p->ulIvLen);
  op->aad.assign(p->pAAD == nullptr ? "" : reinterpret_cast<const char*>(p->pAAD), p->ulAADLen);
  op->tag_size = static_cast<uint32_t>(p->ulTagBits / 8);
  return CKR_OK;
}

CK_RV CryptInit(ModuleState& m, Session& s, CryptOp op, CK_MECHANISM_PTR mech,
                CK_OBJECT_HANDLE key) {
  if (s.op != CryptOp::kNone) return CKR_OPERATION_ACTIVE;
  Object* object = VisibleObject(m, key);
  if (object == nullptr) return CKR_KEY_HANDLE_INVALID;
  const CK_ATTRIBUTE_TYPE use = op == CryptOp::kEncrypt ? CKA_ENCRYPT : CKA_DECRYPT;
  if (!object->attributes.Bool(use)) return CKR_KEY_FUNCTION_NOT_PERMITTED;
  GcmOperation gcm;
  if (mech->mechanism == CKM_AES_CBC_PAD) {
    // The parameter is the 16-byte IV.
    if (mech->pParameter == nullptr || mech->ulParameterLen != kAesBlockSize) {
      return CKR_MECHANISM_PARAM_INVALID;
    }
    gcm.iv.assign(static_cast<const char*>(mech->pParameter), kAesBlockSize);
  } else if (CK_RV rv = GcmParameters(mech, &gcm); rv != CKR_OK) {
    return rv;
  }
  s.op = op;
  s.key = key;
  s.mechanism = mech->mechanism;
  s.gcm = std::move(gcm);
  return CKR_OK;
}

// Crypt runs the session's one-part operation: a size query (null `out`)
// or a too small buffer leaves it active, as PKCS#11 5.2 says; anything
// else ends it.
CK_RV Crypt(ModuleState& m, Session& s, CryptOp op, CK_BYTE_PTR in, CK_ULONG in_size,
            CK_BYTE_PTR out, CK_ULONG_PTR out_size) {
  if (s.op != op) return CKR_OPERATION_NOT_INITIALIZED;
  const bool cbc = s.mechanism == CKM_AES_CBC_PAD;
  const CK_ULONG tag = s.gcm.tag_size;
  const bool encrypt = op == CryptOp::kEncrypt;
  if (!encrypt && (cbc ? in_size == 0 || in_size % kAesBlockSize != 0 : in_size < tag)) {
    s.op = CryptOp::kNone;
    return CKR_ENCRYPTED_DATA_LEN_RANGE;
  }
  // CBC: the padded size; for a decryption an upper bound (the padding is
  // known only once decrypted), as PKCS#11 5.2 allows.
  const CK_ULONG need = cbc ? (encrypt ? (in_size / kAesBlockSize + 1) * kAesBlockSize : in_size)
                            : (encrypt ? in_size + tag : in_size - tag);
  if (out == nullptr) {
    *out_size = need;
    return CKR_OK;
  }
  if (*out_size < need) {
    *out_size = need;
    return CKR_BUFFER_TOO_SMALL;
  }
  s.op = CryptOp::kNone;
  Object* object = VisibleObject(m, s.key);
  if (object == nullptr) return CKR_KEY_HANDLE_INVALID;
  const std::string input(reinterpret_cast<const char*>(in), in_size);
  if (encrypt) {
    absl::StatusOr<std::string> result = cbc ? m.token->EncryptCbcPad(object->key, s.gcm.iv, input)
                                             : m.token->Encrypt(object->key, s.gcm, input);
    if (!result.ok()) return ToCkRv(result.status(), "C_Encrypt");
    AfterKeyUse(m);
    if (result->size() > *out_size) return CKR_DEVICE_ERROR;  // never past the caller's buffer
    std::memcpy(out, result->data(), result->size());
    *out_size = result->size();
    return CKR_OK;
  }
  absl::StatusOr<SecretBytes> result = cbc ? m.token->DecryptCbcPad(object->key, s.gcm.iv, input)
                                           : m.token->Decrypt(object->key, s.gcm, input);
  if (!result.ok()) return ToCkRv(result.status(), "C_Decrypt");
  AfterKeyUse(m);
  if (result->size() > *out_size) return CKR_DEVICE_ERROR;  // never past the caller's buffer
  if (!result->empty()) std::memcpy(out, result->data(), result->size());
  *out_size = result->size();
  return CKR_OK;
}

CK_RV DigestFinish(Session& s, CK_BYTE_PTR out, CK_ULONG_PTR out_size) {
  if (out == nullptr) {
    *out_size = kSha256Size;
    return CKR_OK;
  }
  if (*out_size < kSha256Size) {
    *out_size = kSha256Size;
    return CKR_BUFFER_TOO_SMALL;
  }
  unsigned int size = 0;
  const bool ok = EVP_DigestFinal_ex(s.digest.get(), out, &size) == 1;
  s.digest.reset();
  *out_size = size;
  return ok ? CKR_OK : CKR_FUNCTION_FAILED;
}

}  // namespace
}  // namespace hsmsim::pkcs11

using namespace hsmsim::pkcs11;  // NOLINT: the C entry points below

extern "C" {

CK_RV C_EncryptInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
  if (mech == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return CryptInit(m, s, CryptOp::kEncrypt, mech, key);
  });
}

CK_RV C_Encrypt(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG size, CK_BYTE_PTR out,
                CK_ULONG_PTR out_size) {
  if ((data == nullptr && size > 0) || out_size == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return Crypt(m, s, CryptOp::kEncrypt, data, size, out, out_size);
  });
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
  if (mech == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return CryptInit(m, s, CryptOp::kDecrypt, mech, key);
  });
}

CK_RV C_Decrypt(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG size, CK_BYTE_PTR out,
                CK_ULONG_PTR out_size) {
  if ((data == nullptr && size > 0) || out_size == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState& m, Session& s) {
    return Crypt(m, s, CryptOp::kDecrypt, data, size, out, out_size);
  });
}

CK_RV C_DigestInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech) {
  if (mech == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState&, Session& s) {
    if (s.digest != nullptr) return CKR_OPERATION_ACTIVE;
    if (mech->mechanism != CKM_SHA256) return CKR_MECHANISM_INVALID;
    s.digest.reset(EVP_MD_CTX_new());
    if (s.digest == nullptr || EVP_DigestInit_ex(s.digest.get(), EVP_sha256(), nullptr) != 1) {
      s.digest.reset();
      return CKR_HOST_MEMORY;
    }
    return CKR_OK;
  });
}

CK_RV C_Digest(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG size, CK_BYTE_PTR out,
               CK_ULONG_PTR out_size) {
  if ((data == nullptr && size > 0) || out_size == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState&, Session& s) {
    if (s.digest == nullptr) return CKR_OPERATION_NOT_INITIALIZED;
    if (out != nullptr && *out_size >= kSha256Size && size > 0 &&
        EVP_DigestUpdate(s.digest.get(), data, size) != 1) {
      s.digest.reset();
      return CKR_FUNCTION_FAILED;
    }
    return DigestFinish(s, out, out_size);
  });
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG size) {
  if (data == nullptr && size > 0) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState&, Session& s) {
    if (s.digest == nullptr) return CKR_OPERATION_NOT_INITIALIZED;
    if (size > 0 && EVP_DigestUpdate(s.digest.get(), data, size) != 1) {
      s.digest.reset();
      return CKR_FUNCTION_FAILED;
    }
    return CKR_OK;
  });
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_size) {
  if (out_size == nullptr) return CKR_ARGUMENTS_BAD;
  return WithSession(session, [&](ModuleState&, Session& s) {
    if (s.digest == nullptr) return CKR_OPERATION_NOT_INITIALIZED;
    return DigestFinish(s, out, out_size);
  });
}

}  // extern "C"

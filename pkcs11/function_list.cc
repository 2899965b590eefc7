// The PKCS#11 2.40 functions libhsmsim-pkcs11.so does not implement, and
// the function list. Written once from p11-kit's pkcs11.h declarations (68
// functions); docs/pkcs11.md lists what is implemented.
#include "pkcs11/function_list.h"

#include <p11-kit/pkcs11.h>

#pragma GCC diagnostic ignored "-Wunused-parameter"

extern "C" {
CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID *slot, void *reserved) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_GetOperationState(CK_SESSION_HANDLE session, unsigned char *operation_state,
                          unsigned long *operation_state_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SetOperationState(CK_SESSION_HANDLE session, unsigned char *operation_state,
                          unsigned long operation_state_len, CK_OBJECT_HANDLE encryption_key,
                          CK_OBJECT_HANDLE authentiation_key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_CopyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ,
                   unsigned long count, CK_OBJECT_HANDLE *new_object) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_GetObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, unsigned long *size) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_EncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                      unsigned char *encrypted_part, unsigned long *encrypted_part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_EncryptFinal(CK_SESSION_HANDLE session, unsigned char *last_encrypted_part,
                     unsigned long *last_encrypted_part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DecryptUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part,
                      unsigned long encrypted_part_len, unsigned char *part,
                      unsigned long *part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DecryptFinal(CK_SESSION_HANDLE session, unsigned char *last_part,
                     unsigned long *last_part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DigestKey(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SignInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_Sign(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len,
             unsigned char *signature, unsigned long *signature_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SignUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SignFinal(CK_SESSION_HANDLE session, unsigned char *signature,
                  unsigned long *signature_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SignRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SignRecover(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len,
                    unsigned char *signature, unsigned long *signature_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_VerifyInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_Verify(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len,
               unsigned char *signature, unsigned long signature_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_VerifyUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_VerifyFinal(CK_SESSION_HANDLE session, unsigned char *signature,
                    unsigned long signature_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                          CK_OBJECT_HANDLE key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_VerifyRecover(CK_SESSION_HANDLE session, unsigned char *signature,
                      unsigned long signature_len, unsigned char *data, unsigned long *data_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                            unsigned char *encrypted_part, unsigned long *encrypted_part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part,
                            unsigned long encrypted_part_len, unsigned char *part,
                            unsigned long *part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                          unsigned char *encrypted_part, unsigned long *encrypted_part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part,
                            unsigned long encrypted_part_len, unsigned char *part,
                            unsigned long *part_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                        CK_ATTRIBUTE *public_key_template, unsigned long public_key_attribute_count,
                        CK_ATTRIBUTE *private_key_template,
                        unsigned long private_key_attribute_count, CK_OBJECT_HANDLE *public_key,
                        CK_OBJECT_HANDLE *private_key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_DeriveKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE base_key,
                  CK_ATTRIBUTE *templ, unsigned long attribute_count, CK_OBJECT_HANDLE *key) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_SeedRandom(CK_SESSION_HANDLE session, unsigned char *seed, unsigned long seed_len) {
  return CKR_FUNCTION_NOT_SUPPORTED;
}
CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE session) { return CKR_FUNCTION_NOT_PARALLEL; }
CK_RV C_CancelFunction(CK_SESSION_HANDLE session) { return CKR_FUNCTION_NOT_PARALLEL; }
}  // extern "C"

namespace hsmsim::pkcs11 {

void FillFunctionList(CK_FUNCTION_LIST *list) {
  list->version.major = 2;
  list->version.minor = 40;
  list->C_Initialize = C_Initialize;
  list->C_Finalize = C_Finalize;
  list->C_GetInfo = C_GetInfo;
  list->C_GetFunctionList = C_GetFunctionList;
  list->C_GetSlotList = C_GetSlotList;
  list->C_GetSlotInfo = C_GetSlotInfo;
  list->C_GetTokenInfo = C_GetTokenInfo;
  list->C_WaitForSlotEvent = C_WaitForSlotEvent;
  list->C_GetMechanismList = C_GetMechanismList;
  list->C_GetMechanismInfo = C_GetMechanismInfo;
  list->C_InitToken = C_InitToken;
  list->C_InitPIN = C_InitPIN;
  list->C_SetPIN = C_SetPIN;
  list->C_OpenSession = C_OpenSession;
  list->C_CloseSession = C_CloseSession;
  list->C_CloseAllSessions = C_CloseAllSessions;
  list->C_GetSessionInfo = C_GetSessionInfo;
  list->C_GetOperationState = C_GetOperationState;
  list->C_SetOperationState = C_SetOperationState;
  list->C_Login = C_Login;
  list->C_Logout = C_Logout;
  list->C_CreateObject = C_CreateObject;
  list->C_CopyObject = C_CopyObject;
  list->C_DestroyObject = C_DestroyObject;
  list->C_GetObjectSize = C_GetObjectSize;
  list->C_GetAttributeValue = C_GetAttributeValue;
  list->C_SetAttributeValue = C_SetAttributeValue;
  list->C_FindObjectsInit = C_FindObjectsInit;
  list->C_FindObjects = C_FindObjects;
  list->C_FindObjectsFinal = C_FindObjectsFinal;
  list->C_EncryptInit = C_EncryptInit;
  list->C_Encrypt = C_Encrypt;
  list->C_EncryptUpdate = C_EncryptUpdate;
  list->C_EncryptFinal = C_EncryptFinal;
  list->C_DecryptInit = C_DecryptInit;
  list->C_Decrypt = C_Decrypt;
  list->C_DecryptUpdate = C_DecryptUpdate;
  list->C_DecryptFinal = C_DecryptFinal;
  list->C_DigestInit = C_DigestInit;
  list->C_Digest = C_Digest;
  list->C_DigestUpdate = C_DigestUpdate;
  list->C_DigestKey = C_DigestKey;
  list->C_DigestFinal = C_DigestFinal;
  list->C_SignInit = C_SignInit;
  list->C_Sign = C_Sign;
  list->C_SignUpdate = C_SignUpdate;
  list->C_SignFinal = C_SignFinal;
  list->C_SignRecoverInit = C_SignRecoverInit;
  list->C_SignRecover = C_SignRecover;
  list->C_VerifyInit = C_VerifyInit;
  list->C_Verify = C_Verify;
  list->C_VerifyUpdate = C_VerifyUpdate;
  list->C_VerifyFinal = C_VerifyFinal;
  list->C_VerifyRecoverInit = C_VerifyRecoverInit;
  list->C_VerifyRecover = C_VerifyRecover;
  list->C_DigestEncryptUpdate = C_DigestEncryptUpdate;
  list->C_DecryptDigestUpdate = C_DecryptDigestUpdate;
  list->C_SignEncryptUpdate = C_SignEncryptUpdate;
  list->C_DecryptVerifyUpdate = C_DecryptVerifyUpdate;
  list->C_GenerateKey = C_GenerateKey;
  list->C_GenerateKeyPair = C_GenerateKeyPair;
  list->C_WrapKey = C_WrapKey;
  list->C_UnwrapKey = C_UnwrapKey;
  list->C_DeriveKey = C_DeriveKey;
  list->C_SeedRandom = C_SeedRandom;
  list->C_GenerateRandom = C_GenerateRandom;
  list->C_GetFunctionStatus = C_GetFunctionStatus;
  list->C_CancelFunction = C_CancelFunction;
}

}  // namespace hsmsim::pkcs11

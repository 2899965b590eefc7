// The module's CK_FUNCTION_LIST (C_GetFunctionList).
#ifndef HSMSIM_PKCS11_FUNCTION_LIST_H_
#define HSMSIM_PKCS11_FUNCTION_LIST_H_

#include <p11-kit/pkcs11.h>

namespace hsmsim::pkcs11 {

// FillFunctionList sets version 2.40 and every one of the 68 entries of
// `list`: the implemented functions and the stubs that answer
// CKR_FUNCTION_NOT_SUPPORTED.
void FillFunctionList(CK_FUNCTION_LIST* list);

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_FUNCTION_LIST_H_

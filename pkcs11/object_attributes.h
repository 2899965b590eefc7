// The PKCS#11 attributes of an AES secret key object, as the module keeps
// them: a template applied over the defaults, the standard's change policy
// (PKCS#11 2.40 section 4.1 and 4.4: CKA_SENSITIVE only FALSE to TRUE,
// CKA_EXTRACTABLE only TRUE to FALSE, CKA_WRAP_WITH_TRUSTED only FALSE to
// TRUE, CKA_CLASS, CKA_KEY_TYPE, CKA_VALUE_LEN
// and the CKA_ALWAYS/NEVER/LOCAL attributes never), template matching for
// C_FindObjects, and a byte encoding for the keystore's pkcs11_objects table.
// CKA_VALUE is never held: the key lives only in its unit blob.
//
// Values are the raw bytes the PKCS#11 ABI uses on this platform (a CK_BBOOL
// is one byte, a CK_ULONG eight). Pure code: no I/O, no locks.
#ifndef HSMSIM_PKCS11_OBJECT_ATTRIBUTES_H_
#define HSMSIM_PKCS11_OBJECT_ATTRIBUTES_H_

#include <p11-kit/pkcs11.h>

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace hsmsim::pkcs11 {

class ObjectAttributes {
 public:
  // ForNewAesKey returns the attributes of a new AES key of `key_bytes`
  // bytes made by `mechanism` (CKM_AES_KEY_GEN, or CK_UNAVAILABLE_INFORMATION
  // for C_CreateObject), the defaults overridden by `templ`. CKA_VALUE and
  // CKA_VALUE_LEN in `templ` are checked by the caller and skipped here.
  // Returns CKR_ATTRIBUTE_TYPE_INVALID for an attribute the module does not
  // know, CKR_ATTRIBUTE_VALUE_INVALID for a value of the wrong size,
  // CKR_TEMPLATE_INCONSISTENT for a class or key type other than
  // CKO_SECRET_KEY / CKK_AES.
  static CK_RV ForNewAesKey(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ULONG key_bytes,
                            CK_MECHANISM_TYPE mechanism, ObjectAttributes* out);

  // Decode reads Encode()'s bytes. Returns false for damaged bytes.
  static bool Decode(std::string_view bytes, ObjectAttributes* out);
  std::string Encode() const;

  // Get fills a C_GetAttributeValue template: CKR_OK, or the first of
  // CKR_ATTRIBUTE_SENSITIVE (CKA_VALUE, never readable),
  // CKR_ATTRIBUTE_TYPE_INVALID or CKR_BUFFER_TOO_SMALL, having filled every
  // other entry as the standard says.
  CK_RV Get(CK_ATTRIBUTE_PTR templ, CK_ULONG count) const;

  // Set applies a C_SetAttributeValue template by the change policy, all or
  // nothing. Returns CKR_ACTION_PROHIBITED when CKA_MODIFIABLE is FALSE,
  // CKR_ATTRIBUTE_READ_ONLY for an attribute that may not change (or not in
  // that direction), CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID.
  CK_RV Set(CK_ATTRIBUTE_PTR templ, CK_ULONG count);

  // Matches is true when every attribute of `templ` has the same value here.
  bool Matches(CK_ATTRIBUTE_PTR templ, CK_ULONG count) const;

  bool Bool(CK_ATTRIBUTE_TYPE type) const;
  CK_ULONG Ulong(CK_ATTRIBUTE_TYPE type) const;

 private:
  std::map<CK_ATTRIBUTE_TYPE, std::string> values_;
};

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_OBJECT_ATTRIBUTES_H_

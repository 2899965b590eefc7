// The bits of a key storage blob's `attributes` (proto/wire/blob_format.h,
// docs/protocol.md section 11) that the unit enforces. The header is the
// blob's associated data (AES-256-GCM), so a bit cannot be changed without
// the master key; every other bit stays opaque to the unit.
#ifndef HSMSIM_PROTO_WIRE_BLOB_ATTRIBUTES_H_
#define HSMSIM_PROTO_WIRE_BLOB_ATTRIBUTES_H_

#include <cstdint>

namespace hsmsim::wire {

// The key may leave the unit wrapped under another key (WrapAesKeyPad,
// docs/protocol.md section 10.8): set by the key's creator when it asks for
// it (the PKCS#11 module, from CKA_EXTRACTABLE TRUE; PKCS#11 2.40 section
// 4.7.1), never for hsmctl's root keys. Re-encryption keeps it.
inline constexpr uint32_t kBlobAttributeExtractable = 0x1;

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_BLOB_ATTRIBUTES_H_

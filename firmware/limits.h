// The firmware's version constants and the fixed limits of a unit, shared by
// the façade (CryptoUnit) and its internal pieces. See docs/protocol.md
// section 16 for the same figures on the wire.
#ifndef HSMSIM_FIRMWARE_LIMITS_H_
#define HSMSIM_FIRMWARE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace hsmsim::firmware {

inline constexpr char kFirmwareVersion[] = "hsmsim-fw 0.1.0";
inline constexpr uint32_t kStateFormatVersion = 1;
inline constexpr size_t kUnitIdSize = 16;
inline constexpr size_t kMaxAdministrators = 8;
inline constexpr size_t kMaxAdminNameLength = 30;
inline constexpr uint32_t kMinKeyParts = 2;
inline constexpr uint32_t kMaxKeyParts = 20;
inline constexpr size_t kMaxBatchBlobs = 100'000;
inline constexpr size_t kMaxDataKeySize = 1024;

}  // namespace hsmsim::firmware

#endif  // HSMSIM_FIRMWARE_LIMITS_H_

// MasterKeyRegister: one of a unit's NEW, CURRENT or OLD master key
// registers. A value type; copying shares the immutable KEK and copies the
// (wiping) key bytes. Not thread-safe; owned by CryptoUnit.
#ifndef HSMSIM_FIRMWARE_MASTER_KEY_REGISTER_H_
#define HSMSIM_FIRMWARE_MASTER_KEY_REGISTER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/verification_pattern.h"
#include "firmware/key_blob.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware {

class MasterKeyRegister {
 public:
  // An EMPTY register.
  MasterKeyRegister() = default;

  // Holding returns a register in `state` (FULL_UNCOMMITTED, FULL_COMMITTED
  // or VALID) holding the 32-byte `key`.
  static absl::StatusOr<MasterKeyRegister> Holding(absl::Span<const uint8_t> key,
                                                   v1::RegisterState state);

  // Partial returns a PARTIALLY_LOADED register: the XOR of the parts loaded
  // so far, the total expected and the loaded parts' VPs.
  static MasterKeyRegister Partial(SecretBytes xor_so_far, uint32_t parts_total,
                                   std::vector<crypto::VerificationPattern> part_vps);

  v1::RegisterState state() const { return state_; }
  bool empty() const { return state_ == v1::REGISTER_EMPTY; }
  // HoldsKey is true in FULL_UNCOMMITTED, FULL_COMMITTED and VALID.
  bool HoldsKey() const { return kek_ != nullptr; }

  // REQUIRES: HoldsKey().
  const crypto::VerificationPattern& vp() const { return vp_; }
  const std::shared_ptr<const BlobKek>& kek() const { return kek_; }
  absl::Span<const uint8_t> key() const { return key_; }

  uint32_t parts_total() const { return parts_total_; }
  const std::vector<crypto::VerificationPattern>& part_vps() const { return part_vps_; }

  // set_state changes the state of a register holding a key (commit,
  // promotion). REQUIRES: HoldsKey() and `state` is a holding state.
  void set_state(v1::RegisterState state);

  // Clear empties the register and wipes its key.
  void Clear() { *this = MasterKeyRegister(); }

  v1::MasterKeyRegisterInfo Info() const;

 private:
  v1::RegisterState state_ = v1::REGISTER_EMPTY;
  SecretBytes key_;  // whole key, or the XOR so far while PARTIALLY_LOADED
  crypto::VerificationPattern vp_{};
  std::shared_ptr<const BlobKek> kek_;
  uint32_t parts_total_ = 0;
  std::vector<crypto::VerificationPattern> part_vps_;
};

}  // namespace hsmsim::firmware

#endif  // HSMSIM_FIRMWARE_MASTER_KEY_REGISTER_H_

#include "firmware/master_key_register.h"

#include "common/check.h"
#include "common/status.h"
#include "crypto/verification_pattern.h"

namespace hsmsim::firmware {

absl::StatusOr<MasterKeyRegister> MasterKeyRegister::Holding(absl::Span<const uint8_t> key,
                                                             v1::RegisterState state) {
  MasterKeyRegister r;
  HSMSIM_ASSIGN_OR_RETURN(r.kek_, BlobKek::Create(key));
  r.key_ = MakeSecret(key);
  r.vp_ = crypto::ComputeVerificationPattern(key);
  r.set_state(state);
  return r;
}

MasterKeyRegister MasterKeyRegister::Partial(SecretBytes xor_so_far, uint32_t parts_total,
                                             std::vector<crypto::VerificationPattern> part_vps) {
  MasterKeyRegister r;
  r.state_ = v1::REGISTER_PARTIALLY_LOADED;
  r.key_ = std::move(xor_so_far);
  r.parts_total_ = parts_total;
  r.part_vps_ = std::move(part_vps);
  return r;
}

void MasterKeyRegister::set_state(v1::RegisterState state) {
  HSMSIM_CHECK(kek_ != nullptr);
  HSMSIM_CHECK(state == v1::REGISTER_FULL_UNCOMMITTED || state == v1::REGISTER_FULL_COMMITTED ||
               state == v1::REGISTER_VALID);
  state_ = state;
}

v1::MasterKeyRegisterInfo MasterKeyRegister::Info() const {
  v1::MasterKeyRegisterInfo info;
  info.set_state(state_);
  if (HoldsKey()) info.set_verification_pattern(crypto::AsString(vp_));
  if (state_ == v1::REGISTER_PARTIALLY_LOADED) {
    info.set_parts_total(parts_total_);
    info.set_parts_loaded(static_cast<uint32_t>(part_vps_.size()));
  }
  return info;
}

}  // namespace hsmsim::firmware

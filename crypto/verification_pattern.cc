#include "crypto/verification_pattern.h"

#include <openssl/sha.h>

#include <algorithm>

#include "common/secret_bytes.h"

namespace hsmsim::crypto {

VerificationPattern ComputeVerificationPattern(absl::Span<const uint8_t> key) {
  SecretBytes input;
  input.reserve(key.size() + 1);
  input.push_back(0x01);
  input.insert(input.end(), key.begin(), key.end());
  VerificationPattern vp;
  SHA256(input.data(), input.size(), vp.data());
  std::fill(vp.end() - 4, vp.end(), 0);
  return vp;
}

Wkid WkidOf(const VerificationPattern& vp) {
  Wkid wkid;
  std::copy_n(vp.begin(), kWkidSize, wkid.begin());
  return wkid;
}

}  // namespace hsmsim::crypto

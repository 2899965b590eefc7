// SecretBytes: a byte buffer for key material that is wiped with
// OPENSSL_cleanse whenever its storage is released.
#ifndef HSMSIM_COMMON_SECRET_BYTES_H_
#define HSMSIM_COMMON_SECRET_BYTES_H_

#include <openssl/crypto.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace hsmsim {

// WipingAllocator zeroes memory before it is returned to the heap, so key
// bytes do not survive in freed memory after a vector grows or dies.
template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() noexcept = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT
  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    OPENSSL_cleanse(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <typename U>
  bool operator==(const WipingAllocator<U>&) const noexcept {
    return true;
  }
};

using SecretBytes = std::vector<uint8_t, WipingAllocator<uint8_t>>;

inline SecretBytes MakeSecret(absl::Span<const uint8_t> bytes) {
  return SecretBytes(bytes.begin(), bytes.end());
}
inline SecretBytes MakeSecret(std::string_view bytes) {
  return SecretBytes(bytes.begin(), bytes.end());
}

// WipeString zeroes a std::string's bytes in place (e.g. a protobuf field
// that held key material) and clears it.
inline void WipeString(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
  s->clear();
}

// ConstantTimeEquals compares two byte strings without a data-dependent
// early exit. Lengths are not secret.
inline bool ConstantTimeEquals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

inline absl::Span<const uint8_t> AsBytes(std::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsStringView(absl::Span<const uint8_t> b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace hsmsim

#endif  // HSMSIM_COMMON_SECRET_BYTES_H_

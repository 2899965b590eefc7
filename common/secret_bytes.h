// SecretBytes: a byte buffer for key material, allocated in OpenSSL's secure
// heap when the process set one up (hsmsim-unit does, locked in memory; see
// emulator/process_hardening.h) and wiped whenever its storage is released.
#ifndef HSMSIM_COMMON_SECRET_BYTES_H_
#define HSMSIM_COMMON_SECRET_BYTES_H_

#include <openssl/crypto.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace hsmsim {

// WipingAllocator allocates with OPENSSL_secure_malloc, so key bytes live in
// the secure heap (locked in memory, excluded from core dumps) when
// CRYPTO_secure_malloc_init has run, and in the ordinary heap otherwise or
// when the secure heap is full. deallocate wipes the bytes
// (OPENSSL_secure_clear_free handles both heaps), so key bytes do not survive
// in freed memory after a vector grows or dies. allocate throws
// std::bad_alloc only when both heaps fail, as std::allocator does.
template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() noexcept = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT
  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    void* p = OPENSSL_secure_malloc(bytes);
    // Null when the secure heap is full or the request is larger than it.
    if (p == nullptr) p = OPENSSL_malloc(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept { OPENSSL_secure_clear_free(p, n * sizeof(T)); }
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

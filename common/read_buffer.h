// ReadBuffer: a byte vector whose resize() leaves new bytes uninitialized,
// for socket read buffers: growing the buffer before a read of up to 1 MiB
// would otherwise write zeros the read overwrites at once. Only bytes a read
// filled may be read back; callers shrink the buffer to what was read.
#ifndef HSMSIM_COMMON_READ_BUFFER_H_
#define HSMSIM_COMMON_READ_BUFFER_H_

#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace hsmsim {

// DefaultInitAllocator is std::allocator<T> whose value-initializing
// construct() default-initializes instead: no zeros for trivial T.
template <typename T>
class DefaultInitAllocator : public std::allocator<T> {
 public:
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() noexcept = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>& /*other*/) noexcept {}

  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

using ReadBuffer = std::vector<uint8_t, DefaultInitAllocator<uint8_t>>;

}  // namespace hsmsim

#endif  // HSMSIM_COMMON_READ_BUFFER_H_

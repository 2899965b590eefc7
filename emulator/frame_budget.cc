#include "emulator/frame_budget.h"

#include "common/check.h"

namespace hsmsim::emulator {

FrameBudget::FrameBudget(size_t limit_bytes) : limit_(limit_bytes) {
  HSMSIM_CHECK(limit_bytes > 0);
}

bool FrameBudget::TryReserve(size_t bytes) {
  size_t current = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ || current > limit_ - bytes) return false;
  } while (!used_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed));
  return true;
}

void FrameBudget::Add(size_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }

void FrameBudget::Release(size_t bytes) {
  const size_t before = used_.fetch_sub(bytes, std::memory_order_relaxed);
  HSMSIM_CHECK(before >= bytes);
}

}  // namespace hsmsim::emulator

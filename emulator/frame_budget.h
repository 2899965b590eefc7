// FrameBudget: the unit-wide limit on memory for frames, shared by every
// connection of one hsmsim-unit: bytes of request frames being read or
// processed, and of encoded replies waiting to be written.
//
// A session reserves a frame's full size (TryReserve) as soon as the frame's
// length prefix is decoded, before its body buffer grows, and releases it
// once the request has been answered. A reply's size is added (Add) when it
// is queued for writing and released once it is written or its connection
// closes. Past the limit, sessions stop reading new frames until bytes are
// released (see UnitSession).
//
// Thread-safety: thread-safe (one atomic counter). Owned by main (or a test)
// and must outlive every session that uses it.
#ifndef HSMSIM_EMULATOR_FRAME_BUDGET_H_
#define HSMSIM_EMULATOR_FRAME_BUDGET_H_

#include <atomic>
#include <cstddef>

namespace hsmsim::emulator {

// The default of --memory-budget-bytes: 512 MiB.
inline constexpr size_t kDefaultMemoryBudgetBytes = size_t{512} << 20;

// One connection may hold at most limit / kConnectionShareDivisor bytes
// (requests in flight plus replies not yet written) before it stops reading
// new frames; a connection that holds nothing may always ask for one frame.
inline constexpr size_t kConnectionShareDivisor = 4;

class FrameBudget {
 public:
  // `limit_bytes` is the budget in bytes. REQUIRES: limit_bytes > 0.
  explicit FrameBudget(size_t limit_bytes);

  FrameBudget(const FrameBudget&) = delete;
  FrameBudget& operator=(const FrameBudget&) = delete;

  // TryReserve adds `bytes` to the bytes in use and returns true when the
  // total stays within the limit; otherwise it changes nothing and returns
  // false.
  bool TryReserve(size_t bytes);

  // Add adds `bytes` even past the limit: for a reply, whose memory already
  // exists. Reading of new frames then waits until enough is released.
  void Add(size_t bytes);

  // Release gives back `bytes` taken by TryReserve or Add.
  // REQUIRES: bytes <= used() (an accounting bug otherwise: CHECK).
  void Release(size_t bytes);

  // used returns the bytes reserved or added and not yet released.
  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t limit() const { return limit_; }
  // connection_share returns limit() / kConnectionShareDivisor.
  size_t connection_share() const { return limit_ / kConnectionShareDivisor; }

 private:
  const size_t limit_;
  std::atomic<size_t> used_{0};
};

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_FRAME_BUDGET_H_

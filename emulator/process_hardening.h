// HardenProcess: what hsmsim-unit does to its own process before it touches
// key material: it marks the process non-dumpable (no core files, no
// ptrace or /proc/PID/mem reads by other processes of the same user) and
// gives OpenSSL a secure heap, locked in memory where the system allows, in
// which every SecretBytes (common/secret_bytes.h) is allocated.
#ifndef HSMSIM_EMULATOR_PROCESS_HARDENING_H_
#define HSMSIM_EMULATOR_PROCESS_HARDENING_H_

#include <cstddef>
#include <string>
#include <vector>

namespace hsmsim::emulator {

// Bytes of the secure heap: a power of two, well under the 8 MiB default
// RLIMIT_MEMLOCK of an unprivileged user on Debian. Key material of a unit
// is a few KiB; SecretBytes that do not fit fall back to the ordinary heap
// (still wiped when freed).
inline constexpr size_t kSecureHeapBytes = size_t{4} << 20;
// Smallest block of the secure heap (a power of two); smaller requests are
// rounded up to it.
inline constexpr size_t kSecureHeapMinBlock = 16;

enum class SecureHeapState {
  kLocked,     // initialized and mlock'ed
  kNotLocked,  // initialized, but mlock failed: it may be swapped out
  kFailed,     // not initialized: SecretBytes use the ordinary heap
};

// What HardenProcess did, for the log.
struct HardeningResult {
  bool non_dumpable = false;  // prctl(PR_SET_DUMPABLE, 0) succeeded
  SecureHeapState secure_heap = SecureHeapState::kFailed;
  size_t secure_heap_bytes = 0;  // arena size when initialized, else 0
  // One line per thing that could not be done and why (e.g. "key material
  // is NOT locked in memory: ... RLIMIT_MEMLOCK is 65536 bytes ..."); empty
  // when everything worked. hsmsim-unit logs each as a warning.
  std::vector<std::string> warnings;

  // Summary returns one line saying what holds, e.g. "process marked
  // non-dumpable; key material locked in memory (secure heap of 4194304
  // bytes)".
  std::string Summary() const;
};

// HardenProcess marks the process non-dumpable and initializes OpenSSL's
// secure heap with `secure_heap_bytes` (a power of two) and
// kSecureHeapMinBlock. Never fails: what it cannot do is in the result's
// warnings. Call once, early in main, before any key material is allocated
// and before other threads start. A later call in the same process leaves
// the heap as it is and reports what the first call found.
HardeningResult HardenProcess(size_t secure_heap_bytes = kSecureHeapBytes);

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_PROCESS_HARDENING_H_

#include "emulator/process_hardening.h"

#include <openssl/crypto.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/str_cat.h"

namespace hsmsim::emulator {
namespace {

// The state the first successful initialization in this process reported.
std::atomic<SecureHeapState> first_heap_state{SecureHeapState::kFailed};
std::atomic<size_t> first_heap_bytes{0};

std::string MemlockLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
  if (limit.rlim_cur == RLIM_INFINITY) return "unlimited";
  return StrCat(static_cast<unsigned long long>(limit.rlim_cur), " bytes");
}

}  // namespace

std::string HardeningResult::Summary() const {
  std::string out = non_dumpable ? "process marked non-dumpable" : "process is still dumpable";
  switch (secure_heap) {
    case SecureHeapState::kLocked:
      out +=
          StrCat("; key material locked in memory (secure heap of ", secure_heap_bytes, " bytes)");
      break;
    case SecureHeapState::kNotLocked:
      out += StrCat("; key material NOT locked in memory (secure heap of ", secure_heap_bytes,
                    " bytes, mlock failed)");
      break;
    case SecureHeapState::kFailed:
      out += "; key material NOT locked in memory (no secure heap)";
      break;
  }
  return out;
}

HardeningResult HardenProcess(size_t secure_heap_bytes) {
  HardeningResult result;
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0) {
    result.non_dumpable = true;
  } else {
    result.warnings.push_back(StrCat("the process could not be marked non-dumpable: prctl: ",
                                     std::strerror(errno), "; a core file may hold key material"));
  }

  if (CRYPTO_secure_malloc_initialized() != 0) {
    result.secure_heap = first_heap_state.load();
    result.secure_heap_bytes = first_heap_bytes.load();
    return result;
  }
  // 1: the arena is mlock'ed; 2: it works but mlock failed; 0: no arena.
  const int rc = CRYPTO_secure_malloc_init(secure_heap_bytes, kSecureHeapMinBlock);
  if (rc == 1) {
    result.secure_heap = SecureHeapState::kLocked;
    result.secure_heap_bytes = secure_heap_bytes;
  } else if (rc == 2) {
    result.secure_heap = SecureHeapState::kNotLocked;
    result.secure_heap_bytes = secure_heap_bytes;
    result.warnings.push_back(
        StrCat("key material is NOT locked in memory: mlock of the ", secure_heap_bytes,
               "-byte secure heap failed (RLIMIT_MEMLOCK is ", MemlockLimit(),
               "); it may be swapped to disk. Raise the limit (ulimit -l, LimitMEMLOCK=) or grant "
               "CAP_IPC_LOCK"));
  } else {
    result.warnings.push_back(
        StrCat("key material is NOT locked in memory: OpenSSL could not set up a secure heap of ",
               secure_heap_bytes, " bytes (RLIMIT_MEMLOCK is ", MemlockLimit(),
               "); key material stays on the ordinary heap, wiped when freed"));
  }
  first_heap_state.store(result.secure_heap);
  first_heap_bytes.store(result.secure_heap_bytes);
  return result;
}

}  // namespace hsmsim::emulator

// Entropy: where the firmware's randomness comes from. Injected so that tests
// and fuzzers can be deterministic; the emulator uses OpenSslEntropy.
#ifndef HSMSIM_CRYPTO_ENTROPY_H_
#define HSMSIM_CRYPTO_ENTROPY_H_

#include <cstdint>
#include <mutex>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace hsmsim::crypto {

// Entropy fills buffers with random bytes. Implementations are thread-safe.
class Entropy {
 public:
  virtual ~Entropy() = default;
  // Generate fills `out`. Returns INTERNAL (reason ENTROPY_FAILED) when the
  // source fails; `out` is then unspecified and must not be used.
  virtual absl::Status Generate(absl::Span<uint8_t> out) = 0;
};

// OpenSslEntropy draws from OpenSSL's CSPRNG (RAND_bytes).
class OpenSslEntropy final : public Entropy {
 public:
  absl::Status Generate(absl::Span<uint8_t> out) override;
};

// SeededEntropy is a deterministic generator for tests and fuzzers: the
// output is SHA-256(seed || counter) blocks. Never use it for real keys.
class SeededEntropy final : public Entropy {
 public:
  explicit SeededEntropy(uint64_t seed) : seed_(seed) {}
  absl::Status Generate(absl::Span<uint8_t> out) override;

 private:
  std::mutex mu_;
  uint64_t seed_;
  uint64_t counter_ = 0;  // guarded by mu_
};

// OpenSslEntropyInstance returns a process-wide OpenSslEntropy.
Entropy& OpenSslEntropyInstance();

}  // namespace hsmsim::crypto

#endif  // HSMSIM_CRYPTO_ENTROPY_H_

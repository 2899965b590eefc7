#include "crypto/entropy.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::crypto {

absl::Status OpenSslEntropy::Generate(absl::Span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    int chunk = static_cast<int>(std::min<size_t>(out.size() - done, INT_MAX));
    if (RAND_bytes(out.data() + done, chunk) != 1) {
      return Error(absl::StatusCode::kInternal, reason::kEntropyFailed,
                   StrCat("RAND_bytes failed for ", out.size(), " bytes"));
    }
    done += static_cast<size_t>(chunk);
  }
  return absl::OkStatus();
}

absl::Status SeededEntropy::Generate(absl::Span<uint8_t> out) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t done = 0;
  while (done < out.size()) {
    uint8_t input[16];
    std::memcpy(input, &seed_, 8);
    std::memcpy(input + 8, &counter_, 8);
    ++counter_;
    uint8_t block[SHA256_DIGEST_LENGTH];
    SHA256(input, sizeof(input), block);
    size_t n = std::min(out.size() - done, sizeof(block));
    std::memcpy(out.data() + done, block, n);
    done += n;
  }
  return absl::OkStatus();
}

Entropy& OpenSslEntropyInstance() {
  static OpenSslEntropy* instance = new OpenSslEntropy();
  return *instance;
}

}  // namespace hsmsim::crypto

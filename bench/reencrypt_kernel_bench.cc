// reencrypt_kernel_bench: the firmware's re-encryption kernel against the
// limit of this machine, raw OpenSSL AES-256-GCM decrypt + encrypt of the
// same blobs, in the same process.
//
// The limit benchmarks are registered first, so Google Benchmark runs them
// first; each stores its rate per batch size. The kernel benchmarks report
// `vs_limit` = kernel rate / limit rate for the same batch size. When a
// filter leaves the limit out, the kernel benchmark measures the limit itself
// (about 0.3 s) before it starts, so the ratio is always a same-run figure.
//
//   build/bench/reencrypt_kernel_bench --benchmark_min_time=1
//   build/bench/reencrypt_kernel_bench --benchmark_format=json --benchmark_out=kernel.json
#include <benchmark/benchmark.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "firmware/crypto/openssl_ptr.h"
#include "firmware/crypto/symmetric.h"

namespace hsmsim::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxBatch = 16384;
// Must match firmware/key_blob.cc: the limit derives the same KEKs.
constexpr std::string_view kKekInfo = "hsmsim/v1 blob kek";

// KernelFixture: one unit with CURRENT VALID and NEW FULL_COMMITTED, and
// kMaxBatch blobs under CURRENT. Built once.
struct KernelFixture {
  std::unique_ptr<firmware::CryptoUnit> unit;
  Ceremony ceremony;
  std::shared_ptr<const firmware::BlobKek> current;
  std::shared_ptr<const firmware::BlobKek> next;
  std::vector<std::string> blobs;
  SecretBytes current_kek;
  SecretBytes next_kek;
};

KernelFixture& Fixture() {
  static KernelFixture* fixture = [] {
    crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
    auto* f = new KernelFixture;
    auto unit = firmware::CryptoUnit::Create(entropy);
    HSMSIM_CHECK(unit.ok());
    f->unit = std::move(*unit);
    firmware::CryptoUnit& u = *f->unit;
    auto ceremony = RunCeremony(
        InProcessSender(u), [&u] { return u.Info().importer_public_key(); }, entropy);
    HSMSIM_CHECK(ceremony.ok());
    f->ceremony = std::move(*ceremony);
    f->current = *firmware::BlobKek::Create(f->ceremony.current_master_key);
    f->next = *firmware::BlobKek::Create(f->ceremony.new_master_key);
    f->blobs = SealBlobs(*f->current, kMaxBatch, entropy);
    f->current_kek = *crypto::HkdfSha256(f->ceremony.current_master_key, {}, AsBytes(kKekInfo), 32);
    f->next_kek = *crypto::HkdfSha256(f->ceremony.new_master_key, {}, AsBytes(kKekInfo), 32);
    return f;
  }();
  return *fixture;
}

// --- the limit ---------------------------------------------------------------

// GcmLimit re-encrypts blobs with nothing but EVP calls: two contexts keyed
// once, then per blob only the IV is set. The output goes to a preallocated
// buffer. The new IV is a counter unless `draw_ivs` (then RAND_bytes draws
// the IVs for the whole batch in one call, as a fair bound for a kernel that
// must use random IVs).
class GcmLimit {
 public:
  GcmLimit(absl::Span<const uint8_t> old_kek, absl::Span<const uint8_t> new_kek,
           const crypto::Wkid& new_wkid, size_t blob_size, size_t header_size)
      : dec_(EVP_CIPHER_CTX_new()),
        enc_(EVP_CIPHER_CTX_new()),
        new_wkid_(new_wkid),
        blob_size_(blob_size),
        header_size_(header_size) {
    cipher_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
    HSMSIM_CHECK(EVP_DecryptInit_ex2(dec_.get(), cipher_.get(), old_kek.data(), nullptr, nullptr) ==
                 1);
    HSMSIM_CHECK(EVP_EncryptInit_ex2(enc_.get(), cipher_.get(), new_kek.data(), nullptr, nullptr) ==
                 1);
  }

  // Run re-encrypts `count` blobs into `out`. Returns false when one fails.
  bool Run(const std::vector<std::string>& blobs, size_t count, uint8_t* out, bool draw_ivs) {
    constexpr size_t kIv = crypto::kGcmIvSize;
    constexpr size_t kTag = crypto::kGcmTagSize;
    constexpr size_t kBody = firmware::kRootKeySize;
    if (draw_ivs) {
      ivs_.resize(count * kIv);
      if (RAND_bytes(ivs_.data(), static_cast<int>(ivs_.size())) != 1) return false;
    }
    uint8_t key[kBody];
    const int hs = static_cast<int>(header_size_);
    bool ok = true;
    for (size_t i = 0; i < count; ++i) {
      const auto* in = reinterpret_cast<const uint8_t*>(blobs[i].data());
      uint8_t* o = out + i * blob_size_;
      std::memcpy(o, in, header_size_);
      std::memcpy(o + 6, new_wkid_.data(), new_wkid_.size());
      uint8_t* iv = o + header_size_;
      if (draw_ivs) {
        std::memcpy(iv, ivs_.data() + i * kIv, kIv);
      } else {
        ++counter_;
        std::memset(iv, 0, 4);
        std::memcpy(iv + 4, &counter_, 8);
      }
      int len = 0;
      const uint8_t* in_iv = in + header_size_;
      if (EVP_DecryptInit_ex(dec_.get(), nullptr, nullptr, nullptr, in_iv) != 1 ||
          EVP_DecryptUpdate(dec_.get(), nullptr, &len, in, hs) != 1 ||
          EVP_DecryptUpdate(dec_.get(), key, &len, in_iv + kIv, kBody) != 1 ||
          EVP_CIPHER_CTX_ctrl(dec_.get(), EVP_CTRL_GCM_SET_TAG, kTag,
                              const_cast<uint8_t*>(in_iv + kIv + kBody)) != 1 ||
          EVP_DecryptFinal_ex(dec_.get(), key + len, &len) != 1) {
        ok = false;
        break;
      }
      if (EVP_EncryptInit_ex(enc_.get(), nullptr, nullptr, nullptr, iv) != 1 ||
          EVP_EncryptUpdate(enc_.get(), nullptr, &len, o, hs) != 1 ||
          EVP_EncryptUpdate(enc_.get(), iv + kIv, &len, key, kBody) != 1 ||
          EVP_EncryptFinal_ex(enc_.get(), iv + kIv + len, &len) != 1 ||
          EVP_CIPHER_CTX_ctrl(enc_.get(), EVP_CTRL_GCM_GET_TAG, kTag, iv + kIv + kBody) != 1) {
        ok = false;
        break;
      }
    }
    OPENSSL_cleanse(key, sizeof(key));
    return ok;
  }

 private:
  crypto::EvpCipherPtr cipher_;
  crypto::EvpCipherCtxPtr dec_;
  crypto::EvpCipherCtxPtr enc_;
  crypto::Wkid new_wkid_;
  size_t blob_size_;
  size_t header_size_;
  uint64_t counter_ = 0;
  std::vector<uint8_t> ivs_;
};

std::unique_ptr<GcmLimit> MakeLimit() {
  KernelFixture& f = Fixture();
  auto parsed = firmware::ParseBlob(AsBytes(f.blobs[0]));
  HSMSIM_CHECK(parsed.ok());
  return std::make_unique<GcmLimit>(f.current_kek, f.next_kek, f.next->wkid(), f.blobs[0].size(),
                                    parsed->header.size());
}

std::mutex limit_mu;
std::map<int64_t, double> limit_rates;  // guarded by limit_mu: blobs/s per batch size

double StoredLimit(int64_t batch) {
  std::lock_guard lock(limit_mu);
  auto it = limit_rates.find(batch);
  return it == limit_rates.end() ? 0 : it->second;
}

void StoreLimit(int64_t batch, double rate) {
  std::lock_guard lock(limit_mu);
  limit_rates[batch] = rate;
}

// LimitRate returns the stored limit for `batch`, or measures it now.
double LimitRate(int64_t batch) {
  if (double stored = StoredLimit(batch); stored > 0) return stored;
  auto limit = MakeLimit();
  const size_t n = static_cast<size_t>(batch);
  std::vector<uint8_t> out(n * Fixture().blobs[0].size());
  size_t done = 0;
  Clock::time_point start = Clock::now();
  Clock::duration elapsed{};
  while ((elapsed = Clock::now() - start) < std::chrono::milliseconds(300)) {
    HSMSIM_CHECK(limit->Run(Fixture().blobs, n, out.data(), false));
    done += n;
  }
  double rate = static_cast<double>(done) / std::chrono::duration<double>(elapsed).count();
  StoreLimit(batch, rate);
  return rate;
}

void ReportRate(benchmark::State& state, size_t blobs, Clock::duration elapsed) {
  state.SetItemsProcessed(static_cast<int64_t>(blobs));
  state.counters["blobs_per_s"] = benchmark::Counter(
      static_cast<double>(blobs) / std::chrono::duration<double>(elapsed).count());
}

void BM_Limit(benchmark::State& state, bool draw_ivs) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto limit = MakeLimit();
  std::vector<uint8_t> out(n * Fixture().blobs[0].size());
  size_t done = 0;
  Clock::time_point start = Clock::now();
  for (auto _ : state) {
    if (!limit->Run(Fixture().blobs, n, out.data(), draw_ivs)) {
      state.SkipWithError("raw AES-GCM re-encryption failed");
      return;
    }
    benchmark::DoNotOptimize(out.data());
    done += n;
  }
  Clock::duration elapsed = Clock::now() - start;
  ReportRate(state, done, elapsed);
  double rate = static_cast<double>(done) / std::chrono::duration<double>(elapsed).count();
  if (!draw_ivs) {
    StoreLimit(state.range(0), rate);
  } else if (double plain = StoredLimit(state.range(0)); plain > 0) {
    state.counters["vs_limit"] = rate / plain;
  }
}

// --- the kernel --------------------------------------------------------------

void FinishKernel(benchmark::State& state, size_t done, Clock::duration elapsed) {
  ReportRate(state, done, elapsed);
  double rate = static_cast<double>(done) / std::chrono::duration<double>(elapsed).count();
  state.counters["vs_limit"] = rate / LimitRate(state.range(0));
}

// CryptoUnit::HandleReadOnly on a ReencryptBatchRequest: what a worker of
// hsmsim-unit runs, response construction and destruction included.
void BM_KernelHandleReadOnly(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  KernelFixture& f = Fixture();
  LimitRate(state.range(0));  // before timing, if it was filtered out
  v1::Request request;
  request.set_id(1);
  for (size_t i = 0; i < n; ++i) request.mutable_reencrypt_batch()->add_blobs(f.blobs[i]);
  size_t done = 0;
  Clock::time_point start = Clock::now();
  for (auto _ : state) {
    v1::Response response = f.unit->HandleReadOnly(request);
    if (response.status().code() != 0 ||
        static_cast<size_t>(response.reencrypt_batch().results_size()) != n ||
        response.reencrypt_batch().results(0).outcome() != v1::BLOB_REENCRYPTED) {
      state.SkipWithError("ReencryptBatch did not re-encrypt the batch");
      return;
    }
    done += n;
  }
  FinishKernel(state, done, Clock::now() - start);
}

// The lower-level kernel alone: ParseBlob and BlobRewrapper::Rewrap per
// blob (what Reencrypt runs, without the protobuf response).
void BM_KernelRewrapLoop(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  KernelFixture& f = Fixture();
  LimitRate(state.range(0));
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  std::vector<std::string> out;
  out.reserve(n);
  size_t done = 0;
  Clock::time_point start = Clock::now();
  for (auto _ : state) {
    out.clear();
    auto rewrapper = firmware::BlobRewrapper::Create(*f.current, *f.next, entropy, n);
    if (!rewrapper.ok()) {
      state.SkipWithError("BlobRewrapper::Create failed");
      return;
    }
    for (size_t i = 0; i < n; ++i) {
      auto parsed = firmware::ParseBlob(AsBytes(f.blobs[i]));
      auto rewrapped =
          parsed.ok() ? rewrapper->Rewrap(*parsed) : absl::StatusOr<std::string>(parsed.status());
      if (!rewrapped.ok()) {
        state.SkipWithError("BlobRewrapper::Rewrap failed");
        return;
      }
      out.push_back(std::move(*rewrapped));
    }
    done += n;
  }
  FinishKernel(state, done, Clock::now() - start);
}

// BlobKek::Rewrap one blob at a time (the single-blob API: a context lease
// and an entropy call per blob), for comparison.
void BM_KernelRewrapOneByOne(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  KernelFixture& f = Fixture();
  LimitRate(state.range(0));
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  size_t done = 0;
  Clock::time_point start = Clock::now();
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) {
      auto parsed = firmware::ParseBlob(AsBytes(f.blobs[i]));
      auto rewrapped = parsed.ok() ? f.current->Rewrap(*parsed, *f.next, entropy)
                                   : absl::StatusOr<std::string>(parsed.status());
      if (!rewrapped.ok()) {
        state.SkipWithError("BlobKek::Rewrap failed");
        return;
      }
      benchmark::DoNotOptimize(rewrapped->data());
    }
    done += n;
  }
  FinishKernel(state, done, Clock::now() - start);
}

void BatchArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : KernelBatchSizes()) b->Arg(n);
  b->ArgName("batch")->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(BM_Limit, raw_evp_gcm, false)->Apply(BatchArgs);
BENCHMARK_CAPTURE(BM_Limit, raw_evp_gcm_rand_ivs, true)->Apply(BatchArgs);
BENCHMARK(BM_KernelHandleReadOnly)->Apply(BatchArgs);
BENCHMARK(BM_KernelRewrapLoop)->Apply(BatchArgs);
BENCHMARK(BM_KernelRewrapOneByOne)
    ->Arg(256)
    ->ArgName("batch")
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace hsmsim::bench

BENCHMARK_MAIN();

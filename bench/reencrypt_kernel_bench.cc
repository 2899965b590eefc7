// reencrypt_kernel_bench: the firmware's re-encryption kernel against the
// limit of this machine, raw OpenSSL AES-256-GCM decrypt + encrypt of the
// same blobs, in the same process.
//
// The machine this runs on is shared and its load drifts, so a ratio of two
// benchmarks run a minute apart is not trustworthy. The kernel benchmarks
// therefore pair every kernel batch with a limit batch of the same blobs run
// right after it: the reported time (manual time) is the kernel's alone, and
// `vs_limit` = kernel rate / limit rate over the same iterations, with
// `limit_blobs_per_s` the paired limit rate. The BM_Limit rows give the limit
// on its own, and with IVs drawn from RAND_bytes (one call per batch).
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
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "crypto/openssl_ptr.h"
#include "crypto/symmetric.h"

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
  ReportRate(state, done, Clock::now() - start);
}

// --- the kernel --------------------------------------------------------------

// PairedLimit runs one limit batch after each kernel batch and keeps the
// totals of both.
class PairedLimit {
 public:
  explicit PairedLimit(size_t n)
      : n_(n), limit_(MakeLimit()), out_(n * Fixture().blobs[0].size()) {}

  // Kernel times `kernel` (one batch), then the limit on the same blobs;
  // sets the iteration's manual time to the kernel's. False if the limit
  // failed.
  template <typename F>
  bool Run(benchmark::State& state, F&& kernel) {
    Clock::time_point t0 = Clock::now();
    kernel();
    Clock::time_point t1 = Clock::now();
    bool ok = limit_->Run(Fixture().blobs, n_, out_.data(), false);
    Clock::time_point t2 = Clock::now();
    kernel_time_ += t1 - t0;
    limit_time_ += t2 - t1;
    done_ += n_;
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    return ok;
  }

  void Report(benchmark::State& state) {
    ReportRate(state, done_, kernel_time_);
    double limit_seconds = std::chrono::duration<double>(limit_time_).count();
    state.counters["limit_blobs_per_s"] = static_cast<double>(done_) / limit_seconds;
    state.counters["vs_limit"] =
        limit_seconds / std::chrono::duration<double>(kernel_time_).count();
  }

 private:
  size_t n_;
  std::unique_ptr<GcmLimit> limit_;
  std::vector<uint8_t> out_;
  size_t done_ = 0;
  Clock::duration kernel_time_{};
  Clock::duration limit_time_{};
};

// CryptoUnit::HandleReadOnly on a ReencryptBatchRequest: what a worker of
// hsmsim-unit runs, response construction and destruction included.
void BM_KernelHandleReadOnly(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  KernelFixture& f = Fixture();
  v1::Request request;
  request.set_id(1);
  for (size_t i = 0; i < n; ++i) request.mutable_reencrypt_batch()->add_blobs(f.blobs[i]);
  PairedLimit paired(n);
  bool reencrypted = true;
  for (auto _ : state) {
    bool limit_ok = paired.Run(state, [&] {
      v1::Response response = f.unit->HandleReadOnly(request);
      reencrypted = response.status().code() == 0 &&
                    static_cast<size_t>(response.reencrypt_batch().results_size()) == n &&
                    response.reencrypt_batch().results(0).outcome() == v1::BLOB_REENCRYPTED;
    });
    if (!reencrypted || !limit_ok) {
      state.SkipWithError("ReencryptBatch (or the limit) did not re-encrypt the batch");
      return;
    }
  }
  paired.Report(state);
}

// The lower-level kernel alone: ParseBlob and BlobRewrapper::Rewrap per
// blob (what Reencrypt runs, without the protobuf response).
void BM_KernelRewrapLoop(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  KernelFixture& f = Fixture();
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  std::vector<std::string> out;
  out.reserve(n);
  PairedLimit paired(n);
  bool rewrapped_all = true;
  for (auto _ : state) {
    bool limit_ok = paired.Run(state, [&] {
      out.clear();
      auto rewrapper = firmware::BlobRewrapper::Create(*f.current, *f.next, entropy, n);
      rewrapped_all = rewrapper.ok();
      for (size_t i = 0; i < n && rewrapped_all; ++i) {
        auto parsed = firmware::ParseBlob(AsBytes(f.blobs[i]));
        auto rewrapped =
            parsed.ok() ? rewrapper->Rewrap(*parsed) : absl::StatusOr<std::string>(parsed.status());
        rewrapped_all = rewrapped.ok();
        if (rewrapped_all) out.push_back(std::move(*rewrapped));
      }
    });
    if (!rewrapped_all || !limit_ok) {
      state.SkipWithError("BlobRewrapper::Rewrap (or the limit) failed");
      return;
    }
  }
  paired.Report(state);
}

// BlobKek::Rewrap one blob at a time (the single-blob API: a context lease
// and an entropy call per blob), for comparison.
void BM_KernelRewrapOneByOne(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  KernelFixture& f = Fixture();
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  PairedLimit paired(n);
  bool rewrapped_all = true;
  for (auto _ : state) {
    bool limit_ok = paired.Run(state, [&] {
      for (size_t i = 0; i < n && rewrapped_all; ++i) {
        auto parsed = firmware::ParseBlob(AsBytes(f.blobs[i]));
        auto rewrapped = parsed.ok() ? f.current->Rewrap(*parsed, *f.next, entropy)
                                     : absl::StatusOr<std::string>(parsed.status());
        rewrapped_all = rewrapped.ok();
        if (rewrapped_all) benchmark::DoNotOptimize(rewrapped->data());
      }
    });
    if (!rewrapped_all || !limit_ok) {
      state.SkipWithError("BlobKek::Rewrap (or the limit) failed");
      return;
    }
  }
  paired.Report(state);
}

void BatchArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : KernelBatchSizes()) b->Arg(n);
  b->ArgName("batch")->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void PairedBatchArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : KernelBatchSizes()) b->Arg(n);
  b->ArgName("batch")->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(BM_Limit, raw_evp_gcm, false)->Apply(BatchArgs);
BENCHMARK_CAPTURE(BM_Limit, raw_evp_gcm_rand_ivs, true)->Apply(BatchArgs);
BENCHMARK(BM_KernelHandleReadOnly)->Apply(PairedBatchArgs);
BENCHMARK(BM_KernelRewrapLoop)->Apply(PairedBatchArgs);
BENCHMARK(BM_KernelRewrapOneByOne)
    ->Arg(256)
    ->ArgName("batch")
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace hsmsim::bench

BENCHMARK_MAIN();

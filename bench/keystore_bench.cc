// keystore_bench: the SQLite keystore's share of a rotation, without units,
// against the bare SQLite append limit measured in the same iteration on the
// same disk (host/hsmctl/bench_baselines.h).
//
// BM_KeystoreFill/N: N new keys stored as `keys create` stores them (its
// chunks per transaction, Keystore::AddKeysPlanned on a writer thread while
// the next chunk is made, then one Flush).
// BM_KeystoreRotation/N: on N stored keys, the keystore work of a rotation:
// read the keys needing re-encryption in pages of 2048 as the rotation reads
// them (Keystore::ReadToReencrypt), store each page's
// re-encrypted blobs (the same bytes with one byte changed: no crypto), then
// finalize (Keystore::PromotePending) and look for keys left under the
// source (Keystore::ReadUnder, as finalization's straggler pass does).
// Counters: keys_per_s (the benchmark's own rate), append_rows_per_s (the
// append limit, same iteration), vs_append (their ratio), and per phase
// the seconds of the rotation case (read_s, store_s, promote_s, scan_s).
//
//   build/bench/keystore_bench --benchmark_filter=Rotation/1000000
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/str_cat.h"
#include "host/hsmctl/bench_baselines.h"
#include "host/key_creation.h"
#include "host/keystore.h"
#include "host/store_thread.h"

namespace hsmsim::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kBlobBytes = 92;  // a stored blob's size (docs/protocol.md)
// keys create's chunks (host::KeyCreationSpec).
const size_t kFillChunk = host::KeyCreationSpec{}.store_chunk;
const size_t kFillQueue = host::KeyCreationSpec{}.store_queue;
constexpr size_t kPage = 2048;
const std::string kSource(16, 'S');
const std::string kTarget(16, 'T');

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// ScratchDir: a fresh directory under /tmp (the disk the keystore of a
// test fleet lives on), removed afterwards.
struct ScratchDir {
  ScratchDir() : path(fs::temp_directory_path() / StrCat("hsmsim-keystore-bench-", ::getpid())) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() { fs::remove_all(path); }
  fs::path path;
};

std::string Blob(int64_t i) {
  std::string b(kBlobBytes, '\0');
  for (size_t j = 0; j < b.size(); ++j) b[j] = static_cast<char>((i * 131 + j * 7) & 0xff);
  return b;
}

// Fill stores `n` keys as keys create does: chunks made on this thread and
// stored on a thread of their own (a StoreThread), then one Flush.
std::unique_ptr<host::Keystore> Fill(const std::string& path, int64_t n) {
  auto store = host::OpenSqliteKeystore(path, true);
  HSMSIM_CHECK(store.ok());
  host::Keystore& keystore = **store;
  {
    host::StoreThread<std::vector<host::PlacedKey>> writer(
        kFillQueue, [&](std::vector<host::PlacedKey>& chunk) {
          return keystore.AddKeysPlanned(chunk, std::nullopt);
        });
    std::vector<host::PlacedKey> chunk;
    for (int64_t i = 0; i < n; ++i) {
      chunk.push_back(host::PlacedKey{StrCat("key-", i), Blob(i), kSource, "", ""});
      if (chunk.size() == kFillChunk || i + 1 == n) {
        HSMSIM_CHECK(writer.Push(std::move(chunk)).ok());
        chunk = {};
        chunk.reserve(kFillChunk);
      }
    }
    HSMSIM_CHECK(writer.Finish().ok());
  }
  HSMSIM_CHECK(keystore.Flush().ok());
  return std::move(*store);
}

void ReportAppend(benchmark::State& state, const ScratchDir& dir, int64_t n, double seconds) {
  auto append = hsmctl::MeasureSqliteAppendLimit(dir.path.string(), n, kBlobBytes);
  HSMSIM_CHECK(append.ok());
  const double rate = static_cast<double>(n) / seconds;
  state.counters["keys_per_s"] = rate;
  state.counters["append_rows_per_s"] = *append;
  state.counters["vs_append"] = rate / *append;
}

void BM_KeystoreFill(benchmark::State& state) {
  const int64_t n = state.range(0);
  for (auto _ : state) {
    ScratchDir dir;
    const auto start = Clock::now();
    auto store = Fill((dir.path / "keystore.db").string(), n);
    const double seconds = Since(start);
    state.SetIterationTime(seconds);
    store.reset();
    ReportAppend(state, dir, n, seconds);
  }
}

void BM_KeystoreRotation(benchmark::State& state) {
  const int64_t n = state.range(0);
  for (auto _ : state) {
    ScratchDir dir;
    auto store = Fill((dir.path / "keystore.db").string(), n);
    host::RotationJournal journal;
    journal.source_vp = kSource + std::string(16, 's');
    journal.target_vp = kTarget + std::string(16, 't');
    journal.keys_total = n;
    HSMSIM_CHECK(store->WriteJournal(journal).ok());
    double read_s = 0, store_s = 0;
    const auto start = Clock::now();
    int64_t after = 0;
    while (true) {
      auto t = Clock::now();
      auto page = store->ReadToReencrypt(after, kPage, kSource, kTarget);
      HSMSIM_CHECK(page.ok());
      read_s += Since(t);
      if (page->empty()) break;
      after = page->back().id;
      std::vector<host::RewrappedKey> rewrapped;
      rewrapped.reserve(page->size());
      for (host::StoredKey& k : *page) {
        k.blob[0] = static_cast<char>(k.blob[0] ^ 1);
        rewrapped.push_back(host::RewrappedKey{k.id, std::move(k.blob), kTarget});
      }
      t = Clock::now();
      HSMSIM_CHECK(store->StorePending(rewrapped).ok());
      store_s += Since(t);
    }
    auto t = Clock::now();
    auto promoted = store->PromotePending(kTarget);
    HSMSIM_CHECK(promoted.ok() && *promoted == n);
    const double promote_s = Since(t);
    t = Clock::now();
    auto left = store->ReadUnder(0, kPage, kSource);
    HSMSIM_CHECK(left.ok() && left->empty());
    const double scan_s = Since(t);
    const double seconds = Since(start);
    state.SetIterationTime(seconds);
    store.reset();
    state.counters["read_s"] = read_s;
    state.counters["store_s"] = store_s;
    state.counters["promote_s"] = promote_s;
    state.counters["scan_s"] = scan_s;
    ReportAppend(state, dir, n, seconds);
  }
}

BENCHMARK(BM_KeystoreFill)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(BM_KeystoreRotation)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace hsmsim::bench

BENCHMARK_MAIN();

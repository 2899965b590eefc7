// loopback_bench: re-encryption through one real hsmsim-unit process over
// TCP on 127.0.0.1, driven by host::UnitClient::CallAsync, against the
// single-core kernel rate (CryptoUnit::HandleReadOnly in this process)
// measured at start-up in the same run.
//
// The benchmark starts the unit (port 0, a temporary state directory), runs
// the master key ceremony over the wire to reach CURRENT VALID and NEW
// FULL_COMMITTED, seals blobs offline under CURRENT (it chose the key parts,
// so it knows the master key), then sweeps batch size x batches in flight.
// Each benchmark iteration is one completed batch; `inflight` batches are kept
// outstanding all the time. The unit is stopped at the end (and dies with
// this process if it is killed).
//
//   build/bench/loopback_bench --benchmark_min_time=1
//   build/bench/loopback_bench --benchmark_filter='batch:4096/inflight:(1|4)$'
//   build/bench/loopback_bench --benchmark_format=json --benchmark_out=loopback.json
#include <benchmark/benchmark.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/bench_support.h"
#include "host/signed_command.h"
#include "host/unit_client.h"
#include "proto/wire/packed_blobs.h"
#include "proto/wire/status_codec.h"
#include "tests/support/temp_dir.h"
#include "tests/support/unit_process.h"

#ifndef HSMSIM_UNIT_PATH
#error "HSMSIM_UNIT_PATH must name the hsmsim-unit binary"
#endif

namespace hsmsim::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxBatch = 16384;

// LoopbackUnit: one hsmsim-unit child (tests/support/unit_process.h) on
// 127.0.0.1, port 0, in a temporary directory that is removed with it.
// Stopped (SIGTERM, then SIGKILL after 5 s) on destruction; PR_SET_PDEATHSIG
// kills it if this process dies first.
class LoopbackUnit {
 public:
  static absl::StatusOr<std::unique_ptr<LoopbackUnit>> Start() {
    auto unit = std::unique_ptr<LoopbackUnit>(new LoopbackUnit);
    test_support::UnitProcessOptions options;
    options.binary = HSMSIM_UNIT_PATH;
    options.state_dir = unit->dir_.Join("state");
    options.work_dir = unit->dir_.path();
    options.args = {"--log-level", "warn"};
    options.die_with_parent = true;
    options.stop_grace = std::chrono::seconds(5);
    unit->process_ = std::make_unique<test_support::UnitProcess>(std::move(options));
    std::optional<uint16_t> port = unit->process_->WaitForPort();
    if (!port.has_value()) {
      return Error(absl::StatusCode::kUnavailable, "UNIT_NOT_READY",
                   StrCat("hsmsim-unit exited or wrote no port file within 20 s; see ",
                          unit->process_->output_path()));
    }
    unit->port_ = *port;
    return unit;
  }

  ~LoopbackUnit() { process_.reset(); }  // stop the unit before removing its directory

  std::string endpoint() const { return StrCat("127.0.0.1:", port_); }

 private:
  LoopbackUnit() = default;
  test_support::TempDir dir_;
  std::unique_ptr<test_support::UnitProcess> process_;
  int port_ = 0;
};

// RemoteSender signs and sends commands over the client (host::IssueCommand).
CommandSender RemoteSender(host::UnitClient& client) {
  return [&client](v1::Command op, const std::vector<const BenchAdmin*>& signers) -> absl::Status {
    return host::IssueCommand(client, std::move(op), signers).status();
  };
}

struct LoopbackFixture {
  std::unique_ptr<LoopbackUnit> unit;
  std::unique_ptr<host::UnitClient> client;
  // A ReencryptBatch per batch size, repeated (false) and packed (true).
  std::map<std::pair<int64_t, bool>, v1::Request> requests;
  double kernel_rate = 0;  // blobs/s, one core, this run
};

LoopbackFixture* fixture = nullptr;

// MeasureKernel returns the single-core rate of CryptoUnit::HandleReadOnly
// on batches of 4096, on an in-process unit brought to the same state.
absl::StatusOr<double> MeasureKernel(crypto::Entropy& entropy) {
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<firmware::CryptoUnit> unit,
                          firmware::CryptoUnit::Create(entropy));
  firmware::CryptoUnit& u = *unit;
  HSMSIM_ASSIGN_OR_RETURN(
      Ceremony c,
      RunCeremony(
          InProcessSender(u), [&u] { return u.Info().importer_public_key(); }, entropy));
  HSMSIM_ASSIGN_OR_RETURN(auto current, firmware::BlobKek::Create(c.current_master_key));
  constexpr size_t kBatch = 4096;
  v1::Request request;
  request.set_id(1);
  for (std::string& blob : SealBlobs(*current, kBatch, entropy)) {
    request.mutable_reencrypt_batch()->add_blobs(std::move(blob));
  }
  size_t done = 0;
  Clock::time_point start = Clock::now();
  Clock::duration elapsed{};
  while ((elapsed = Clock::now() - start) < std::chrono::seconds(1)) {
    v1::Response response = u.HandleReadOnly(request);
    if (response.status().code() != 0) return wire::FromWireStatus(response.status());
    done += kBatch;
  }
  return static_cast<double>(done) / std::chrono::duration<double>(elapsed).count();
}

absl::Status SetUp() {
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  fixture = new LoopbackFixture;
  HSMSIM_ASSIGN_OR_RETURN(fixture->kernel_rate, MeasureKernel(entropy));
  HSMSIM_ASSIGN_OR_RETURN(fixture->unit, LoopbackUnit::Start());
  host::UnitClientOptions options;
  options.timeout = std::chrono::seconds(120);
  options.idempotent_attempts = 1;  // a retry would hide a failure and skew the rate
  HSMSIM_ASSIGN_OR_RETURN(fixture->client,
                          host::UnitClient::Create("bench", fixture->unit->endpoint(), options));
  host::UnitClient& client = *fixture->client;
  HSMSIM_ASSIGN_OR_RETURN(Ceremony c, RunCeremony(
                                          RemoteSender(client),
                                          [&client] {
                                            auto info = client.GetInfo();
                                            return info.ok() ? info->importer_public_key()
                                                             : std::string();
                                          },
                                          entropy));
  HSMSIM_ASSIGN_OR_RETURN(auto current, firmware::BlobKek::Create(c.current_master_key));
  std::vector<std::string> blobs = SealBlobs(*current, kMaxBatch, entropy);
  for (int64_t batch : {64, 256, 1024, 4096, 16384}) {
    v1::Request& repeated = fixture->requests[{batch, false}];
    for (int64_t i = 0; i < batch; ++i) repeated.mutable_reencrypt_batch()->add_blobs(blobs[i]);
    v1::Request& packed = fixture->requests[{batch, true}];
    wire::PackedBlobsWriter writer(*packed.mutable_reencrypt_batch()->mutable_packed(),
                                   static_cast<size_t>(batch), 0);
    for (int64_t i = 0; i < batch; ++i) writer.Add(blobs[i]);
  }
  return absl::OkStatus();
}

// Reencrypted tells whether `answer` re-encrypted every blob of a batch of
// `batch`, in whichever form it came.
bool Reencrypted(const v1::ReencryptBatchResponse& answer, int64_t batch) {
  if (answer.has_packed()) {
    return answer.packed().sizes_size() == batch && answer.failures_size() == 0 &&
           answer.already_under_target_size() == 0;
  }
  return answer.results_size() == batch && answer.results(0).outcome() == v1::BLOB_REENCRYPTED;
}

// Pipeline counts completions; shared with the callbacks, which may run after
// the benchmark function returned.
struct Pipeline {
  std::mutex mu;
  std::condition_variable cv;
  size_t completed = 0;  // guarded by mu
  size_t failed = 0;     // guarded by mu
  std::string error;     // guarded by mu
};

void BM_Loopback(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int64_t inflight = state.range(1);
  const bool packed = state.range(2) != 0;
  const v1::Request& prototype = fixture->requests.at({batch, packed});
  auto pipe = std::make_shared<Pipeline>();
  auto send = [&] {
    fixture->client->CallAsync(prototype, [pipe, batch](absl::StatusOr<v1::Response> response) {
      std::string problem;
      if (!response.ok()) {
        problem = std::string(response.status().message());
      } else if (response->status().code() != 0) {
        problem = response->status().message();
      } else if (!Reencrypted(response->reencrypt_batch(), batch)) {
        problem = "the batch was not re-encrypted";
      }
      std::lock_guard lock(pipe->mu);
      ++pipe->completed;
      if (!problem.empty()) {
        ++pipe->failed;
        pipe->error = std::move(problem);
      }
      pipe->cv.notify_all();
    });
  };
  for (int64_t i = 0; i < inflight; ++i) send();
  size_t consumed = 0;
  Clock::time_point start = Clock::now();
  for (auto _ : state) {
    {
      std::unique_lock lock(pipe->mu);
      pipe->cv.wait(lock, [&] { return pipe->completed > consumed; });
    }
    ++consumed;
    send();
  }
  Clock::duration elapsed = Clock::now() - start;
  {
    std::unique_lock lock(pipe->mu);
    pipe->cv.wait(lock,
                  [&] { return pipe->completed == consumed + static_cast<size_t>(inflight); });
    if (pipe->failed > 0) {
      state.SkipWithError(StrCat(pipe->failed, " batches failed, e.g.: ", pipe->error).c_str());
      return;
    }
  }
  const double blobs = static_cast<double>(consumed) * static_cast<double>(batch);
  const double rate = blobs / std::chrono::duration<double>(elapsed).count();
  state.SetItemsProcessed(static_cast<int64_t>(blobs));
  state.counters["blobs_per_s"] = rate;
  state.counters["kernel_1core"] = fixture->kernel_rate;
  state.counters["vs_kernel"] = rate / fixture->kernel_rate;
}

// packed:0 sends the blobs in the repeated field and gets one BlobResult
// per blob back; packed:1 sends and gets them packed (docs/protocol.md
// section 10.6), as hsmctl does.
BENCHMARK(BM_Loopback)
    ->ArgsProduct({{64, 256, 1024, 4096, 16384}, {1, 2, 4, 8, 16}, {0, 1}})
    ->ArgNames({"batch", "inflight", "packed"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace hsmsim::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = hsmsim::bench::SetUp(); !s.ok()) {
    std::fprintf(stderr, "loopback_bench: setup failed: %s\n", std::string(s.message()).c_str());
    delete hsmsim::bench::fixture;
    return 1;
  }
  std::fprintf(stderr, "loopback_bench: single-core kernel %.0f blobs/s (batches of 4096)\n",
               hsmsim::bench::fixture->kernel_rate);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  delete hsmsim::bench::fixture;  // closes the client, stops the unit
  return 0;
}

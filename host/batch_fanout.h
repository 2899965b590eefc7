// BatchFanout: batches of requests spread over several units, the one
// scheduler of the host. Rotation (CURRENT -> NEW), finalization and
// `keys upgrade` (OLD -> CURRENT), `keys create`, `keys verify` and the
// keystore fill of `bench rotate` all use it.
//
// Each unit is a lane. At most `in_flight_per_lane` batches are in flight on
// a lane; a new batch goes to the live lane with the fewest in flight. A lane
// is dropped, with the reason, when the unit refuses or answers a batch
// wrongly (any error that is not a transport error), or after
// kMaxLaneFailures transport errors in a row (IsUnreachable: the channel has
// already retried an idempotent request). A batch that failed on a lane goes
// again to another live lane, at most kMaxBatchAttemptsPerLane times the
// number of lanes in all.
//
// Completions are handed to the caller's thread: Next() and Run() return or
// call back on the thread that sends; the channels' threads only queue
// completions under a mutex. So a keystore (used from one thread) may be
// written from Run's handler.
//
// Thread-safety: one caller thread uses a BatchFanout. The channels must
// outlive it. The destructor waits for every batch still in flight and
// discards its result.
#ifndef HSMSIM_HOST_BATCH_FANOUT_H_
#define HSMSIM_HOST_BATCH_FANOUT_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "host/unit_channel.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::host {

// Transport errors in a row after which a lane is dropped.
inline constexpr int kMaxLaneFailures = 3;
// A batch is tried at most this many times per lane (in all, over every
// lane) before the fan-out stops.
inline constexpr int kMaxBatchAttemptsPerLane = 3;
// Batches in flight per lane unless the caller says otherwise.
inline constexpr int kDefaultInFlightPerLane = 4;

struct BatchFanoutOptions {
  int in_flight_per_lane = kDefaultInFlightPerLane;
  // Whether a failed batch goes again to another lane (Run). When false the
  // first failed batch stops Run with the unit's error.
  bool retry_elsewhere = true;
  // What the fan-out does, and what the operator does when no lane is left,
  // for error messages: "re-encryption", "fix the units, then ...".
  std::string activity = "the fan-out";
  std::string hint;
};

class BatchFanout {
 public:
  // One batch: the request, a tag of the caller's, and how often it was sent.
  struct Batch {
    v1::Request request;
    uint64_t tag = 0;
    int attempts = 0;
  };
  struct Completion {
    size_t lane = 0;
    Batch batch;
    absl::StatusOr<v1::Response> result;
  };
  // Produces the next batch; nullopt when there is no more work; an error
  // stops Run.
  using NextBatch = std::function<absl::StatusOr<std::optional<Batch>>()>;
  // Takes one answered batch (the unit's status OK). Returns OK when the
  // batch is done, an error when the unit's answer is unusable (the lane is
  // dropped and the batch goes elsewhere). Call Stop() for an error that must
  // end the run (a keystore failure).
  using HandleBatch = std::function<absl::Status(size_t lane, const Batch&, v1::Response&)>;
  // Divides a batch a unit refused as too large (FRAME_TOO_LARGE: the
  // request is above the unit's --max-frame-bytes) into smaller batches that
  // together do the same work, with tags of their own. Returns fewer than
  // two batches when the batch cannot be divided (one item).
  using SplitBatch = std::function<std::vector<Batch>(const Batch&)>;

  // `lanes` are the units' channels, which outlive the fan-out.
  BatchFanout(std::vector<UnitChannel*> lanes, BatchFanoutOptions options);
  ~BatchFanout();
  BatchFanout(const BatchFanout&) = delete;
  BatchFanout& operator=(const BatchFanout&) = delete;

  // Run keeps every live lane busy with batches from `next`, hands each
  // answer to `handle`, retries failed batches on other lanes and drops
  // failing lanes (say() is told why). Returns OK when `next` ran dry and
  // every batch was handled; the first Stop() status or error of `next`;
  // UNAVAILABLE (NO_UNIT_AVAILABLE) when no lane is left; the batch's last
  // error when a batch failed kMaxBatchAttemptsPerLane times per lane.
  absl::Status Run(const NextBatch& next, const HandleBatch& handle,
                   const std::function<void(std::string_view)>& say = nullptr);

  // SetSplit makes Run answer a unit's FRAME_TOO_LARGE by sending the batch
  // again as the smaller batches `split` gives, on any live lane, instead of
  // dropping the lane (a unit that takes smaller frames gets smaller batches,
  // not a drop). say() is told once per lane. Without it, FRAME_TOO_LARGE
  // drops the lane like any other refusal.
  void SetSplit(SplitBatch split) { split_ = std::move(split); }

  // Stop ends Run after the batches in flight (their results are discarded)
  // with `status`; the first call wins.
  void Stop(absl::Status status);

  // PickLane returns the live lane with the fewest batches in flight, below
  // the cap, or nullopt when every live lane is full or none is live.
  std::optional<size_t> PickLane() const;
  // Send sends `batch` on `lane` (cap and liveness not checked: keys verify
  // sends each page to every unit).
  void Send(size_t lane, Batch batch);
  // Next waits for one completion. REQUIRES: in_flight() > 0.
  Completion Next();
  int in_flight() const { return total_in_flight_; }

  // RecordSuccess resets the lane's run of failures. RecordFailure counts a
  // failure and drops the lane when `status` is not a transport error or is
  // the kMaxLaneFailures-th in a row; returns true when it dropped the lane.
  void RecordSuccess(size_t lane);
  bool RecordFailure(size_t lane, const absl::Status& status);

  size_t lane_count() const { return lanes_.size(); }
  UnitChannel& channel(size_t lane) const { return *lanes_[lane].channel; }
  bool live(size_t lane) const { return lanes_[lane].live; }
  bool AnyLive() const;
  // drop_reason is the error that dropped the lane ("" while it is live).
  const std::string& drop_reason(size_t lane) const { return lanes_[lane].drop_reason; }

 private:
  struct Lane {
    UnitChannel* channel = nullptr;
    int in_flight = 0;
    int failures_in_a_row = 0;
    bool live = true;
    bool split_said = false;  // say() was told this lane refused a batch as too large
    std::string drop_reason;
  };
  // SplitRefused requeues the smaller batches of a batch a lane refused as
  // too large; returns false when there is no split or it cannot divide it.
  bool SplitRefused(const Completion& c, const absl::Status& status,
                    const std::function<void(std::string_view)>& say);
  void HandleFailure(Completion& c, const absl::Status& status,
                     const std::function<void(std::string_view)>& say);

  BatchFanoutOptions options_;
  std::vector<Lane> lanes_;
  int total_in_flight_ = 0;
  std::deque<Batch> retry_;
  SplitBatch split_;
  absl::Status stop_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Completion> done_;  // guarded by mu_
};

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_BATCH_FANOUT_H_

#include "host/batch_fanout.h"

#include <algorithm>
#include <utility>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host {

BatchFanout::BatchFanout(std::vector<UnitChannel*> lanes, BatchFanoutOptions options)
    : options_(std::move(options)) {
  for (UnitChannel* channel : lanes) lanes_.push_back(Lane{channel, 0, 0, true, false, ""});
}

BatchFanout::~BatchFanout() {
  while (total_in_flight_ > 0) Next();
}

std::optional<size_t> BatchFanout::PickLane() const {
  std::optional<size_t> best;
  for (size_t i = 0; i < lanes_.size(); ++i) {
    const Lane& lane = lanes_[i];
    if (!lane.live || lane.in_flight >= options_.in_flight_per_lane) continue;
    if (!best.has_value() || lane.in_flight < lanes_[*best].in_flight) best = i;
  }
  return best;
}

void BatchFanout::Send(size_t lane, Batch batch) {
  ++lanes_[lane].in_flight;
  ++total_in_flight_;
  ++batch.attempts;
  v1::Request request = batch.request;
  lanes_[lane].channel->CallAsync(
      std::move(request), [this, lane, b = std::move(batch)](absl::StatusOr<v1::Response> r) {
        std::lock_guard<std::mutex> lock(mu_);
        done_.push_back(Completion{lane, std::move(b), std::move(r)});
        cv_.notify_one();
      });
}

BatchFanout::Completion BatchFanout::Next() {
  Completion c;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !done_.empty(); });
    c = std::move(done_.front());
    done_.pop_front();
  }
  --lanes_[c.lane].in_flight;
  --total_in_flight_;
  return c;
}

void BatchFanout::RecordSuccess(size_t lane) { lanes_[lane].failures_in_a_row = 0; }

bool BatchFanout::RecordFailure(size_t lane, const absl::Status& status) {
  Lane& l = lanes_[lane];
  ++l.failures_in_a_row;
  if (!l.live) return false;
  if (IsUnreachable(status) && l.failures_in_a_row < kMaxLaneFailures) return false;
  l.live = false;
  l.drop_reason = StrCat(ReasonOf(status), ": ", status.message());
  return true;
}

bool BatchFanout::AnyLive() const {
  return std::any_of(lanes_.begin(), lanes_.end(), [](const Lane& l) { return l.live; });
}

void BatchFanout::Stop(absl::Status status) {
  if (stop_.ok()) stop_ = std::move(status);
}

bool BatchFanout::SplitRefused(const Completion& c, const absl::Status& status,
                               const std::function<void(std::string_view)>& say) {
  if (!split_ || ReasonOf(status) != reason::kFrameTooLarge) return false;
  std::vector<Batch> parts = split_(c.batch);
  if (parts.size() < 2) return false;
  Lane& lane = lanes_[c.lane];
  if (say && !lane.split_said) {
    lane.split_said = true;
    say(StrCat("unit ", lane.channel->name(), " refused a batch as too large (", ReasonOf(status),
               "): sending smaller batches"));
  }
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    it->attempts = 0;
    retry_.push_front(std::move(*it));
  }
  return true;
}

void BatchFanout::HandleFailure(Completion& c, const absl::Status& status,
                                const std::function<void(std::string_view)>& say) {
  const std::string& name = lanes_[c.lane].channel->name();
  if (SplitRefused(c, status, say)) return;
  if (!options_.retry_elsewhere) {
    Stop(status);
    return;
  }
  if (RecordFailure(c.lane, status) && say) {
    say(StrCat("unit ", name, " dropped from ", options_.activity, ": ", ReasonOf(status), ": ",
               status.message()));
  }
  if (!AnyLive()) {
    // The last unit dropped did not answer: keep its UNIT_UNREACHABLE or
    // UNIT_TIMEOUT (exit 3); every unit refused: NO_UNIT_AVAILABLE (exit 1).
    const std::string why =
        StrCat(options_.activity, " stopped: no unit is usable (last: unit ", name, ": ",
               status.message(), ")", options_.hint.empty() ? "" : "; ", options_.hint);
    Stop(IsUnreachable(status)
             ? Error(status.code(), ReasonOf(status), why)
             : Error(absl::StatusCode::kUnavailable, reason::kNoUnitAvailable, why));
    return;
  }
  const int limit = static_cast<int>(lanes_.size()) * kMaxBatchAttemptsPerLane;
  if (c.batch.attempts >= limit) {
    Stop(WithContext(status, StrCat(options_.activity, " stopped: a batch failed ",
                                    c.batch.attempts, " times, on every unit")));
    return;
  }
  retry_.push_back(std::move(c.batch));
}

absl::Status BatchFanout::Run(const NextBatch& next, const HandleBatch& handle,
                              const std::function<void(std::string_view)>& say) {
  bool exhausted = false;
  while (true) {
    while (stop_.ok()) {
      std::optional<size_t> lane = PickLane();
      if (!lane.has_value()) break;
      std::optional<Batch> batch;
      if (!retry_.empty()) {
        batch = std::move(retry_.front());
        retry_.pop_front();
      } else if (!exhausted) {
        absl::StatusOr<std::optional<Batch>> produced = next();
        if (!produced.ok()) {
          Stop(produced.status());
          break;
        }
        batch = std::move(*produced);
        exhausted = !batch.has_value();
      }
      if (!batch.has_value()) break;
      Send(*lane, std::move(*batch));
    }
    if (total_in_flight_ == 0) break;
    Completion c = Next();
    if (!stop_.ok()) continue;  // stopping: results of the batches in flight are discarded
    absl::Status status = ResponseStatus(c.result, lanes_[c.lane].channel->name());
    if (status.ok()) status = handle(c.lane, c.batch, *c.result);
    if (status.ok()) {
      RecordSuccess(c.lane);
    } else if (stop_.ok()) {
      HandleFailure(c, status, say);
    }
  }
  return stop_;
}

}  // namespace hsmsim::host

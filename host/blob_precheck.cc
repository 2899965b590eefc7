#include "host/blob_precheck.h"

#include <utility>

#include "common/status.h"

namespace hsmsim::host {

absl::StatusOr<BlobPrecheckReport> PrecheckBlobs(Keystore& keystore,
                                                 const std::vector<UnitChannel*>& units,
                                                 std::string_view source_wkid,
                                                 std::string_view target_wkid,
                                                 const BlobPrecheckOptions& options) {
  BlobPrecheckReport report;
  BatchFanoutOptions fanout_options;
  fanout_options.in_flight_per_lane = options.in_flight_per_unit;
  fanout_options.activity = "the blob pre-check";
  fanout_options.hint = "fix the units, then run hsmctl mk rotate again";
  BatchFanout fanout(units, fanout_options);
  RewrapBatches batches(RewrapKind::kCheck, options.batch_size);
  fanout.SetSplit([&batches](const BatchFanout::Batch& b) { return batches.Split(b); });
  int64_t after_id = 0;
  auto next = [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
    HSMSIM_ASSIGN_OR_RETURN(
        std::vector<StoredKey> page,
        keystore.ReadNeedingRewrap(after_id, batches.batch_size(), source_wkid, target_wkid));
    if (page.empty()) return std::nullopt;
    after_id = page.back().id;
    return batches.Make(page);
  };
  auto handle = [&](size_t lane, const BatchFanout::Batch& batch,
                    v1::Response& response) -> absl::Status {
    const RewrapKeys& keys = batches.Keys(batch.tag);
    HSMSIM_RETURN_IF_ERROR(
        TakeChecked(response, keys, fanout.channel(lane).name(), report.unreadable));
    report.checked += static_cast<int64_t>(keys.ids.size());
    batches.Forget(batch.tag);
    return absl::OkStatus();
  };
  HSMSIM_RETURN_IF_ERROR(fanout.Run(next, handle, options.say));
  HSMSIM_RETURN_IF_ERROR(keystore.ClearBlobProblems());
  HSMSIM_RETURN_IF_ERROR(keystore.RecordBlobProblems(report.unreadable.problems));
  return report;
}

}  // namespace hsmsim::host

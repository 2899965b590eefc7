#include "host/straggler_upgrade.h"

#include <map>
#include <utility>

#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host {

absl::StatusOr<StragglerReport> UpgradeStragglers(Keystore& keystore,
                                                  const std::vector<UnitChannel*>& units,
                                                  std::string_view old_wkid,
                                                  std::string_view current_wkid,
                                                  const StragglerOptions& options) {
  StragglerReport report;
  BatchFanoutOptions fanout_options;
  fanout_options.in_flight_per_lane = options.in_flight_per_unit;
  fanout_options.activity = "re-encryption OLD -> CURRENT";
  fanout_options.hint = "fix the units and run it again";
  BatchFanout fanout(units, fanout_options);
  RewrapBatches batches(RewrapKind::kOldToCurrent, options.batch_size);
  fanout.SetSplit([&batches](const BatchFanout::Batch& b) { return batches.Split(b); });
  int64_t after_id = 0;
  auto next = [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
    HSMSIM_ASSIGN_OR_RETURN(std::vector<StoredKey> page,
                            keystore.ReadUnder(after_id, batches.batch_size(), old_wkid));
    if (page.empty()) return std::nullopt;
    after_id = page.back().id;
    return batches.Make(page);
  };
  auto handle = [&](size_t lane, const BatchFanout::Batch& batch,
                    v1::Response& response) -> absl::Status {
    HSMSIM_ASSIGN_OR_RETURN(
        std::vector<RewrappedKey> moved,
        TakeRewrapped(RewrapKind::kOldToCurrent, response, batches.Keys(batch.tag), current_wkid,
                      fanout.channel(lane).name(), report.failed));
    batches.Forget(batch.tag);
    if (absl::Status stored = keystore.ReplaceBlobs(moved); !stored.ok()) {
      fanout.Stop(stored);
      return absl::OkStatus();
    }
    report.moved += static_cast<int64_t>(moved.size());
    return absl::OkStatus();
  };
  HSMSIM_RETURN_IF_ERROR(fanout.Run(next, handle, options.say));
  return report;
}

}  // namespace hsmsim::host

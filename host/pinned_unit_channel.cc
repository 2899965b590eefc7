#include "host/pinned_unit_channel.h"

#include <utility>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host {

absl::Status UnitIdMismatch(std::string_view name, std::string_view expected,
                            std::string_view actual) {
  return Error(
      absl::StatusCode::kFailedPrecondition, reason::kUnitIdMismatch,
      StrCat("unit ", name, " answers with unit id ", ToHex(actual), " but fleet.json pins ", name,
             " to unit id ", ToHex(expected),
             ": it is not the unit the fleet knows (a blank unit started where its state was, or "
             "another unit at its address), so nothing else is sent to it. Restore ",
             name,
             "'s state directory and restart it, or replace the unit on purpose: hsmctl "
             "fleet restart ",
             name, " --new-unit (a stopped unit) or hsmctl unit replace ", name,
             " (a running one)"));
}

PinnedUnitChannel::PinnedUnitChannel(std::unique_ptr<UnitChannel> inner,
                                     std::string expected_unit_id)
    : expected_(std::move(expected_unit_id)), inner_(std::move(inner)) {}

UnitChannel::Callback PinnedUnitChannel::Checked(Callback done) {
  return [this, done = std::move(done)](absl::StatusOr<v1::Response> result) {
    if (!result.ok()) {
      // The connection may come back to another process: check again.
      if (IsUnreachable(result.status())) verified_ = false;
      done(std::move(result));
      return;
    }
    if (result->has_get_info()) {
      if (result->get_info().unit_id() != expected_) {
        verified_ = false;
        done(UnitIdMismatch(name(), expected_, result->get_info().unit_id()));
        return;
      }
      verified_ = true;
    }
    done(std::move(result));
  };
}

void PinnedUnitChannel::CallAsync(v1::Request request, Callback done) {
  if (expected_.empty()) {
    inner_->CallAsync(std::move(request), std::move(done));
    return;
  }
  if (verified_ || request.has_get_info()) {
    inner_->CallAsync(std::move(request), Checked(std::move(done)));
    return;
  }
  v1::Request probe;
  probe.mutable_get_info();
  // Both implementations of UnitChannel accept a call from inside a
  // callback (they only queue it), which the id check needs.
  inner_->CallAsync(std::move(probe),
                    Checked([this, request = std::move(request),
                             done = std::move(done)](absl::StatusOr<v1::Response> checked) mutable {
                      if (absl::Status failed = ResponseStatus(checked, name()); !failed.ok()) {
                        // The check's own failure: the transport error, the
                        // mismatch, or the unit's refusal of GetInfo.
                        done(std::move(failed));
                        return;
                      }
                      inner_->CallAsync(std::move(request), Checked(std::move(done)));
                    }));
}

}  // namespace hsmsim::host

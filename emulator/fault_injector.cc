#include "emulator/fault_injector.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "proto/wire/fault_names.h"

namespace hsmsim::emulator {
namespace {

absl::Status BadFault(std::string_view message) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadFault, message);
}

}  // namespace

absl::Status ValidateFault(const v1::Fault& fault) {
  if (fault.point() == v1::FAULT_POINT_UNSPECIFIED || !v1::FaultPoint_IsValid(fault.point())) {
    return BadFault(StrCat("fault point ", static_cast<int>(fault.point()),
                           " is not one of before-persist, after-persist, "
                           "reencrypt-after-blobs, in-set-immediate"));
  }
  if (fault.action() == v1::FAULT_ACTION_UNSPECIFIED || !v1::FaultAction_IsValid(fault.action())) {
    return BadFault(StrCat("fault action ", static_cast<int>(fault.action()),
                           " is not one of crash, hang, drop-connection, return-error"));
  }
  if (fault.point() != v1::FAULT_REENCRYPT_AFTER_BLOBS && fault.after_blobs() != 0) {
    return BadFault(
        StrCat("after_blobs (", fault.after_blobs(), ") applies only to reencrypt-after-blobs"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Fault> ParseFaultSpec(std::string_view spec) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3) {
    return BadFault(StrCat("fault '", spec, "': expected POINT:ACTION[:N]"));
  }
  v1::Fault fault;
  v1::FaultPoint point = v1::FAULT_POINT_UNSPECIFIED;
  if (!v1::FaultPoint_Parse(wire::FaultEnumName(parts[0]), &point) ||
      point == v1::FAULT_POINT_UNSPECIFIED) {
    return BadFault(StrCat("fault '", spec, "': unknown point '", parts[0],
                           "'; expected before-persist, after-persist, reencrypt-after-blobs or "
                           "in-set-immediate"));
  }
  v1::FaultAction action = v1::FAULT_ACTION_UNSPECIFIED;
  if (!v1::FaultAction_Parse(wire::FaultEnumName(parts[1]), &action) ||
      action == v1::FAULT_ACTION_UNSPECIFIED) {
    return BadFault(StrCat("fault '", spec, "': unknown action '", parts[1],
                           "'; expected crash, hang, drop-connection or return-error"));
  }
  fault.set_point(point);
  fault.set_action(action);
  if (point == v1::FAULT_REENCRYPT_AFTER_BLOBS) {
    if (parts.size() != 3) {
      return BadFault(StrCat("fault '", spec,
                             "': reencrypt-after-blobs needs a blob count, e.g. "
                             "reencrypt-after-blobs:crash:5000"));
    }
    uint64_t n = 0;
    const char* end = parts[2].data() + parts[2].size();
    auto [ptr, ec] = std::from_chars(parts[2].data(), end, n);
    if (parts[2].empty() || ec != std::errc() || ptr != end) {
      return BadFault(
          StrCat("fault '", spec, "': blob count '", parts[2], "' is not a number 0..2^64-1"));
    }
    fault.set_after_blobs(n);
  } else if (parts.size() == 3) {
    return BadFault(StrCat("fault '", spec, "': a count applies only to reencrypt-after-blobs"));
  }
  return fault;
}

absl::Status FaultInjector::Arm(const v1::Fault& fault) {
  HSMSIM_RETURN_IF_ERROR(ValidateFault(fault));
  std::lock_guard lock(mu_);
  armed_.push_back(ArmedFault{fault, 0});
  return absl::OkStatus();
}

void FaultInjector::Clear() {
  std::lock_guard lock(mu_);
  armed_.clear();
}

std::vector<v1::Fault> FaultInjector::Armed() const {
  std::lock_guard lock(mu_);
  std::vector<v1::Fault> out;
  for (const ArmedFault& a : armed_) out.push_back(a.fault);
  return out;
}

bool FaultInjector::IsArmed(v1::FaultPoint point) const {
  std::lock_guard lock(mu_);
  return std::any_of(armed_.begin(), armed_.end(),
                     [point](const ArmedFault& a) { return a.fault.point() == point; });
}

std::optional<v1::FaultAction> FaultInjector::Take(v1::FaultPoint point) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(armed_.begin(), armed_.end(),
                         [point](const ArmedFault& a) { return a.fault.point() == point; });
  if (it == armed_.end()) return std::nullopt;
  v1::FaultAction action = it->fault.action();
  armed_.erase(it);
  return action;
}

std::optional<FaultInjector::BatchFault> FaultInjector::ReserveBlobs(size_t batch_size) {
  std::lock_guard lock(mu_);
  // The fault closest to its count fires first; the others count the blobs
  // the batch processed before it fired (all of them when none fires).
  auto fires = armed_.end();
  uint64_t fire_at = 0;
  for (auto it = armed_.begin(); it != armed_.end(); ++it) {
    if (it->fault.point() != v1::FAULT_REENCRYPT_AFTER_BLOBS) continue;
    uint64_t remaining =
        it->fault.after_blobs() > it->blobs_seen ? it->fault.after_blobs() - it->blobs_seen : 0;
    if (remaining <= batch_size && (fires == armed_.end() || remaining < fire_at)) {
      fires = it;
      fire_at = remaining;
    }
  }
  const uint64_t processed = fires == armed_.end() ? batch_size : fire_at;
  for (ArmedFault& a : armed_) {
    if (a.fault.point() == v1::FAULT_REENCRYPT_AFTER_BLOBS) a.blobs_seen += processed;
  }
  if (fires == armed_.end()) return std::nullopt;
  BatchFault out{static_cast<size_t>(fire_at), fires->fault.action()};
  armed_.erase(fires);
  return out;
}

}  // namespace hsmsim::emulator

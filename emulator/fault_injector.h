// FaultInjector: the faults armed in one hsmsim-unit (docs/reliability.md).
//
// A fault names a point in the handling of a request (FaultPoint) and what
// happens there (FaultAction). It fires once, at the first request that
// reaches its point, then disarms. Faults exist only in a unit started with
// --allow-fault-injection: they are armed by --fault at start or by
// InjectFaultRequest at run time. The firmware knows nothing of them; the
// RequestDispatcher consults the injector around the firmware and the
// persistence step.
//
// Thread-safety: every method may be called from any thread.
#ifndef HSMSIM_EMULATOR_FAULT_INJECTOR_H_
#define HSMSIM_EMULATOR_FAULT_INJECTOR_H_

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsmsim/v1/unit.pb.h"
#include "proto/wire/fault_names.h"

namespace hsmsim::emulator {

// Exit status of an injected crash: what a shell reports for SIGKILL (128+9).
inline constexpr int kExitInjectedCrash = 137;

// ParseFaultSpec parses "POINT:ACTION[:N]", e.g. "reencrypt-after-blobs:crash:5000"
// or "in-set-immediate:crash". POINT is before-persist, after-persist,
// reencrypt-after-blobs or in-set-immediate; ACTION is crash, hang,
// drop-connection or return-error (case and '-'/'_' do not matter, and the
// proto names such as FAULT_CRASH are accepted too). N is required for
// reencrypt-after-blobs and refused for the others. Returns INVALID_ARGUMENT
// (BAD_FAULT) naming the part that is wrong.
absl::StatusOr<v1::Fault> ParseFaultSpec(std::string_view spec);

// FaultSpec returns the "POINT:ACTION[:N]" form of `fault`.
using wire::FaultSpec;

// ValidateFault returns INVALID_ARGUMENT (BAD_FAULT) for an unspecified or
// unknown point or action, or `after_blobs` set on another point than
// REENCRYPT_AFTER_BLOBS.
absl::Status ValidateFault(const v1::Fault& fault);

class FaultInjector {
 public:
  // A REENCRYPT_AFTER_BLOBS fault that fires inside a batch: process the
  // first `blobs_before` blobs of the batch, then do `action`.
  struct BatchFault {
    size_t blobs_before = 0;
    v1::FaultAction action = v1::FAULT_ACTION_UNSPECIFIED;
  };

  FaultInjector() = default;
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // Arm adds `fault`. Returns ValidateFault's error, and arms nothing then.
  absl::Status Arm(const v1::Fault& fault);

  // Clear disarms every fault.
  void Clear();

  // Armed returns the faults still armed, in the order they were armed.
  std::vector<v1::Fault> Armed() const;

  // IsArmed is true when a fault at `point` is armed (it may still be cleared
  // or taken by another thread before Take).
  bool IsArmed(v1::FaultPoint point) const;

  // Take disarms the first fault armed at `point` and returns its action, or
  // nullopt when none is armed. Not for REENCRYPT_AFTER_BLOBS (see
  // ReserveBlobs).
  std::optional<v1::FaultAction> Take(v1::FaultPoint point);

  // ReserveBlobs accounts for a re-encryption batch of `batch_size` blobs.
  // When the first armed REENCRYPT_AFTER_BLOBS fault reaches its count inside
  // this batch (its count of blobs since arming would reach `after_blobs`),
  // it disarms and its position and action are returned; otherwise every
  // armed REENCRYPT_AFTER_BLOBS fault counts the whole batch and nullopt is
  // returned.
  std::optional<BatchFault> ReserveBlobs(size_t batch_size);

 private:
  struct ArmedFault {
    v1::Fault fault;
    uint64_t blobs_seen = 0;  // REENCRYPT_AFTER_BLOBS: blobs since arming
  };

  mutable std::mutex mu_;
  std::vector<ArmedFault> armed_;  // guarded by mu_
};

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_FAULT_INJECTOR_H_

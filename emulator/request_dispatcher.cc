#include "emulator/request_dispatcher.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/check.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "proto/wire/packed_blobs.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::emulator {

void DefaultPersistFailureHandler(const absl::Status& status) {
  spdlog::critical(
      "the unit state was written but could not be made durable; exiting so that a restart "
      "loads what the disk holds: {}",
      std::string(status.message()));
  spdlog::default_logger()->flush();
  // _Exit, not exit: other threads are still running and static destructors
  // must not race them. Nothing is left to flush: the state on disk is the
  // last good one.
  std::_Exit(kExitPersistFailed);
}

void DefaultCrashHandler() {
  // Nothing is flushed or shut down: the point is to look like kill -9.
  std::_Exit(kExitInjectedCrash);
}

namespace {

// BatchPrefix returns a copy of `request` (a ReencryptBatch or
// ReencryptFromOld) that holds only `blobs`, in the request's form: packed
// when it is packed, repeated otherwise.
v1::Request BatchPrefix(const v1::Request& request, absl::Span<const std::string_view> blobs) {
  v1::Request prefix;
  prefix.set_id(request.id());
  const bool from_old = request.body_case() == v1::Request::kReencryptFromOld;
  const bool packed =
      from_old ? request.reencrypt_from_old().has_packed() : request.reencrypt_batch().has_packed();
  auto fill = [&](auto* body) {
    if (packed) {
      wire::PackedBlobsWriter writer(*body->mutable_packed(), blobs.size(),
                                     wire::PackedSize(blobs));
      for (std::string_view b : blobs) writer.Add(b);
    } else {
      for (std::string_view b : blobs) body->add_blobs(b.data(), b.size());
    }
  };
  if (from_old) {
    fill(prefix.mutable_reencrypt_from_old());
  } else {
    fill(prefix.mutable_reencrypt_batch());
  }
  return prefix;
}

bool IsSetImmediate(const v1::Request& request) {
  if (request.body_case() != v1::Request::kSignedCommand) return false;
  v1::Command command;
  return command.ParseFromString(request.signed_command().command()) &&
         command.op_case() == v1::Command::kSetImmediate;
}

std::string PointName(v1::FaultPoint point) {
  v1::Fault fault;
  fault.set_point(point);
  fault.set_action(v1::FAULT_CRASH);
  std::string spec = FaultSpec(fault);
  return spec.substr(0, spec.find(':'));
}

}  // namespace

RequestDispatcher::RequestDispatcher(std::unique_ptr<firmware::CryptoUnit> unit, StateStore& store,
                                     PersistFailureHandler on_persist_failure)
    : unit_(std::move(unit)), store_(store), on_persist_failure_(std::move(on_persist_failure)) {}

void RequestDispatcher::EnableFaultInjection(FaultInjector& faults, crypto::Entropy& entropy,
                                             CrashHandler crash) {
  faults_ = &faults;
  entropy_ = &entropy;
  crash_ = std::move(crash);
}

DispatchOutcome RequestDispatcher::Serve(const v1::Request& request) {
  const v1::Request::BodyCase body = request.body_case();
  if (body == v1::Request::kInjectFault || body == v1::Request::kClearFaults) {
    return {ServeFaultRequest(request)};
  }
  if (firmware::CryptoUnit::IsReadOnly(request)) {
    if (faults_ != nullptr &&
        (body == v1::Request::kReencryptBatch || body == v1::Request::kReencryptFromOld) &&
        faults_->IsArmed(v1::FAULT_REENCRYPT_AFTER_BLOBS)) {
      return ServeReencryptWithFault(request);
    }
    std::shared_lock lock(mu_);
    return {unit_->HandleReadOnly(request)};
  }
  std::unique_lock lock(mu_);
  // The state before the command: what the disk holds, and what the unit
  // goes back to when the change does not reach the disk.
  const SecretBytes before = unit_->Snapshot();
  firmware::HandleResult result = unit_->Handle(request);
  if (!result.state_changed) return {std::move(result.response)};
  if (faults_ != nullptr) {
    if (auto action = faults_->Take(v1::FAULT_BEFORE_PERSIST)) {
      // Whatever the host is told, the change never reached the disk, so
      // the unit must not go on serving from it.
      RollBack(before);
      return Fire(request, v1::FAULT_BEFORE_PERSIST, *action);
    }
  }
  bool replaced = false;
  absl::Status saved = store_.Save(unit_->Snapshot(), &replaced);
  if (!saved.ok()) {
    std::string what;
    if (replaced) {
      on_persist_failure_(saved);
      what = "the unit saved its new state but could not make it durable";
    } else {
      RollBack(before);
      spdlog::error(
          "request {}: saving the unit state failed; the change was rolled back and the unit "
          "keeps its last saved state: {}",
          request.id(), std::string(saved.message()));
      what =
          "the unit could not save its state, so the command was not applied; the unit keeps "
          "its last saved state and refuses changes until its state directory can be written "
          "(free space, fix permissions)";
    }
    v1::Response failed;
    failed.set_id(request.id());
    *failed.mutable_status() =
        wire::ToWireStatus(Error(absl::StatusCode::kInternal, reason::kStateNotPersisted,
                                 StrCat(what, ": ", saved.message())));
    return {std::move(failed)};
  }
  if (faults_ != nullptr) {
    if (auto action = faults_->Take(v1::FAULT_AFTER_PERSIST)) {
      return Fire(request, v1::FAULT_AFTER_PERSIST, *action);
    }
    if (faults_->IsArmed(v1::FAULT_IN_SET_IMMEDIATE) && IsSetImmediate(request)) {
      if (auto action = faults_->Take(v1::FAULT_IN_SET_IMMEDIATE)) {
        return Fire(request, v1::FAULT_IN_SET_IMMEDIATE, *action);
      }
    }
  }
  return {std::move(result.response)};
}

void RequestDispatcher::RollBack(const SecretBytes& before) {
  auto restored =
      firmware::CryptoUnit::Restore(before, entropy_ != nullptr ? *entropy_ : store_.entropy());
  HSMSIM_CHECK(restored.ok());  // our own snapshot of a moment ago
  unit_ = std::move(restored).value();
}

DispatchOutcome RequestDispatcher::ServeReencryptWithFault(const v1::Request& request) {
  const bool from_old = request.body_case() == v1::Request::kReencryptFromOld;
  const auto& repeated =
      from_old ? request.reencrypt_from_old().blobs() : request.reencrypt_batch().blobs();
  const v1::PackedBlobs* packed = from_old ? wire::PackedOrNull(request.reencrypt_from_old())
                                           : wire::PackedOrNull(request.reencrypt_batch());
  const size_t count = packed != nullptr ? static_cast<size_t>(packed->sizes_size())
                                         : static_cast<size_t>(repeated.size());
  std::shared_lock lock(mu_);
  // A batch the firmware refuses as a whole processes no blob: it neither
  // counts nor fires. An empty batch is refused exactly when this one would
  // be for the state of the registers.
  if (count > firmware::kMaxBatchBlobs) return {unit_->HandleReadOnly(request)};
  auto views = wire::BatchBlobs(repeated, packed);
  if (!views.ok()) return {unit_->HandleReadOnly(request)};  // refused as malformed
  v1::Response refused = unit_->HandleReadOnly(BatchPrefix(request, {}));
  if (refused.status().code() != 0) return {std::move(refused)};
  std::optional<FaultInjector::BatchFault> fault = faults_->ReserveBlobs(count);
  if (!fault.has_value()) return {unit_->HandleReadOnly(request)};
  // The firmware re-encrypts the blobs before the fault's count; the fault
  // fires right after them, in the middle of the batch.
  v1::Response partial = unit_->HandleReadOnly(
      BatchPrefix(request, absl::MakeConstSpan(*views).first(fault->blobs_before)));
  spdlog::warn("request {}: {} of {} blobs re-encrypted before the fault ({})", request.id(),
               fault->blobs_before, count,
               partial.status().code() == 0 ? "ok" : partial.status().reason());
  lock.unlock();
  return Fire(request, v1::FAULT_REENCRYPT_AFTER_BLOBS, fault->action);
}

DispatchOutcome RequestDispatcher::Fire(const v1::Request& request, v1::FaultPoint point,
                                        v1::FaultAction action) {
  v1::Fault fault;
  fault.set_point(point);
  fault.set_action(action);
  const std::string name = FaultSpec(fault);
  spdlog::warn("request {}: injected fault {} fires", request.id(), name);
  DispatchOutcome outcome;
  outcome.response.set_id(request.id());
  switch (action) {
    case v1::FAULT_CRASH:
      spdlog::default_logger()->flush();
      crash_();
      // Only a test's crash handler returns: the host sees no answer.
      outcome.disposition = Disposition::kDropConnection;
      break;
    case v1::FAULT_HANG:
      outcome.disposition = Disposition::kHang;
      break;
    case v1::FAULT_DROP_CONNECTION:
      outcome.disposition = Disposition::kDropConnection;
      break;
    default:
      *outcome.response.mutable_status() = wire::ToWireStatus(
          Error(absl::StatusCode::kInternal, reason::kInjectedFault,
                StrCat("injected fault ", name, " fired at ", PointName(point),
                       point == v1::FAULT_BEFORE_PERSIST ? ": the change was not kept"
                       : point == v1::FAULT_REENCRYPT_AFTER_BLOBS
                           ? ": the batch was not completed"
                           : ": the change was persisted; read the unit's state")));
      break;
  }
  return outcome;
}

v1::Response RequestDispatcher::ServeFaultRequest(const v1::Request& request) {
  v1::Response response;
  response.set_id(request.id());
  if (faults_ == nullptr) {
    *response.mutable_status() = wire::ToWireStatus(
        Error(absl::StatusCode::kFailedPrecondition, reason::kFaultInjectionDisabled,
              "fault injection is disabled: this unit was started without "
              "--allow-fault-injection"));
    return response;
  }
  if (request.body_case() == v1::Request::kClearFaults) {
    faults_->Clear();
    spdlog::warn("request {}: every injected fault cleared", request.id());
  } else if (request.inject_fault().has_fault()) {
    // An InjectFaultRequest without a fault arms nothing: it lists.
    const v1::Fault& fault = request.inject_fault().fault();
    if (absl::Status armed = faults_->Arm(fault); !armed.ok()) {
      *response.mutable_status() = wire::ToWireStatus(armed);
      return response;
    }
    spdlog::warn("request {}: fault {} armed", request.id(), FaultSpec(fault));
  }
  *response.mutable_status() = wire::ToWireStatus(absl::OkStatus());
  for (const v1::Fault& f : faults_->Armed()) *response.mutable_faults()->add_armed() = f;
  return response;
}

v1::GetInfoResponse RequestDispatcher::Info() const {
  std::shared_lock lock(mu_);
  return unit_->Info();
}

}  // namespace hsmsim::emulator

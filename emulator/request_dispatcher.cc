#include "emulator/request_dispatcher.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>

#include "common/status.h"

namespace hsmsim::emulator {

void DefaultPersistFailureHandler(const absl::Status& status) {
  spdlog::critical(
      "persisting the unit state failed, exiting without replying so that a restart loads the "
      "last good state: {}",
      std::string(status.message()));
  spdlog::default_logger()->flush();
  // _Exit, not exit: other threads are still running and static destructors
  // must not race them. Nothing is left to flush: the state on disk is the
  // last good one.
  std::_Exit(kExitPersistFailed);
}

RequestDispatcher::RequestDispatcher(std::unique_ptr<firmware::CryptoUnit> unit, StateStore& store,
                                     PersistFailureHandler on_persist_failure)
    : unit_(std::move(unit)), store_(store), on_persist_failure_(std::move(on_persist_failure)) {}

v1::Response RequestDispatcher::Dispatch(const v1::Request& request) {
  if (firmware::CryptoUnit::IsReadOnly(request)) {
    std::shared_lock lock(mu_);
    return unit_->HandleReadOnly(request);
  }
  std::unique_lock lock(mu_);
  firmware::HandleResult result = unit_->Handle(request);
  if (result.state_changed) {
    absl::Status saved = store_.Save(unit_->Snapshot());
    if (!saved.ok()) {
      on_persist_failure_(saved);
      v1::Response failed;
      failed.set_id(request.id());
      *failed.mutable_status() = firmware::ToWireStatus(
          Error(absl::StatusCode::kInternal, "STATE_NOT_PERSISTED", std::string(saved.message())));
      return failed;
    }
  }
  return std::move(result.response);
}

v1::GetInfoResponse RequestDispatcher::Info() const {
  std::shared_lock lock(mu_);
  return unit_->Info();
}

}  // namespace hsmsim::emulator

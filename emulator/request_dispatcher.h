// RequestDispatcher: runs one decoded request against the CryptoUnit with the
// right lock, and persists the state before a state-changing request's
// response may be sent. No I/O besides the state store; no Asio.
#ifndef HSMSIM_EMULATOR_REQUEST_DISPATCHER_H_
#define HSMSIM_EMULATOR_REQUEST_DISPATCHER_H_

#include <functional>
#include <memory>
#include <shared_mutex>

#include "absl/status/status.h"
#include "emulator/state_store.h"
#include "firmware/crypto_unit.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::emulator {

// Called when persisting a changed state failed. It must not return
// normally in production (the default logs and exits the process); see
// RequestDispatcher::Dispatch.
using PersistFailureHandler = std::function<void(const absl::Status&)>;

// DefaultPersistFailureHandler logs the failure at critical level (the status
// never holds key bytes) and ends the process with kExitPersistFailed.
void DefaultPersistFailureHandler(const absl::Status& status);

inline constexpr int kExitPersistFailed = 3;

// RequestDispatcher owns the unit and serializes access to it: read-only
// requests run concurrently under a shared lock, the rest one at a time under
// the exclusive lock. Thread-safe. `store` must outlive the dispatcher.
class RequestDispatcher {
 public:
  RequestDispatcher(std::unique_ptr<firmware::CryptoUnit> unit, StateStore& store,
                    PersistFailureHandler on_persist_failure = DefaultPersistFailureHandler);

  // Dispatch serves `request` and returns its response (errors are in the
  // response's status). Blocks: call it from a worker thread.
  //
  // When the request changed the nonvolatile state, the new state is saved
  // before this returns. If saving fails the handler is called and, should it
  // return (tests only), the response is replaced by an INTERNAL error: the
  // in-memory unit is then ahead of the disk, and only a restart (which loads
  // the last good state) makes the two agree again. Answering success would
  // claim a change that a restart silently undoes.
  v1::Response Dispatch(const v1::Request& request);

  // Info returns the unit's public state (takes the shared lock).
  v1::GetInfoResponse Info() const;

 private:
  mutable std::shared_mutex mu_;
  std::unique_ptr<firmware::CryptoUnit> unit_;  // guarded by mu_
  StateStore& store_;                           // Save() under exclusive mu_
  PersistFailureHandler on_persist_failure_;
};

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_REQUEST_DISPATCHER_H_

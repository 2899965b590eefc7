// RequestDispatcher: runs one decoded request against the CryptoUnit with the
// right lock, and persists the state before a state-changing request's
// response may be sent. It also serves the fault injection requests and fires
// the armed faults (FaultInjector) around the firmware. No I/O besides the
// state store; no Asio.
#ifndef HSMSIM_EMULATOR_REQUEST_DISPATCHER_H_
#define HSMSIM_EMULATOR_REQUEST_DISPATCHER_H_

#include <functional>
#include <memory>
#include <shared_mutex>

#include "absl/status/status.h"
#include "crypto/entropy.h"
#include "emulator/fault_injector.h"
#include "emulator/state_store.h"
#include "firmware/crypto_unit.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::emulator {

// Called when a changed state replaced unit.state but syncing the state
// directory after it failed: whether the change survives a power loss is
// unknown. It must not return normally in production (the default logs and
// exits the process); see RequestDispatcher::Serve.
using PersistFailureHandler = std::function<void(const absl::Status&)>;

// DefaultPersistFailureHandler logs the failure at critical level (the status
// never holds key bytes) and ends the process with kExitPersistFailed.
void DefaultPersistFailureHandler(const absl::Status& status);

inline constexpr int kExitPersistFailed = 3;

// What the session does with a request once dispatched.
enum class Disposition {
  kReply,           // send `response`
  kHang,            // never answer this request; keep the connection open
  kDropConnection,  // close the connection without answering
};

struct DispatchOutcome {
  v1::Response response;
  Disposition disposition = Disposition::kReply;
};

// Called when an injected CRASH fires. The default ends the process at once
// with kExitInjectedCrash: no reply, no flush, no clean shutdown.
using CrashHandler = std::function<void()>;
void DefaultCrashHandler();

// RequestDispatcher owns the unit and serializes access to it: read-only
// requests run concurrently under a shared lock, the rest one at a time under
// the exclusive lock. Thread-safe. `store` must outlive the dispatcher.
class RequestDispatcher {
 public:
  RequestDispatcher(std::unique_ptr<firmware::CryptoUnit> unit, StateStore& store,
                    PersistFailureHandler on_persist_failure = DefaultPersistFailureHandler);

  // EnableFaultInjection makes the dispatcher serve InjectFaultRequest and
  // ClearFaultsRequest and fire the faults armed in `faults`. Without it those
  // requests are refused with FAILED_PRECONDITION (FAULT_INJECTION_DISABLED).
  // `entropy` (the unit's) rebuilds the unit when a BEFORE_PERSIST fault
  // rolls a change back. Call before serving; both must outlive the
  // dispatcher.
  void EnableFaultInjection(FaultInjector& faults, crypto::Entropy& entropy,
                            CrashHandler crash = DefaultCrashHandler);

  // Serve serves `request` and says what to do with the response (errors are
  // in the response's status). Blocks: call it from a worker thread.
  //
  // When the request changed the nonvolatile state, the new state is saved
  // before this returns. If writing it fails before unit.state is replaced
  // (a full disk, a read-only or broken state directory), the change is
  // rolled back in memory, the response is INTERNAL (STATE_NOT_PERSISTED)
  // with the file system's words, and the unit stays up with its last saved
  // state: read-only requests go on, and every change is refused the same
  // way until a save succeeds again. If only the directory sync after the
  // rename fails, the handler is called and, should it return (tests only),
  // the response is the same error: answering success would claim a change
  // that a power loss may undo.
  //
  // Armed faults (docs/reliability.md): BEFORE_PERSIST fires after the
  // firmware applied a state change and before it is saved; the change is
  // then rolled back in memory (restored from the state before the command),
  // so whatever the action, the unit's memory and disk keep the old state.
  // AFTER_PERSIST and IN_SET_IMMEDIATE fire after the save: the change is
  // kept. REENCRYPT_AFTER_BLOBS hands the firmware the blobs before the
  // fault's count, then fires. CRASH calls the crash handler; HANG and
  // DROP_CONNECTION are returned as the disposition; RETURN_ERROR answers
  // INTERNAL (INJECTED_FAULT).
  DispatchOutcome Serve(const v1::Request& request);

  // Dispatch is Serve's response alone (a HANG or DROP_CONNECTION outcome
  // gives a response with only the id set).
  v1::Response Dispatch(const v1::Request& request) { return Serve(request).response; }

  // Info returns the unit's public state (takes the shared lock).
  v1::GetInfoResponse Info() const;

 private:
  v1::Response ServeFaultRequest(const v1::Request& request);
  DispatchOutcome ServeReencryptWithFault(const v1::Request& request);
  // RollBack makes the unit `before` again. REQUIRES: mu_ held exclusively.
  void RollBack(const SecretBytes& before);
  // Fire performs `action` for `request` at `point`.
  DispatchOutcome Fire(const v1::Request& request, v1::FaultPoint point, v1::FaultAction action);

  mutable std::shared_mutex mu_;
  std::unique_ptr<firmware::CryptoUnit> unit_;  // guarded by mu_
  StateStore& store_;                           // Save() under exclusive mu_
  PersistFailureHandler on_persist_failure_;
  FaultInjector* faults_ = nullptr;     // null: fault injection disabled
  crypto::Entropy* entropy_ = nullptr;  // set with faults_
  CrashHandler crash_;
};

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_REQUEST_DISPATCHER_H_

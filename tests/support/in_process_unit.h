// InProcessUnit: a crypto unit inside the test process, behind the host's
// UnitChannel, for tests of the rotation engine and everything else that
// takes a channel (tests only).
//
// It is the emulator's RequestDispatcher over a firmware CryptoUnit whose
// state file lives in an in-memory file system, so it persists exactly as
// hsmsim-unit does (the state is saved before a state-changing reply) and
// fault injection is enabled as with --allow-fault-injection. Requests are
// served on a small pool of threads, so CallAsync is asynchronous and
// answers may come out of order, as with UnitClient. The channel keeps
// UnitClient's contract: ids chosen by the channel, one callback per call,
// transport errors that name the unit (UNIT_UNREACHABLE, UNIT_TIMEOUT), and
// retries for idempotent requests only.
//
// Faults a test can cause:
//   Crash()            the unit stops answering; requests in flight and new
//                      ones fail UNIT_UNREACHABLE; what was not persisted is
//                      lost. Restart() loads the in-memory state file, as a
//                      real restart would (armed faults are forgotten).
//   Hang() / Release() requests are held unanswered (the channel's timeout
//                      turns them into UNIT_TIMEOUT); Release serves those
//                      still held.
//   DropNextReplies(n) the next n requests (of one kind, if asked) are applied (and persisted) but
//                      their replies are lost: UNIT_UNREACHABLE.
//   ArmFault(spec)     a dispatcher fault, as `--fault POINT:ACTION[:N]`
//                      (before-persist, after-persist, reencrypt-after-blobs,
//                      in-set-immediate; crash, hang, drop-connection,
//                      return-error). An injected crash is Crash().
//   FailNextStateWrites(n)
//                      the next n writes of the state file fail (a full
//                      disk): the unit stops as hsmsim-unit does when it
//                      cannot persist (Crash()), keeping the previous state.
//
// LoadPersisted() is a test's view of the unit's disk: the persisted state
// restored into a CryptoUnit of its own, whether the unit is up, crashed or
// hung.
//
// Thread-safety: every method may be called from any thread.
#ifndef HSMSIM_TESTS_SUPPORT_IN_PROCESS_UNIT_H_
#define HSMSIM_TESTS_SUPPORT_IN_PROCESS_UNIT_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "host/unit_channel.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::firmware {
class CryptoUnit;
}  // namespace hsmsim::firmware

namespace hsmsim::testing {

struct InProcessUnitOptions {
  // Time a request may go unanswered before UNIT_TIMEOUT (UnitClient's
  // timeout for one attempt).
  std::chrono::milliseconds timeout{500};
  // Attempts of an idempotent request (UnitClient's idempotent_attempts).
  int idempotent_attempts = 3;
  // Threads serving requests.
  int workers = 2;
};

class InProcessUnit final : public host::UnitChannel {
 public:
  // Create starts a blank unit (imprint mode, a random unit id) named `name`.
  static absl::StatusOr<std::unique_ptr<InProcessUnit>> Create(std::string name,
                                                               InProcessUnitOptions options = {});
  ~InProcessUnit() override;
  InProcessUnit(const InProcessUnit&) = delete;
  InProcessUnit& operator=(const InProcessUnit&) = delete;

  const std::string& name() const override { return name_; }
  void CallAsync(v1::Request request, Callback done) override;

  // Crash stops the unit as kill -9 would. No-op when already down.
  void Crash();
  // Restart brings a crashed unit back from its persisted state. Returns the
  // loader's error (a unit never starts blank over a state file).
  absl::Status Restart();
  bool crashed() const;

  void Hang();
  void Release();
  // DropNextReplies loses the replies of the next `n` requests of kind
  // `only` (any kind when BODY_NOT_SET), after they were applied.
  void DropNextReplies(int n, v1::Request::BodyCase only = v1::Request::BODY_NOT_SET);

  // ArmFault arms "POINT:ACTION[:N]" in the unit's dispatcher. Returns
  // INVALID_ARGUMENT (BAD_FAULT) for a bad spec, FAILED_PRECONDITION
  // (UNIT_DOWN) when the unit is crashed.
  absl::Status ArmFault(std::string_view spec);

  // FailNextStateWrites makes the next `n` writes of the unit's state file
  // fail (0: none). A failed write stops the unit as a failed persist stops
  // hsmsim-unit: the request gets no answer and Restart() loads the state
  // saved before it.
  void FailNextStateWrites(int n);

  // LoadPersisted returns what a restart would bring back: the persisted
  // state restored into a new CryptoUnit that serves nothing (for checks
  // that must not go through faults). Returns the loader's error.
  absl::StatusOr<std::unique_ptr<firmware::CryptoUnit>> LoadPersisted() const;
  // state_writes counts the unit's completed state file writes: while it
  // stays the same, LoadPersisted gives the same state.
  int64_t state_writes() const;

  // requests_served counts requests the dispatcher served (any outcome).
  int64_t requests_served() const;

 private:
  struct Core;
  struct PendingCall;
  InProcessUnit(std::string name, InProcessUnitOptions options);
  absl::Status Boot();  // REQUIRES: mu_ held by the caller or no thread yet
  void Submit(std::shared_ptr<PendingCall> call);
  void Serve(std::shared_ptr<PendingCall> call);
  void WorkerLoop();
  void TimerLoop();
  // Finish delivers `result` or, for a transport error of an idempotent
  // request with attempts left, submits it again.
  void Finish(std::shared_ptr<PendingCall> call, absl::StatusOr<v1::Response> result);
  void CrashLocked(std::vector<std::shared_ptr<PendingCall>>& to_fail);
  absl::Status Unreachable(std::string_view what) const;

  const std::string name_;
  const InProcessUnitOptions options_;
  class MemoryFileSystem;
  std::unique_ptr<MemoryFileSystem> fs_;  // survives crashes: the unit's disk

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable timer_cv_;
  std::shared_ptr<Core> core_;  // null while crashed
  uint64_t generation_ = 0;     // bumped by every crash
  bool hung_ = false;
  bool stopping_ = false;
  int drop_replies_ = 0;
  v1::Request::BodyCase drop_only_ = v1::Request::BODY_NOT_SET;
  uint64_t next_id_ = 1;
  int64_t served_ = 0;
  std::deque<std::shared_ptr<PendingCall>> queue_;
  std::vector<std::shared_ptr<PendingCall>> held_;  // hung: answered only by timeout or Release
  std::vector<std::thread> threads_;
};

}  // namespace hsmsim::testing

#endif  // HSMSIM_TESTS_SUPPORT_IN_PROCESS_UNIT_H_

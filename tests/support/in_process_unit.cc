#include "tests/support/in_process_unit.h"

#include <map>
#include <optional>
#include <utility>

#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "emulator/fault_injector.h"
#include "emulator/request_dispatcher.h"
#include "emulator/state_file_system.h"
#include "emulator/state_store.h"
#include "firmware/crypto_unit.h"

namespace hsmsim::testing {
namespace {

constexpr char kStateDir[] = "/unit";
using Clock = std::chrono::steady_clock;

}  // namespace

// The unit's disk: files in a map, kept across crashes. Thread-safe.
class InProcessUnit::MemoryFileSystem final : public emulator::StateFileSystem {
 public:
  absl::Status CreateDirectories(const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<bool> FileExists(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    return files_.count(path) > 0;
  }
  absl::StatusOr<SecretBytes> ReadFile(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return Error(absl::StatusCode::kNotFound, "FILE_NOT_FOUND", path);
    return SecretBytes(it->second.begin(), it->second.end());
  }
  absl::Status CreateFileExclusive(const std::string& path, absl::Span<const uint8_t> data,
                                   mode_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (files_.count(path) > 0) {
      return Error(absl::StatusCode::kAlreadyExists, "FILE_EXISTS", path);
    }
    files_[path] = std::string(data.begin(), data.end());
    return absl::OkStatus();
  }
  absl::Status WriteFileSynced(const std::string& path, absl::Span<const uint8_t> data,
                               mode_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_writes_ > 0) {
      --fail_writes_;
      return Error(absl::StatusCode::kResourceExhausted, "NO_SPACE",
                   StrCat(path, ": no space left on device (test)"));
    }
    files_[path] = std::string(data.begin(), data.end());
    return absl::OkStatus();
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(from);
    if (it == files_.end()) return Error(absl::StatusCode::kNotFound, "FILE_NOT_FOUND", from);
    files_[to] = std::move(it->second);
    files_.erase(from);
    ++renames_;
    return absl::OkStatus();
  }
  absl::Status SyncDirectory(const std::string&) override { return absl::OkStatus(); }
  int64_t renames() {
    std::lock_guard<std::mutex> lock(mu_);
    return renames_;
  }
  void FailNextWrites(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_writes_ = n;
  }
  absl::Status RemoveFile(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(path);
    return absl::OkStatus();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> files_;  // guarded by mu_
  int fail_writes_ = 0;                       // guarded by mu_
  int64_t renames_ = 0;                       // guarded by mu_
};

// One life of the unit, from a (re)start to a crash. Members are destroyed
// in reverse: the dispatcher before what it refers to.
struct InProcessUnit::Core {
  std::unique_ptr<emulator::StateStore> store;
  emulator::FaultInjector faults;
  std::unique_ptr<emulator::RequestDispatcher> dispatcher;
};

struct InProcessUnit::PendingCall {
  v1::Request request;
  Callback done;
  int attempts_left = 1;
  bool idempotent = false;
  bool held_by_hang = false;  // Hang(): served again on Release
  Clock::time_point deadline;
};

absl::StatusOr<std::unique_ptr<InProcessUnit>> InProcessUnit::Create(std::string name,
                                                                     InProcessUnitOptions options) {
  std::unique_ptr<InProcessUnit> unit(new InProcessUnit(std::move(name), options));
  HSMSIM_RETURN_IF_ERROR(unit->Boot());
  for (int i = 0; i < std::max(1, options.workers); ++i) {
    unit->threads_.emplace_back([u = unit.get()] { u->WorkerLoop(); });
  }
  unit->threads_.emplace_back([u = unit.get()] { u->TimerLoop(); });
  return unit;
}

InProcessUnit::InProcessUnit(std::string name, InProcessUnitOptions options)
    : name_(std::move(name)), options_(options), fs_(std::make_unique<MemoryFileSystem>()) {}

InProcessUnit::~InProcessUnit() {
  std::vector<std::shared_ptr<PendingCall>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    left.assign(queue_.begin(), queue_.end());
    left.insert(left.end(), held_.begin(), held_.end());
    queue_.clear();
    held_.clear();
  }
  work_cv_.notify_all();
  timer_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  for (auto& call : left) {
    call->done(Error(absl::StatusCode::kCancelled, "CLIENT_CLOSED",
                     StrCat("unit ", name_, ": the channel closed before the unit answered")));
  }
}

absl::Status InProcessUnit::Boot() {
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  auto core = std::make_shared<Core>();
  HSMSIM_ASSIGN_OR_RETURN(core->store, emulator::StateStore::Open(kStateDir, *fs_, entropy));
  HSMSIM_ASSIGN_OR_RETURN(auto unit, emulator::LoadOrCreateUnit(*core->store, entropy));
  // A unit that cannot persist stops (hsmsim-unit exits): here it crashes.
  core->dispatcher = std::make_unique<emulator::RequestDispatcher>(
      std::move(unit), *core->store, [this](const absl::Status&) { Crash(); });
  core->dispatcher->EnableFaultInjection(core->faults, entropy, [this] { Crash(); });
  core_ = std::move(core);
  return absl::OkStatus();
}

absl::Status InProcessUnit::Unreachable(std::string_view what) const {
  return Error(absl::StatusCode::kUnavailable, host::kUnitUnreachable,
               StrCat("unit ", name_, " (in process): ", what));
}

void InProcessUnit::CallAsync(v1::Request request, Callback done) {
  auto call = std::make_shared<PendingCall>();
  call->idempotent = host::IsIdempotentRequest(request);
  call->attempts_left = call->idempotent ? std::max(1, options_.idempotent_attempts) : 1;
  call->request = std::move(request);
  call->done = std::move(done);
  Submit(std::move(call));
}

void InProcessUnit::Submit(std::shared_ptr<PendingCall> call) {
  absl::Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    call->request.set_id(next_id_++);
    if (stopping_) {
      refused = Error(absl::StatusCode::kCancelled, "CLIENT_CLOSED",
                      StrCat("unit ", name_, ": the channel is closing"));
    } else if (core_ == nullptr) {
      refused = Unreachable("connection refused");
    } else if (hung_) {
      call->held_by_hang = true;
      call->deadline = Clock::now() + options_.timeout;
      held_.push_back(std::move(call));
      timer_cv_.notify_all();
      return;
    } else {
      queue_.push_back(std::move(call));
      work_cv_.notify_one();
      return;
    }
  }
  Finish(std::move(call), refused);
}

void InProcessUnit::WorkerLoop() {
  while (true) {
    std::shared_ptr<PendingCall> call;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      call = std::move(queue_.front());
      queue_.pop_front();
    }
    Serve(std::move(call));
  }
}

void InProcessUnit::Serve(std::shared_ptr<PendingCall> call) {
  std::shared_ptr<Core> core;
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    core = core_;
    generation = generation_;
  }
  if (core == nullptr) {
    Finish(std::move(call), Unreachable("connection lost: the unit crashed"));
    return;
  }
  emulator::DispatchOutcome outcome = core->dispatcher->Serve(call->request);
  absl::StatusOr<v1::Response> result = std::move(outcome.response);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++served_;
    if (generation != generation_) {
      result = Unreachable("connection lost: the unit crashed");
    } else if (outcome.disposition == emulator::Disposition::kHang) {
      call->held_by_hang = false;
      call->deadline = Clock::now() + options_.timeout;
      held_.push_back(std::move(call));
      timer_cv_.notify_all();
      return;
    } else if (outcome.disposition == emulator::Disposition::kDropConnection) {
      result = Unreachable("connection lost: the unit closed the connection");
    } else if (drop_replies_ > 0 && (drop_only_ == v1::Request::BODY_NOT_SET ||
                                     drop_only_ == call->request.body_case())) {
      --drop_replies_;
      result = Unreachable("connection lost: the reply was lost");
    }
  }
  Finish(std::move(call), std::move(result));
}

void InProcessUnit::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    std::optional<Clock::time_point> earliest;
    for (const auto& call : held_) {
      if (!earliest.has_value() || call->deadline < *earliest) earliest = call->deadline;
    }
    if (earliest.has_value()) {
      timer_cv_.wait_until(lock, *earliest);
    } else {
      timer_cv_.wait(lock);
    }
    if (stopping_) return;
    std::vector<std::shared_ptr<PendingCall>> expired;
    const auto now = Clock::now();
    for (auto it = held_.begin(); it != held_.end();) {
      if ((*it)->deadline <= now) {
        expired.push_back(std::move(*it));
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    if (expired.empty()) continue;
    lock.unlock();
    for (auto& call : expired) {
      Finish(std::move(call), Error(absl::StatusCode::kDeadlineExceeded, host::kUnitTimeout,
                                    StrCat("unit ", name_, " (in process): no response within ",
                                           options_.timeout.count(), " ms")));
    }
    lock.lock();
  }
}

void InProcessUnit::Finish(std::shared_ptr<PendingCall> call, absl::StatusOr<v1::Response> result) {
  const bool transport = !result.ok() && host::IsUnreachable(result.status());
  if (transport && call->idempotent && --call->attempts_left > 0) {
    Submit(std::move(call));
    return;
  }
  call->done(std::move(result));
}

void InProcessUnit::CrashLocked(std::vector<std::shared_ptr<PendingCall>>& to_fail) {
  if (core_ == nullptr) return;
  core_.reset();
  ++generation_;
  hung_ = false;
  drop_replies_ = 0;
  to_fail.insert(to_fail.end(), queue_.begin(), queue_.end());
  to_fail.insert(to_fail.end(), held_.begin(), held_.end());
  queue_.clear();
  held_.clear();
}

void InProcessUnit::Crash() {
  std::vector<std::shared_ptr<PendingCall>> to_fail;
  {
    std::lock_guard<std::mutex> lock(mu_);
    CrashLocked(to_fail);
  }
  for (auto& call : to_fail) {
    Finish(std::move(call), Unreachable("connection lost: the unit crashed"));
  }
}

absl::Status InProcessUnit::Restart() {
  std::lock_guard<std::mutex> lock(mu_);
  if (core_ != nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, "UNIT_RUNNING",
                 StrCat("unit ", name_, " is running; crash it first"));
  }
  return Boot();
}

bool InProcessUnit::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return core_ == nullptr;
}

void InProcessUnit::Hang() {
  std::lock_guard<std::mutex> lock(mu_);
  hung_ = true;
}

void InProcessUnit::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  hung_ = false;
  for (auto it = held_.begin(); it != held_.end();) {
    if ((*it)->held_by_hang) {
      queue_.push_back(std::move(*it));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  work_cv_.notify_all();
}

void InProcessUnit::DropNextReplies(int n, v1::Request::BodyCase only) {
  std::lock_guard<std::mutex> lock(mu_);
  drop_replies_ = n;
  drop_only_ = only;
}

absl::Status InProcessUnit::ArmFault(std::string_view spec) {
  HSMSIM_ASSIGN_OR_RETURN(v1::Fault fault, emulator::ParseFaultSpec(spec));
  std::lock_guard<std::mutex> lock(mu_);
  if (core_ == nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, "UNIT_DOWN",
                 StrCat("unit ", name_, " is crashed"));
  }
  return core_->faults.Arm(fault);
}

void InProcessUnit::FailNextStateWrites(int n) { fs_->FailNextWrites(n); }

absl::StatusOr<std::unique_ptr<firmware::CryptoUnit>> InProcessUnit::LoadPersisted() const {
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  HSMSIM_ASSIGN_OR_RETURN(auto store, emulator::StateStore::Open(kStateDir, *fs_, entropy));
  HSMSIM_ASSIGN_OR_RETURN(std::optional<SecretBytes> snapshot, store->Load());
  if (!snapshot.has_value()) {
    return Error(absl::StatusCode::kNotFound, "NO_STATE", StrCat("unit ", name_, " has no state"));
  }
  return firmware::CryptoUnit::Restore(*snapshot, entropy);
}

int64_t InProcessUnit::state_writes() const { return fs_->renames(); }

int64_t InProcessUnit::requests_served() const {
  std::lock_guard<std::mutex> lock(mu_);
  return served_;
}

}  // namespace hsmsim::testing

#include "emulator/request_dispatcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "common/status.h"
#include "crypto/entropy.h"
#include "emulator/state_file_system.h"
#include "emulator/state_store.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::test_support::TempDir;

// RenameFailingFileSystem fails every rename once `fail` is set, and every
// directory sync once `fail_sync` is set.
class RenameFailingFileSystem final : public StateFileSystem {
 public:
  bool fail = false;
  bool fail_sync = false;
  absl::Status CreateDirectories(const std::string& d) override {
    return real_.CreateDirectories(d);
  }
  absl::StatusOr<bool> FileExists(const std::string& p) override { return real_.FileExists(p); }
  absl::StatusOr<SecretBytes> ReadFile(const std::string& p) override { return real_.ReadFile(p); }
  absl::Status CreateFileExclusive(const std::string& p, absl::Span<const uint8_t> d,
                                   mode_t m) override {
    return real_.CreateFileExclusive(p, d, m);
  }
  absl::Status WriteFileSynced(const std::string& p, absl::Span<const uint8_t> d,
                               mode_t m) override {
    return real_.WriteFileSynced(p, d, m);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (fail) return Error(absl::StatusCode::kInternal, "FILE_IO_FAILED", from + ": rename failed");
    return real_.Rename(from, to);
  }
  absl::Status SyncDirectory(const std::string& d) override {
    if (fail_sync)
      return Error(absl::StatusCode::kInternal, "FILE_IO_FAILED", d + ": fsync failed");
    return real_.SyncDirectory(d);
  }
  absl::Status RemoveFile(const std::string& p) override { return real_.RemoveFile(p); }

 private:
  PosixStateFileSystem real_;
};

v1::Request AssignInstance(const v1::GetInfoResponse& info, const std::string& instance) {
  v1::Command command;
  command.set_unit_id(info.unit_id());
  command.set_transaction_counter(info.transaction_counter());
  command.mutable_assign_instance()->set_instance(instance);
  v1::Request request;
  request.set_id(11);
  request.mutable_signed_command()->set_command(command.SerializeAsString());
  return request;
}

class RequestDispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = StateStore::Open(dir_.Join("state"), fs_, entropy_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    auto unit = LoadOrCreateUnit(*store_, entropy_);
    ASSERT_TRUE(unit.ok()) << unit.status();
    dispatcher_.emplace(std::move(unit).value(), *store_, [this](const absl::Status& status) {
      persist_failures_.push_back(status);
    });
  }

  std::string InstanceOnDisk() {
    auto unit = LoadOrCreateUnit(*store_, entropy_);
    EXPECT_TRUE(unit.ok()) << unit.status();
    return unit.ok() ? (*unit)->Info().instance() : "";
  }

  TempDir dir_;
  RenameFailingFileSystem fs_;
  crypto::SeededEntropy entropy_{7};
  std::unique_ptr<StateStore> store_;
  std::optional<RequestDispatcher> dispatcher_;
  std::vector<absl::Status> persist_failures_;
};

TEST_F(RequestDispatcherTest, StateChangeIsPersistedBeforeTheResponse) {
  v1::Response response = dispatcher_->Dispatch(AssignInstance(dispatcher_->Info(), "inst-a"));
  ASSERT_EQ(response.status().code(), 0) << response.status().message();
  EXPECT_EQ(response.id(), 11u);
  EXPECT_EQ(InstanceOnDisk(), "inst-a");
  EXPECT_TRUE(persist_failures_.empty());
}

TEST_F(RequestDispatcherTest, AFailedWriteIsAnsweredRolledBackAndTheUnitStaysUp) {
  const v1::GetInfoResponse before = dispatcher_->Info();
  fs_.fail = true;  // as a full disk: the new state never replaces unit.state
  v1::Response response = dispatcher_->Dispatch(AssignInstance(before, "inst-b"));
  EXPECT_TRUE(persist_failures_.empty()) << "the unit does not exit: nothing is uncertain";
  EXPECT_EQ(response.id(), 11u);
  EXPECT_EQ(response.status().code(), static_cast<int>(absl::StatusCode::kInternal));
  EXPECT_EQ(response.status().reason(), "STATE_NOT_PERSISTED");
  EXPECT_THAT(response.status().message(),
              ::testing::AllOf(::testing::HasSubstr("the command was not applied"),
                               ::testing::HasSubstr("unit.state.tmp: rename failed")));
  // Memory and disk both keep the last saved state, counter included.
  EXPECT_EQ(dispatcher_->Info().SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(InstanceOnDisk(), "");
  // Every change is refused the same way while the disk stays broken.
  response = dispatcher_->Dispatch(AssignInstance(before, "inst-b"));
  EXPECT_EQ(response.status().reason(), "STATE_NOT_PERSISTED");
  // Once it can be written, the same command (same counter) is applied.
  fs_.fail = false;
  response = dispatcher_->Dispatch(AssignInstance(before, "inst-b"));
  ASSERT_EQ(response.status().code(), 0) << response.status().message();
  EXPECT_EQ(InstanceOnDisk(), "inst-b");
  EXPECT_EQ(dispatcher_->Info().transaction_counter(), before.transaction_counter() + 1);
}

TEST_F(RequestDispatcherTest, AFailedDirectorySyncCallsTheHandlerAndNeverAnswersSuccess) {
  fs_.fail_sync = true;  // unit.state replaced, its durability unknown
  v1::Response response = dispatcher_->Dispatch(AssignInstance(dispatcher_->Info(), "inst-d"));
  fs_.fail_sync = false;
  ASSERT_EQ(persist_failures_.size(), 1u);
  EXPECT_THAT(std::string(persist_failures_[0].message()), ::testing::HasSubstr("fsync failed"));
  EXPECT_EQ(response.status().code(), static_cast<int>(absl::StatusCode::kInternal));
  EXPECT_EQ(response.status().reason(), "STATE_NOT_PERSISTED");
}

TEST_F(RequestDispatcherTest, ReadOnlyRequestsDoNotPersist) {
  fs_.fail = true;  // any save would fail
  v1::Request request;
  request.set_id(3);
  request.mutable_get_info();
  v1::Response response = dispatcher_->Dispatch(request);
  EXPECT_EQ(response.status().code(), 0);
  EXPECT_TRUE(response.has_get_info());
  EXPECT_TRUE(persist_failures_.empty());
}

TEST_F(RequestDispatcherTest, RefusedCommandDoesNotPersist) {
  fs_.fail = true;
  v1::GetInfoResponse info = dispatcher_->Info();
  info.set_transaction_counter(info.transaction_counter() + 5);  // wrong counter
  v1::Response response = dispatcher_->Dispatch(AssignInstance(info, "inst-c"));
  EXPECT_NE(response.status().code(), 0);
  EXPECT_TRUE(persist_failures_.empty());
}

}  // namespace
}  // namespace hsmsim::emulator

// PinnedUnitChannel in front of in-process units: a unit that answers with
// another unit id than the pinned one gets nothing but GetInfo, and every
// request fails UNIT_ID_MISMATCH naming both ids (issue 11, input 5).
#include "host/pinned_unit_channel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/hex.h"
#include "common/status.h"
#include "host/signed_command.h"
#include "tests/support/in_process_unit.h"

namespace hsmsim::host {
namespace {

using ::hsmsim::testing::InProcessUnit;
using ::testing::HasSubstr;

// Forward passes every call to the channel `target` points at, which a test
// may switch (a unit replaced behind the same address), and can fail the
// next call as a lost connection.
class Forward final : public UnitChannel {
 public:
  explicit Forward(std::atomic<UnitChannel*>* target) : target_(target) {}
  const std::string& name() const override { return name_; }
  void CallAsync(v1::Request request, Callback done) override {
    if (fail_next_.exchange(false)) {
      done(Error(absl::StatusCode::kUnavailable, "UNIT_UNREACHABLE", "unit1: connection lost"));
      return;
    }
    calls_.fetch_add(1);
    (*target_).load()->CallAsync(std::move(request), std::move(done));
  }
  std::atomic<bool>& fail_next() { return fail_next_; }
  int calls() const { return calls_.load(); }

 private:
  const std::string name_ = "unit1";
  std::atomic<UnitChannel*>* target_;
  std::atomic<bool> fail_next_{false};
  std::atomic<int> calls_{0};
};

class PinnedUnitChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto a = InProcessUnit::Create("a");
    auto b = InProcessUnit::Create("b");
    ASSERT_TRUE(a.ok() && b.ok());
    a_ = std::move(a).value();
    b_ = std::move(b).value();
    target_ = a_.get();
    a_id_ = a_->GetInfo()->unit_id();
    b_id_ = b_->GetInfo()->unit_id();
    ASSERT_NE(a_id_, b_id_);
  }

  // Pinned returns a channel to whatever target_ points at, pinned to `id`.
  std::unique_ptr<PinnedUnitChannel> Pinned(const std::string& id, Forward** forward = nullptr) {
    auto inner = std::make_unique<Forward>(&target_);
    if (forward != nullptr) *forward = inner.get();
    return std::make_unique<PinnedUnitChannel>(std::move(inner), id);
  }

  static v1::Command AssignInstance(const std::string& instance) {
    v1::Command op;
    op.mutable_assign_instance()->set_instance(instance);
    return op;
  }

  std::unique_ptr<InProcessUnit> a_;
  std::unique_ptr<InProcessUnit> b_;
  std::atomic<UnitChannel*> target_{nullptr};
  std::string a_id_;
  std::string b_id_;
};

TEST_F(PinnedUnitChannelTest, ThePinnedUnitIsServedAsUsual) {
  auto channel = Pinned(a_id_);
  auto info = channel->GetInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  auto done = IssueCommand(*channel, *info, AssignInstance("prod"), {});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(a_->GetInfo()->instance(), "prod");
}

TEST_F(PinnedUnitChannelTest, AnotherUnitGetsNothingButGetInfo) {
  target_ = b_.get();  // b answers where a was
  Forward* forward = nullptr;
  auto channel = Pinned(a_id_, &forward);
  const v1::GetInfoResponse b_before = *b_->GetInfo();

  // A command built from b's own state (id and counter) is not sent.
  auto done = IssueCommand(*channel, b_before, AssignInstance("prod"), {});
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(ReasonOf(done.status()), "UNIT_ID_MISMATCH");
  EXPECT_EQ(done.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(done.status().message()),
              ::testing::AllOf(HasSubstr("unit unit1 answers with unit id " + ToHex(b_id_)),
                               HasSubstr("pins unit1 to unit id " + ToHex(a_id_)),
                               HasSubstr("hsmctl fleet restart unit1 --new-unit"),
                               HasSubstr("hsmctl unit replace unit1")));
  EXPECT_EQ(forward->calls(), 1) << "only the GetInfo that checks the id reached the unit";
  EXPECT_EQ(b_->GetInfo()->SerializeAsString(), b_before.SerializeAsString());

  // GetInfo itself, and a workload request, fail the same way.
  EXPECT_EQ(ReasonOf(channel->GetInfo().status()), "UNIT_ID_MISMATCH");
  v1::Request wrap;
  wrap.mutable_wrap_key()->set_blob("x");
  EXPECT_EQ(ReasonOf(ResponseStatus(channel->Call(wrap), "unit1")), "UNIT_ID_MISMATCH");
}

TEST_F(PinnedUnitChannelTest, AUnitReplacedAfterAConnectionLossIsCaught) {
  Forward* forward = nullptr;
  auto channel = Pinned(a_id_, &forward);
  ASSERT_TRUE(channel->GetInfo().ok());  // checked once: a
  // The connection drops and another unit answers at the address.
  target_ = b_.get();
  forward->fail_next() = true;
  EXPECT_EQ(ReasonOf(channel->GetInfo().status()), "UNIT_UNREACHABLE");
  v1::Request wrap;
  wrap.mutable_wrap_key()->set_blob("x");
  EXPECT_EQ(ReasonOf(ResponseStatus(channel->Call(wrap), "unit1")), "UNIT_ID_MISMATCH")
      << "after a transport error the id is checked again before anything else is sent";
  // Back to the pinned unit: served again.
  target_ = a_.get();
  EXPECT_TRUE(channel->GetInfo().ok());
}

TEST_F(PinnedUnitChannelTest, AnUnpinnedChannelForwardsEverything) {
  target_ = b_.get();
  auto channel = Pinned("");
  auto done = IssueCommand(*channel, AssignInstance("any"), {});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(b_->GetInfo()->instance(), "any");
}

}  // namespace
}  // namespace hsmsim::host

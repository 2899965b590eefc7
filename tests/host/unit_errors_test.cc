// Issue 11, item 7: a unit's connection-level answers (MALFORMED_FRAME,
// FRAME_TOO_LARGE, request id 0) reach the caller as the unit's own reason
// and exit class, not as UNIT_UNREACHABLE; a unit that refuses a frame size
// gets smaller batches, not a drop.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "common/utf8.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "host/admin_key_file.h"
#include "host/batch_fanout.h"
#include "host/rewrap_batch.h"
#include "host/unit_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/unit_process.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

// A unit started with a small --max-frame-bytes, and a client to it.
class SmallFrameUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test_support::UnitProcessOptions options;
    options.binary = HSMSIM_UNIT_PATH;
    options.state_dir = tmp_.Join("state");
    options.work_dir = tmp_.path();
    options.args = {"--max-frame-bytes", "4096"};
    unit_ = std::make_unique<test_support::UnitProcess>(options);
    auto port = unit_->WaitForPort();
    ASSERT_TRUE(port.has_value()) << unit_->Stderr();
    UnitClientOptions client_options;
    client_options.timeout = std::chrono::milliseconds(10'000);
    auto client = UnitClient::Create("u1", StrCat("127.0.0.1:", *port), client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  test_support::TempDir tmp_;
  std::unique_ptr<test_support::UnitProcess> unit_;
  std::unique_ptr<UnitClient> client_;
};

TEST_F(SmallFrameUnitTest, AFrameTooLargeIsTheUnitsAnswerNotALostConnection) {
  v1::Request big;
  for (int i = 0; i < 100; ++i) big.mutable_check_blobs()->add_blobs(std::string(100, 'x'));
  absl::StatusOr<v1::Response> r = client_->Call(big);
  // The unit answered: its reason and exit class (1), not UNIT_UNREACHABLE (3).
  ASSERT_TRUE(r.ok()) << r.status();
  absl::Status s = ResponseStatus(r, "u1");
  EXPECT_FALSE(IsUnreachable(s)) << s;
  EXPECT_EQ(ReasonOf(s), reason::kFrameTooLarge) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("unit u1"));
  // The client connects again for the next request.
  EXPECT_TRUE(client_->GetInfo().ok());
}

TEST_F(SmallFrameUnitTest, AStringFieldThatIsNotUtf8IsTheUnitsMalformedFrame) {
  v1::Request bad;
  bad.mutable_generate_keys()->add_key_ids("key-\xff\xfe");
  absl::StatusOr<v1::Response> r = client_->Call(bad);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::Status s = ResponseStatus(r, "u1");
  EXPECT_EQ(ReasonOf(s), reason::kMalformedFrame) << s;
  EXPECT_FALSE(IsUnreachable(s));
  EXPECT_TRUE(client_->GetInfo().ok());
}

TEST_F(SmallFrameUnitTest, EveryRequestWaitingOnTheRefusedConnectionGetsTheUnitsReason) {
  std::mutex mu;
  std::vector<absl::Status> results;
  std::condition_variable cv;
  v1::Request big;
  for (int i = 0; i < 100; ++i) big.mutable_check_blobs()->add_blobs(std::string(100, 'x'));
  for (int i = 0; i < 3; ++i) {
    client_->CallAsync(big, [&](absl::StatusOr<v1::Response> r) {
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(ResponseStatus(r, "u1"));
      cv.notify_one();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return results.size() == 3; }));
  for (const absl::Status& s : results) {
    EXPECT_FALSE(IsUnreachable(s)) << s;
    EXPECT_EQ(ReasonOf(s), reason::kFrameTooLarge) << s;
  }
}

// A channel that refuses, as a unit with a small --max-frame-bytes does, any
// CheckBlobs batch of more than `max_blobs` blobs, and answers the others.
class SmallFrameChannel : public UnitChannel {
 public:
  SmallFrameChannel(std::string name, int max_blobs) : name_(std::move(name)), max_(max_blobs) {}
  const std::string& name() const override { return name_; }
  void CallAsync(v1::Request request, Callback done) override {
    v1::Response r;
    const int n = request.check_blobs().packed().sizes_size();
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_.push_back(n);
    }
    if (n > max_) {
      r.mutable_status()->set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
      r.mutable_status()->set_reason(std::string(reason::kFrameTooLarge));
      r.mutable_status()->set_message("frame too large");
    } else {
      r.mutable_check_blobs()->set_checked(static_cast<uint32_t>(n));
    }
    done(std::move(r));
  }
  std::vector<int> sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_;
  }

 private:
  std::string name_;
  int max_;
  std::mutex mu_;
  std::vector<int> sizes_;
};

std::vector<StoredKey> Page(int n, int64_t first_id) {
  std::vector<StoredKey> page;
  for (int i = 0; i < n; ++i) {
    StoredKey k;
    k.id = first_id + i;
    k.name = StrCat("key-", k.id);
    k.blob = std::string(10, 'b');
    page.push_back(std::move(k));
  }
  return page;
}

TEST(BatchFanoutSplitTest, AUnitRefusingABatchAsTooLargeGetsHalvesAndStaysInTheRun) {
  SmallFrameChannel small("small", 25);
  BatchFanoutOptions options;
  options.in_flight_per_lane = 1;
  BatchFanout fanout({&small}, options);
  RewrapBatches batches(RewrapKind::kCheck, 100);
  fanout.SetSplit([&](const BatchFanout::Batch& b) { return batches.Split(b); });
  int pages = 0;
  int64_t next_id = 1;
  int64_t checked = 0;
  std::vector<std::string> said;
  absl::Status ran = fanout.Run(
      [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
        if (pages == 3) return std::nullopt;
        ++pages;
        std::vector<StoredKey> page = Page(static_cast<int>(batches.batch_size()), next_id);
        next_id += static_cast<int64_t>(page.size());
        return batches.Make(page);
      },
      [&](size_t, const BatchFanout::Batch& b, v1::Response&) -> absl::Status {
        checked += static_cast<int64_t>(batches.Keys(b.tag).ids.size());
        batches.Forget(b.tag);
        return absl::OkStatus();
      },
      [&](std::string_view line) { said.emplace_back(line); });
  ASSERT_TRUE(ran.ok()) << ran;
  EXPECT_TRUE(fanout.live(0)) << fanout.drop_reason(0);
  // Every key of every page was answered: nothing dropped.
  EXPECT_EQ(checked, next_id - 1);
  // The first page of 100 was halved to 50 then 25; the later pages start
  // at the smaller size.
  EXPECT_LE(batches.batch_size(), 25u);
  for (int n : small.sizes()) EXPECT_TRUE(n <= 25 || n == 100 || n == 50) << n;
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], HasSubstr("FRAME_TOO_LARGE"));
}

TEST(BatchFanoutSplitTest, ABatchOfOneRefusedAsTooLargeDropsTheLaneWithTheUnitsReason) {
  SmallFrameChannel small("small", 0);
  BatchFanout fanout({&small}, BatchFanoutOptions{});
  RewrapBatches batches(RewrapKind::kCheck, 4);
  fanout.SetSplit([&](const BatchFanout::Batch& b) { return batches.Split(b); });
  bool made = false;
  absl::Status ran = fanout.Run(
      [&]() -> absl::StatusOr<std::optional<BatchFanout::Batch>> {
        if (made) return std::nullopt;
        made = true;
        std::vector<StoredKey> page = Page(4, 1);
        return batches.Make(page);
      },
      [](size_t, const BatchFanout::Batch&, v1::Response&) { return absl::OkStatus(); });
  EXPECT_EQ(ReasonOf(ran), reason::kNoUnitAvailable) << ran;
  EXPECT_THAT(std::string(ran.message()), HasSubstr("frame too large"));
  EXPECT_THAT(fanout.drop_reason(0), HasSubstr("FRAME_TOO_LARGE"));
}

TEST(Utf8Test, ValidAndInvalidText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("key-1"));
  EXPECT_TRUE(IsValidUtf8("cl\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x94\x91"));
  EXPECT_EQ(FirstInvalidUtf8("key-\xff"), 4u);
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // cut short
}

TEST(AdminNameTest, ANameThatIsNotUtf8IsBadInputBeforeAnyUnitSeesIt) {
  auto key = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
  ASSERT_TRUE(key.ok());
  auto admin = MakeAdminKey("al\xffice", std::move(*key));
  EXPECT_EQ(ReasonOf(admin.status()), reason::kBadAdminName);
  EXPECT_THAT(std::string(admin.status().message()), HasSubstr("UTF-8"));
}

}  // namespace
}  // namespace hsmsim::host

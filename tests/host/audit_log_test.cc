// The ceremony audit log: appended lines chain; a removed, reordered,
// edited or truncated line is found.
#include "host/audit_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/hex.h"
#include "common/status.h"
#include "crypto/entropy.h"

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "audit-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    crypto::SeededEntropy entropy(3);
    admin_ = *MakeAdminKey("alice", *crypto::GenerateP521(entropy));
    AuditLog log(dir_);
    for (int i = 0; i < 4; ++i) {
      v1::GetInfoResponse before;
      before.set_unit_id(std::string(16, static_cast<char>(i)));
      before.set_transaction_counter(i);
      v1::Command op;
      op.mutable_clear_new_master_key();
      v1::CommandResponse response;
      response.mutable_info()->mutable_new_register()->set_verification_pattern(
          std::string(32, 'v'));
      absl::StatusOr<v1::CommandResponse> result = response;
      if (i == 2) result = Error(absl::StatusCode::kFailedPrecondition, "REFUSED", "no");
      log.OnCommand("unit1", before, op, {&admin_}, result);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> Lines() {
    std::ifstream in(dir_ + "/audit.jsonl");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  void Write(const std::vector<std::string>& lines) {
    std::ofstream out(dir_ + "/audit.jsonl", std::ios::trunc);
    for (const auto& l : lines) out << l << "\n";
  }
  std::string Broken() {
    auto r = VerifyAuditLog(dir_);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(ReasonOf(r.status()), "AUDIT_LOG_TAMPERED") << r.status();
    return std::string(r.status().message());
  }

  std::string dir_;
  AdminKey admin_;
};

TEST_F(AuditLogTest, KeepsTheLastLinesOfAVerifiedLogOldestFirst) {
  auto none = VerifyAuditLog(dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->last_lines.empty());
  auto two = VerifyAuditLog(dir_, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  const auto lines = Lines();
  ASSERT_EQ(two->last_lines.size(), 2u);
  EXPECT_EQ(two->last_lines[0], lines[2]);
  EXPECT_EQ(two->last_lines[1], lines[3]);
  auto all = VerifyAuditLog(dir_, 50);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(std::vector<std::string>(all->last_lines.begin(), all->last_lines.end()), lines);
}

TEST_F(AuditLogTest, IntactLogVerifiesAndNamesSignersAndResults) {
  auto summary = VerifyAuditLog(dir_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->events, 4);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 4u);
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["command"], "clear_new_master_key");
  EXPECT_EQ(first["signers"][0]["name"], "alice");
  EXPECT_EQ(first["signers"][0]["key_id"].get<std::string>().size(), 64u);
  EXPECT_TRUE(first["ok"].get<bool>());
  EXPECT_EQ(first["after"]["new"]["vp"], ToHex(std::string(32, 'v')));
  EXPECT_EQ(nlohmann::json::parse(lines[2])["reason"], "REFUSED");
  EXPECT_EQ(fs::status(dir_ + "/audit.jsonl").permissions() & fs::perms::group_all,
            fs::perms::none);
}

TEST_F(AuditLogTest, RemovedLineFound) {
  auto lines = Lines();
  lines.erase(lines.begin() + 1);
  Write(lines);
  EXPECT_THAT(Broken(), HasSubstr("line 2"));
}

TEST_F(AuditLogTest, ReorderedLinesFound) {
  auto lines = Lines();
  std::swap(lines[1], lines[2]);
  Write(lines);
  EXPECT_THAT(Broken(), HasSubstr("line 2"));
}

TEST_F(AuditLogTest, EditedLineFound) {
  auto lines = Lines();
  auto edited = nlohmann::json::parse(lines[2]);
  edited["ok"] = true;
  lines[2] = edited.dump();
  Write(lines);
  EXPECT_THAT(Broken(), HasSubstr("line 3"));
}

TEST_F(AuditLogTest, RemovedLastLineFound) {
  auto lines = Lines();
  lines.pop_back();
  Write(lines);
  EXPECT_THAT(Broken(), HasSubstr("audit.head"));
}

}  // namespace
}  // namespace hsmsim::host

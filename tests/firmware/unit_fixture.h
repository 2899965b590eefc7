// A unit in normal mode with two administrators (thresholds 1/1) and an
// importer key, plus helpers to load and promote master keys.
#ifndef HSMSIM_TESTS_FIRMWARE_UNIT_FIXTURE_H_
#define HSMSIM_TESTS_FIRMWARE_UNIT_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/firmware/test_support.h"

namespace hsmsim::firmware::testing {

class UnitFixture : public ::testing::Test {
 protected:
  void SetUp() override { unit_ = NewUnit(); }

  std::unique_ptr<CryptoUnit> NewUnit() {
    auto unit = *CryptoUnit::Create(entropy_);
    HSMSIM_CHECK(Send(*unit, AddAdminCommand(admin_), {}).ok());
    HSMSIM_CHECK(Send(*unit, ThresholdsCommand(1, 1), {&admin_}).ok());
    HSMSIM_CHECK(
        Send(*unit, Op([](v1::Command& c) { c.mutable_generate_importer(); }), {&admin_}).ok());
    return unit;
  }

  absl::Status Do(const v1::Command& c) { return Send(*unit_, c, {&admin_}); }
  absl::Status Do(CryptoUnit& unit, const v1::Command& c) { return Send(unit, c, {&admin_}); }

  // LoadAndCommit puts the XOR of `parts` into NEW, FULL_COMMITTED.
  void LoadAndCommit(CryptoUnit& unit, const std::vector<SecretBytes>& parts) {
    ASSERT_TRUE(
        Do(unit, LoadCommand(unit, parts, static_cast<uint32_t>(parts.size()), entropy_)).ok());
    ASSERT_TRUE(Do(unit, CommitCommand(Xor(parts))).ok());
  }
  void Promote(CryptoUnit& unit) {
    ASSERT_TRUE(Do(unit, Op([](v1::Command& c) { c.mutable_set_immediate(); })).ok());
  }

  v1::Response Call(const v1::Request& r) { return unit_->Handle(r).response; }

  std::string GenerateKey(const std::string& id) {
    v1::Request r;
    r.mutable_generate_key()->set_key_id(id);
    v1::Response resp = Call(r);
    HSMSIM_CHECK(resp.status().code() == 0);
    return resp.generate_key().blob();
  }

  crypto::SeededEntropy entropy_{7};
  TestAdmin admin_ = MakeAdmin("alice", entropy_);
  std::unique_ptr<CryptoUnit> unit_;
  std::vector<SecretBytes> k1_{Part(10), Part(11), Part(12)};
  std::vector<SecretBytes> k2_{Part(20), Part(21)};
  std::vector<SecretBytes> k3_{Part(30), Part(31)};
};

}  // namespace hsmsim::firmware::testing

#endif  // HSMSIM_TESTS_FIRMWARE_UNIT_FIXTURE_H_

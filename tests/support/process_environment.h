// ProcessEnvironmentTest: the one fixture base of every test that runs
// hsmctl and hsmsim-unit, setting what they read from the environment.
#ifndef HSMSIM_TESTS_SUPPORT_PROCESS_ENVIRONMENT_H_
#define HSMSIM_TESTS_SUPPORT_PROCESS_ENVIRONMENT_H_

#include <gtest/gtest.h>

#include "tests/support/scoped_environment.h"

namespace hsmsim::test_support {

// kTestPassword opens the key part and administrator key files that
// integration tests write (HSMSIM_PASSWORD).
inline constexpr char kTestPassword[] = "integration-test-password";

// ProcessEnvironmentTest: for each test, HSMSIM_PASSWORD is kTestPassword,
// HSMSIM_UNIT_BINARY the hsmsim-unit of this build (HSMSIM_UNIT_PATH, a
// compile definition of the test target) and HSMSIM_FLEET unset, so no
// test touches a fleet of the user's; all three are restored afterwards.
// A fixture that overrides SetUp calls ProcessEnvironmentTest::SetUp first.
class ProcessEnvironmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef HSMSIM_UNIT_PATH
#error "HSMSIM_UNIT_PATH must name the hsmsim-unit binary"
#endif
    env_.Set("HSMSIM_PASSWORD", kTestPassword);
    env_.Set("HSMSIM_UNIT_BINARY", HSMSIM_UNIT_PATH);
    env_.Unset("HSMSIM_FLEET");
  }

  // env_ restores every change when the fixture is destroyed; a test may
  // add its own.
  ScopedEnvironment env_;
};

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_PROCESS_ENVIRONMENT_H_

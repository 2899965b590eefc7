// Tests of the test support library itself: the subprocess runner, the
// child process owner, the scoped environment and the signed-request builder.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "crypto/entropy.h"
#include "crypto/verification_pattern.h"
#include "host/signed_command.h"
#include "tests/support/scoped_environment.h"
#include "tests/support/signed_request.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::test_support {
namespace {

using namespace std::chrono_literals;  // NOLINT

TEST(RunProgramTest, CapturesExitCodeStdoutAndStderr) {
  RunResult r = RunProgram({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);
}

TEST(RunProgramTest, ReadsStdinAndKeepsNamedOutputFiles) {
  TempDir dir;
  std::ofstream(dir.Join("in")) << "hello";
  RunOptions options;
  options.stdin_path = dir.Join("in");
  options.stdout_path = dir.Join("out");
  RunResult r = RunProgram({"/bin/cat"}, options);
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, "hello");
  std::ifstream kept(dir.Join("out"));
  std::string text;
  kept >> text;
  EXPECT_EQ(text, "hello");
}

TEST(RunProgramTest, EnvironmentChangesApplyToTheChildOnly) {
  ScopedEnvironment env;
  env.Set("HSMSIM_SUPPORT_TEST_KEPT", "parent");
  env.Set("HSMSIM_SUPPORT_TEST_GONE", "parent");
  RunOptions options;
  options.env.set = {"HSMSIM_SUPPORT_TEST_KEPT=child"};
  options.env.unset = {"HSMSIM_SUPPORT_TEST_GONE"};
  RunResult r = RunProgram(
      {"/bin/sh", "-c", "echo \"$HSMSIM_SUPPORT_TEST_KEPT/${HSMSIM_SUPPORT_TEST_GONE-unset}\""},
      options);
  EXPECT_EQ(r.out, "child/unset\n") << Describe(r);
  EXPECT_STREQ(std::getenv("HSMSIM_SUPPORT_TEST_KEPT"), "parent");
}

TEST(RunProgramTest, TimeoutKillsTheProcessGroup) {
  RunOptions options;
  options.timeout = 200ms;
  auto start = std::chrono::steady_clock::now();
  RunResult r = RunProgram({"/bin/sh", "-c", "sleep 30 & sleep 30"}, options);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(RunProgramTest, ProgramThatCannotRunExits127) {
  EXPECT_EQ(RunProgram({"/nonexistent/program"}).exit_code, 127);
}

TEST(FindProgramTest, FindsShellAndNotNonsense) {
  EXPECT_TRUE(FindProgram("sh").has_value());
  EXPECT_FALSE(FindProgram("hsmsim-no-such-program").has_value());
}

TEST(ChildProcessTest, StopSendsSigtermFirstWhenGraceIsSet) {
  TempDir dir;
  ChildOptions options;
  options.output_path = dir.Join("out");
  options.stop_grace = 5s;
  auto child = ChildProcess::Start(
      {"/bin/sh", "-c", "trap 'echo term; exit 0' TERM; echo ready; while :; do sleep 0.05; done"},
      options);
  ASSERT_TRUE(child.ok()) << child.status();
  for (int i = 0; i < 400; ++i) {
    std::ifstream in(dir.Join("out"));
    std::string word;
    if (in >> word && word == "ready") break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE((*child)->Running());
  int status = (*child)->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE((*child)->Running());
}

TEST(ChildProcessTest, DestructorKillsAndReaps) {
  pid_t pid = -1;
  {
    auto child = ChildProcess::Start({"/bin/sleep", "30"});
    ASSERT_TRUE(child.ok());
    pid = (*child)->pid();
    EXPECT_TRUE((*child)->Running());
  }
  // Reaped: the pid is no longer our child.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

TEST(ChildProcessTest, WaitForExitReturnsTheStatus) {
  auto child = ChildProcess::Start({"/bin/sh", "-c", "exit 7"});
  ASSERT_TRUE(child.ok());
  std::optional<int> status = (*child)->WaitForExit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(ExitCodeOf(*status), 7);
}

TEST(ScopedEnvironmentTest, RestoresSetAndUnsetVariables) {
  ::setenv("HSMSIM_SUPPORT_TEST_A", "before", 1);
  ::unsetenv("HSMSIM_SUPPORT_TEST_B");
  {
    ScopedEnvironment env;
    env.Unset("HSMSIM_SUPPORT_TEST_A");
    env.Set("HSMSIM_SUPPORT_TEST_B", "during");
    env.Set("HSMSIM_SUPPORT_TEST_B", "again");
    EXPECT_EQ(std::getenv("HSMSIM_SUPPORT_TEST_A"), nullptr);
    EXPECT_STREQ(std::getenv("HSMSIM_SUPPORT_TEST_B"), "again");
  }
  EXPECT_STREQ(std::getenv("HSMSIM_SUPPORT_TEST_A"), "before");
  EXPECT_EQ(std::getenv("HSMSIM_SUPPORT_TEST_B"), nullptr);
  ::unsetenv("HSMSIM_SUPPORT_TEST_A");
}

TEST(SignedRequestTest, FillsUnitIdCounterAndSignsLikeTheHost) {
  crypto::SeededEntropy entropy(3);
  host::AdminKey alice = MakeTestAdmin("alice", entropy);
  host::AdminKey copy = CopyAdmin(alice);
  EXPECT_EQ(copy.key_id, alice.key_id);
  v1::GetInfoResponse info;
  info.set_unit_id("unit-id-bytes");
  info.set_transaction_counter(41);
  v1::Command command;
  command.mutable_generate_importer();
  v1::Request request = SignedRequest(info, command, {&alice, &copy}, 9);
  EXPECT_EQ(request.id(), 9u);
  v1::Command sent;
  ASSERT_TRUE(sent.ParseFromString(request.signed_command().command()));
  EXPECT_EQ(sent.unit_id(), "unit-id-bytes");
  EXPECT_EQ(sent.transaction_counter(), 41u);
  EXPECT_TRUE(sent.has_generate_importer());
  ASSERT_EQ(request.signed_command().signatures_size(), 2);
  EXPECT_EQ(request.signed_command().signatures(0).admin_key_id(), crypto::AsString(alice.key_id));
  // The same bytes as the host's own builder.
  auto host_signed = host::SignCommand(sent, {});
  ASSERT_TRUE(host_signed.ok());
  EXPECT_EQ(host_signed->command(), request.signed_command().command());
}

}  // namespace
}  // namespace hsmsim::test_support

// The real hsmsim-unit process guards its files and memory: it refuses a
// state directory others can write, creates its directories and files with
// explicit modes whatever the umask, and marks itself non-dumpable with its
// key material in a locked secure heap (both logged at start).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/emulator/unit_harness.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::emulator::testing::UnitProcess;
using ::hsmsim::test_support::TempDir;
using ::testing::HasSubstr;

unsigned ModeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0xffff;
  return st.st_mode & 07777;
}

TEST(UnitSecurityTest, RefusesAStateDirectoryOthersCanWrite) {
  TempDir dir;
  const std::string state = dir.Join("state");
  ASSERT_EQ(::mkdir(state.c_str(), 0700), 0);
  for (unsigned mode : {0777u, 0770u, 0702u, 01777u}) {
    ASSERT_EQ(::chmod(state.c_str(), mode), 0);
    UnitProcess unit(state, dir.path());
    auto status = unit.WaitForExit();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << unit.Stderr();
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", mode);
    EXPECT_THAT(unit.Stderr(), HasSubstr("state directory " + state + " has mode " + octal +
                                         ": group or others can write it; chmod 700 it"));
    // Nothing was created in it.
    EXPECT_FALSE(std::filesystem::exists(state + "/device.key"));
  }
  // Readable by others, writable by the owner only: accepted.
  ASSERT_EQ(::chmod(state.c_str(), 0755), 0);
  UnitProcess unit(state, dir.path());
  EXPECT_TRUE(unit.WaitForPort().has_value()) << unit.Stderr();
}

TEST(UnitSecurityTest, FilesAndDirectoriesGetExplicitModesWhateverTheUmask) {
  TempDir dir;
  const std::string state = dir.Join("nested/state");
  const mode_t old_umask = ::umask(0);  // inherited by the unit
  UnitProcess unit(state, dir.path());
  auto port = unit.WaitForPort();
  ::umask(old_umask);
  ASSERT_TRUE(port.has_value()) << unit.Stderr();
  EXPECT_EQ(ModeOf(dir.Join("nested")), 0700u);
  EXPECT_EQ(ModeOf(state), 0700u);
  EXPECT_EQ(ModeOf(state + "/device.key"), 0600u);
  EXPECT_EQ(ModeOf(state + "/unit.state"), 0600u);
  int port_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("port-", 0) == 0) {
      ++port_files;
      EXPECT_EQ(ModeOf(entry.path().string()), 0600u) << name;
    }
  }
  EXPECT_EQ(port_files, 1);
}

TEST(UnitSecurityTest, ProcessIsNonDumpableWithKeyMaterialInLockedMemory) {
  TempDir dir;
  UnitProcess unit(dir.Join("state"), dir.path());
  ASSERT_TRUE(unit.WaitForPort().has_value()) << unit.Stderr();
  const std::string log = unit.Stderr();
  EXPECT_THAT(log, HasSubstr("process marked non-dumpable; key material "));
  if (::geteuid() == 0) {
    // Root is not bound by RLIMIT_MEMLOCK: the heap must be locked.
    EXPECT_THAT(log, HasSubstr("key material locked in memory (secure heap of 4194304 bytes)"));
  } else {
    // The kernel hands /proc/PID of a non-dumpable process to root.
    struct stat st {};
    ASSERT_EQ(::stat(("/proc/" + std::to_string(unit.pid())).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    if (log.find("NOT locked") != std::string::npos) {
      EXPECT_THAT(log, HasSubstr("RLIMIT_MEMLOCK"));
    }
  }
}

}  // namespace
}  // namespace hsmsim::emulator

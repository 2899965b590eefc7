// CreatePrivateDirectory: every directory it makes is 0700, whatever the
// umask; directories that exist are left alone.
#include "host/private_directory.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/status.h"

namespace hsmsim::host {
namespace {

namespace fs = std::filesystem;

int ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return static_cast<int>(st.st_mode & 07777);
}

class PrivateDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hsmsim-privdir-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    old_umask_ = ::umask(0);  // the worst case: nothing narrows a mode
  }
  void TearDown() override {
    ::umask(old_umask_);
    fs::remove_all(root_);
  }

  fs::path root_;
  mode_t old_umask_ = 022;
};

TEST_F(PrivateDirectoryTest, CreatesEachMissingLevelWith0700UnderUmask000) {
  const fs::path deep = root_ / "fleet" / "unit1" / "sub";
  ASSERT_TRUE(CreatePrivateDirectory(deep.string()).ok());
  EXPECT_EQ(ModeOf(root_ / "fleet"), 0700);
  EXPECT_EQ(ModeOf(root_ / "fleet" / "unit1"), 0700);
  EXPECT_EQ(ModeOf(deep), 0700);
  // Again: nothing to do.
  EXPECT_TRUE(CreatePrivateDirectory(deep.string()).ok());
  EXPECT_TRUE(CreatePrivateDirectory((root_ / "fleet" / "trailing" / "").string()).ok());
  EXPECT_EQ(ModeOf(root_ / "fleet" / "trailing"), 0700);
}

TEST_F(PrivateDirectoryTest, LeavesExistingDirectoriesAsTheyAre) {
  const fs::path shared = root_ / "shared";
  ASSERT_EQ(::mkdir(shared.c_str(), 0755), 0);
  ASSERT_TRUE(CreatePrivateDirectory((shared / "fleet").string()).ok());
  EXPECT_EQ(ModeOf(shared), 0755);
  EXPECT_EQ(ModeOf(shared / "fleet"), 0700);
}

TEST_F(PrivateDirectoryTest, AFileInTheWayIsAnError) {
  const fs::path file = root_ / "file";
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  absl::Status s = CreatePrivateDirectory((file / "fleet").string());
  EXPECT_EQ(ReasonOf(s), "FILE_WRITE_FAILED");
  EXPECT_NE(std::string(s.message()).find(file.string()), std::string::npos) << s;
}

}  // namespace
}  // namespace hsmsim::host

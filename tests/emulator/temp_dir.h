// TempDir: a fresh directory under $TMPDIR (or /tmp) removed with all its
// contents when the object goes out of scope.
#ifndef HSMSIM_TESTS_EMULATOR_TEMP_DIR_H_
#define HSMSIM_TESTS_EMULATOR_TEMP_DIR_H_

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "common/check.h"

namespace hsmsim::emulator::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                       "/hsmsim-emulator-test-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    HSMSIM_CHECK(made != nullptr);
    path_ = made;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace hsmsim::emulator::testing

#endif  // HSMSIM_TESTS_EMULATOR_TEMP_DIR_H_

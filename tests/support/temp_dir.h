// TempDir: a fresh directory under $TMPDIR (or /tmp), removed with all its
// contents when the object goes out of scope. Not copyable.
#ifndef HSMSIM_TESTS_SUPPORT_TEMP_DIR_H_
#define HSMSIM_TESTS_SUPPORT_TEMP_DIR_H_

#include <string>
#include <string_view>

namespace hsmsim::test_support {

class TempDir {
 public:
  // TempDir creates the directory; CHECK-fails if it cannot.
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }

  // Join returns the path of `name` inside the directory.
  std::string Join(std::string_view name) const;

 private:
  std::string path_;
};

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_TEMP_DIR_H_

#include "tests/support/temp_dir.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "common/check.h"
#include "common/str_cat.h"

namespace hsmsim::test_support {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/hsmsim-test-XXXXXX");
  char* made = ::mkdtemp(tmpl.data());
  HSMSIM_CHECK(made != nullptr);
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::Join(std::string_view name) const { return StrCat(path_, "/", name); }

}  // namespace hsmsim::test_support

#include "host/private_directory.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host {
namespace {

absl::Status Failed(const std::string& dir, std::string_view what, int err) {
  return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
               StrCat("cannot ", what, " ", dir, ": ", std::strerror(err)));
}

}  // namespace

absl::Status CreatePrivateDirectory(const std::string& path) {
  namespace fs = std::filesystem;
  // The missing directories, deepest first.
  std::vector<fs::path> missing;
  for (fs::path p = fs::path(path).lexically_normal(); !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) return Failed(p.string(), "create directory", ENOTDIR);
      break;
    }
    if (errno != ENOENT) return Failed(p.string(), "inspect", errno);
    missing.push_back(p);
    if (p == p.parent_path() || p.parent_path().empty()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), kPrivateDirectoryMode) != 0) {
      // Another process may have made it meanwhile; it is then not ours.
      if (errno == EEXIST) continue;
      return Failed(it->string(), "create directory", errno);
    }
    // mkdir's mode passes through the umask; make it exact.
    if (::chmod(it->c_str(), kPrivateDirectoryMode) != 0) {
      return Failed(it->string(), "set the mode of", errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::host

#include "emulator/port_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::emulator {

namespace {
constexpr mode_t kPortFileMode = 0600;
}  // namespace

absl::Status WritePortFile(const std::string& path, uint16_t port) {
  std::string tmp = StrCat(path, ".tmp");
  std::string text = StrCat(port, "\n");
  auto failed = [&](std::string_view step, int err) {
    ::unlink(tmp.c_str());
    return Error(
        absl::StatusCode::kInternal, reason::kFileIoFailed,
        StrCat(path, ": writing the port file failed: ", step, " ", tmp, ": ", std::strerror(err)));
  };
  // Mode 0600 whatever the umask: only the user who launched the unit reads it.
  int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, kPortFileMode);
  if (fd < 0) {
    return Error(absl::StatusCode::kInternal, reason::kFileIoFailed,
                 StrCat(tmp, ": open failed: ", std::strerror(errno)));
  }
  if (::fchmod(fd, kPortFileMode) != 0) {
    int err = errno;
    ::close(fd);
    return failed("chmod", err);
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return failed("write", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return failed("close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return failed("rename", errno);
  return absl::OkStatus();
}

}  // namespace hsmsim::emulator

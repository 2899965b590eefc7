#include "emulator/port_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::emulator {

absl::Status WritePortFile(const std::string& path, uint16_t port) {
  std::string tmp = StrCat(path, ".tmp");
  std::string text = StrCat(port, "\n");
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return Error(absl::StatusCode::kInternal, "FILE_IO_FAILED",
                 StrCat(tmp, ": open failed: ", std::strerror(errno)));
  }
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return Error(absl::StatusCode::kInternal, "FILE_IO_FAILED",
                 StrCat(path, ": writing the port file failed: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::emulator

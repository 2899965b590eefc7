#include "emulator/state_file_system.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::emulator {
namespace {

absl::Status OsError(std::string_view what, const std::string& path, int err) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  std::string_view reason = reason::kFileIoFailed;
  if (err == ENOENT) {
    code = absl::StatusCode::kNotFound;
    reason = reason::kFileNotFound;
  } else if (err == EEXIST) {
    code = absl::StatusCode::kAlreadyExists;
    reason = reason::kFileExists;
  } else if (err == EACCES || err == EPERM) {
    code = absl::StatusCode::kPermissionDenied;
  } else if (err == ENOSPC || err == EDQUOT) {
    code = absl::StatusCode::kResourceExhausted;
  }
  return Error(code, reason, StrCat(path, ": ", what, " failed: ", std::strerror(err)));
}

// FileDescriptor closes its descriptor when it goes out of scope.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Close closes now and returns errno on failure (0 on success).
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

absl::Status WriteAllAndSync(FileDescriptor& fd, const std::string& path,
                             absl::Span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return OsError("write", path, errno);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return OsError("fsync", path, errno);
  if (int err = fd.Close(); err != 0) return OsError("close", path, err);
  return absl::OkStatus();
}

}  // namespace

absl::Status PosixStateFileSystem::CreateDirectories(const std::string& dir) {
  if (dir.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPath, "empty directory path");
  }
  // Create each prefix in turn; EEXIST is fine as long as the end is a
  // directory.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) == 0) {
      // The umask can only narrow 0700; set it anyway so the mode is ours.
      if (::chmod(prefix.c_str(), 0700) != 0) return OsError("chmod", prefix, errno);
    } else if (errno != EEXIST) {
      return OsError("mkdir", prefix, errno);
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return OsError("stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNotADirectory,
                 StrCat(dir, ": exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PosixStateFileSystem::FileExists(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return OsError("stat", path, errno);
}

absl::StatusOr<SecretBytes> PosixStateFileSystem::ReadFile(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return OsError("open", path, errno);
  SecretBytes out;
  uint8_t chunk[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      OPENSSL_cleanse(chunk, sizeof(chunk));
      return OsError("read", path, err);
    }
    if (n == 0) break;
    out.insert(out.end(), chunk, chunk + n);
  }
  OPENSSL_cleanse(chunk, sizeof(chunk));
  return out;
}

absl::Status PosixStateFileSystem::CreateFileExclusive(const std::string& path,
                                                       absl::Span<const uint8_t> data,
                                                       mode_t mode) {
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) return OsError("create", path, errno);
  // The umask may have narrowed the mode; never widened it, but be explicit.
  if (::fchmod(fd.get(), mode) != 0) return OsError("chmod", path, errno);
  return WriteAllAndSync(fd, path, data);
}

absl::Status PosixStateFileSystem::WriteFileSynced(const std::string& path,
                                                   absl::Span<const uint8_t> data, mode_t mode) {
  FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) return OsError("open", path, errno);
  if (::fchmod(fd.get(), mode) != 0) return OsError("chmod", path, errno);
  return WriteAllAndSync(fd, path, data);
}

absl::Status PosixStateFileSystem::Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return OsError(StrCat("rename to ", to), from, errno);
  }
  return absl::OkStatus();
}

absl::Status PosixStateFileSystem::SyncDirectory(const std::string& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return OsError("open directory", dir, errno);
  if (::fsync(fd.get()) != 0) return OsError("fsync directory", dir, errno);
  return absl::OkStatus();
}

absl::Status PosixStateFileSystem::RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return OsError("unlink", path, errno);
  return absl::OkStatus();
}

absl::Status CheckStateDirectoryMode(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return OsError("stat", dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNotADirectory,
                 StrCat(dir, ": exists and is not a directory"));
  }
  const unsigned mode = st.st_mode & 07777;
  if ((mode & (S_IWGRP | S_IWOTH)) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", mode);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kUnsafeStateDir,
                 StrCat("state directory ", dir, " has mode ", octal,
                        ": group or others can write it; chmod 700 it"));
  }
  return absl::OkStatus();
}

StateFileSystem& PosixStateFileSystemInstance() {
  static PosixStateFileSystem* fs = new PosixStateFileSystem();
  return *fs;
}

}  // namespace hsmsim::emulator

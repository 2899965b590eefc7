// StateFileSystem: the few filesystem calls the unit's nonvolatile state
// needs, behind an interface so tests can inject failures (a full disk, a
// failed rename) without touching the real filesystem's behaviour.
#ifndef HSMSIM_EMULATOR_STATE_FILE_SYSTEM_H_
#define HSMSIM_EMULATOR_STATE_FILE_SYSTEM_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"

namespace hsmsim::emulator {

// StateFileSystem is the filesystem as the state store sees it. Every error
// is a Status whose message names the path and the OS error.
// Implementations must be thread-safe (stateless is enough).
class StateFileSystem {
 public:
  virtual ~StateFileSystem() = default;

  // CreateDirectories creates `dir` and its missing parents with mode 0700
  // (set explicitly, whatever the umask). OK when it already exists as a
  // directory; the mode of existing directories is left alone.
  virtual absl::Status CreateDirectories(const std::string& dir) = 0;

  // FileExists is true when `path` exists (of any type). Returns an error only
  // when the answer cannot be known (e.g. permission denied).
  virtual absl::StatusOr<bool> FileExists(const std::string& path) = 0;

  // ReadFile returns the whole file in a wiping buffer. NOT_FOUND (reason
  // FILE_NOT_FOUND) when it does not exist.
  virtual absl::StatusOr<SecretBytes> ReadFile(const std::string& path) = 0;

  // CreateFileExclusive creates `path` with `mode` (O_CREAT|O_EXCL), writes
  // `data` and fsyncs it. ALREADY_EXISTS (reason FILE_EXISTS) when it exists.
  virtual absl::Status CreateFileExclusive(const std::string& path, absl::Span<const uint8_t> data,
                                           mode_t mode) = 0;

  // WriteFileSynced creates or truncates `path` with `mode`, writes `data`
  // and fsyncs it before returning.
  virtual absl::Status WriteFileSynced(const std::string& path, absl::Span<const uint8_t> data,
                                       mode_t mode) = 0;

  // Rename atomically replaces `to` with `from`.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;

  // SyncDirectory fsyncs `dir` so a rename inside it is durable.
  virtual absl::Status SyncDirectory(const std::string& dir) = 0;

  // RemoveFile deletes `path`; OK when it does not exist.
  virtual absl::Status RemoveFile(const std::string& path) = 0;
};

// PosixStateFileSystem implements StateFileSystem with POSIX calls.
class PosixStateFileSystem final : public StateFileSystem {
 public:
  absl::Status CreateDirectories(const std::string& dir) override;
  absl::StatusOr<bool> FileExists(const std::string& path) override;
  absl::StatusOr<SecretBytes> ReadFile(const std::string& path) override;
  absl::Status CreateFileExclusive(const std::string& path, absl::Span<const uint8_t> data,
                                   mode_t mode) override;
  absl::Status WriteFileSynced(const std::string& path, absl::Span<const uint8_t> data,
                               mode_t mode) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDirectory(const std::string& dir) override;
  absl::Status RemoveFile(const std::string& path) override;
};

// CheckStateDirectoryMode returns OK when `dir` does not exist yet (it will
// be created with mode 0700) or is a directory that neither group nor others
// can write. Returns FAILED_PRECONDITION (UNSAFE_STATE_DIR) naming the
// directory and its octal mode when they can ("state directory /x has mode
// 0777: group or others can write it; chmod 700 it"), and the OS error
// naming the path when it cannot be examined. hsmsim-unit refuses to start
// on such a directory: another user could replace device.key or unit.state.
absl::Status CheckStateDirectoryMode(const std::string& dir);

// PosixStateFileSystemInstance returns a process-wide PosixStateFileSystem.
StateFileSystem& PosixStateFileSystemInstance();

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_STATE_FILE_SYSTEM_H_

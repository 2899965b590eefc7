// Directories only their owner can enter, for the fleet and the units' state.
#ifndef HSMSIM_HOST_PRIVATE_DIRECTORY_H_
#define HSMSIM_HOST_PRIVATE_DIRECTORY_H_

#include <string>

#include "absl/status/status.h"

namespace hsmsim::host {

// kPrivateDirectoryMode is the mode of every directory hsmctl creates: the
// fleet directory holds the keystore and the units' state directories their
// device keys, so nobody but the owner may list or enter them.
inline constexpr int kPrivateDirectoryMode = 0700;

// CreatePrivateDirectory creates `path` and each missing parent with mode
// 0700 exactly (whatever the umask). Directories that already exist are left
// as they are: they belong to whoever made them. Returns OK when `path` is a
// directory afterwards; INTERNAL (FILE_WRITE_FAILED) naming the directory
// and the OS error otherwise.
absl::Status CreatePrivateDirectory(const std::string& path);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_PRIVATE_DIRECTORY_H_

// WritePortFile: tells a launcher which port the unit listens on.
#ifndef HSMSIM_EMULATOR_PORT_FILE_H_
#define HSMSIM_EMULATOR_PORT_FILE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace hsmsim::emulator {

// WritePortFile writes "PORT\n" to `path` atomically: to `path`.tmp first
// (mode 0600, whatever the umask), then renamed, so a reader sees either no
// file or the whole number.
// Returns INTERNAL (reason FILE_IO_FAILED) naming the path on failure.
absl::Status WritePortFile(const std::string& path, uint16_t port);

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_PORT_FILE_H_

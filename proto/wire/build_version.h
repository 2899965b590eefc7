// What a program of this build says with --version: the hsmsim version (the
// CMake project version), the git commit it was built from (read when the
// build was configured), and the wire protocol version (the protobuf package
// of unit.proto, docs/protocol.md section 2).
#ifndef HSMSIM_PROTO_WIRE_BUILD_VERSION_H_
#define HSMSIM_PROTO_WIRE_BUILD_VERSION_H_

#include <string>
#include <string_view>

namespace hsmsim::wire {

// BuildVersion returns the project version, e.g. "0.1.0".
std::string_view BuildVersion();

// BuildCommit returns the 40 hex digits of the git commit the build was
// configured from, or "unknown" when the source was not a git checkout (or
// git was not found).
std::string_view BuildCommit();

// ProtocolVersion returns the wire protocol version: the protobuf package
// of the messages on the wire, "hsmsim.v1".
std::string ProtocolVersion();

// VersionText returns the lines `PROGRAM --version` prints, without a final
// newline:
//   PROGRAM VERSION
//   commit COMMIT
//   protocol PROTOCOL
std::string VersionText(std::string_view program);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_BUILD_VERSION_H_

// The names people read for hsmsim.v1 enums: the generated _Name() without
// the enum's prefix ("FULL_COMMITTED" for REGISTER_FULL_COMMITTED, "NORMAL"
// for MODE_NORMAL), as status, recover and the docs print them.
#ifndef HSMSIM_PROTO_WIRE_ENUM_NAMES_H_
#define HSMSIM_PROTO_WIRE_ENUM_NAMES_H_

#include <string_view>

#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::wire {

// RegisterStateName returns "EMPTY", "PARTIALLY_LOADED", "FULL_UNCOMMITTED",
// "FULL_COMMITTED" or "VALID", and "UNSPECIFIED" for any other value.
std::string_view RegisterStateName(v1::RegisterState state);

// ModeName returns "IMPRINT" or "NORMAL", and "UNSPECIFIED" for any other
// value.
std::string_view ModeName(v1::Mode mode);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_ENUM_NAMES_H_

// Names of fault injection points and actions as people type them
// ("before-persist", "crash") and the "POINT:ACTION[:N]" form of a fault:
// shared by hsmsim-unit's --fault flag and hsmctl fault.
#ifndef HSMSIM_PROTO_WIRE_FAULT_NAMES_H_
#define HSMSIM_PROTO_WIRE_FAULT_NAMES_H_

#include <string>
#include <string_view>

#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::wire {

// FaultEnumName turns "before-persist" (or "FAULT_BEFORE_PERSIST") into the
// enum value name "FAULT_BEFORE_PERSIST", for FaultPoint_Parse and
// FaultAction_Parse.
std::string FaultEnumName(std::string_view text);

// FaultSpec returns the "POINT:ACTION[:N]" form of `fault`, e.g.
// "reencrypt-after-blobs:crash:5000".
std::string FaultSpec(const v1::Fault& fault);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_FAULT_NAMES_H_

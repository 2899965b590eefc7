// The wire form of an error (hsmsim.v1.Status: code, reason, message) and
// back. Shared by hsmsim-unit, which answers with it, and the host, which
// reads it. docs/protocol.md section 3.
#ifndef HSMSIM_PROTO_WIRE_STATUS_CODEC_H_
#define HSMSIM_PROTO_WIRE_STATUS_CODEC_H_

#include "absl/status/status.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::wire {

// ToWireStatus returns the wire form of `status`: its code (the
// google.rpc.Code number), its reason (ReasonOf) and its message. An OK
// status becomes code 0 with no reason or message.
v1::Status ToWireStatus(const absl::Status& status);

// FromWireStatus returns the Status a wire status describes, its reason kept
// (ReasonOf gives it back). A code outside 1..16 becomes UNKNOWN; a missing
// reason becomes "UNSPECIFIED". Code 0 is OK.
absl::Status FromWireStatus(const v1::Status& status);

}  // namespace hsmsim::wire

#endif  // HSMSIM_PROTO_WIRE_STATUS_CODEC_H_

// Fuzzes the firmware's request handling as the emulator drives it: the
// input is parsed as a hsmsim.v1.Request and handed to a CryptoUnit restored
// from a fixed snapshot (fixed_unit.h) with SeededEntropy, through Handle and,
// for read-only requests, HandleReadOnly. Properties: never crash; the
// response echoes the id and parses back (its strings are valid UTF-8); a
// request that does not report a state change leaves the snapshot unchanged;
// a changed state snapshots and restores to itself.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>

#include "common/check.h"
#include "fuzz/fixed_unit.h"

namespace {

using hsmsim::SecretBytes;
using hsmsim::firmware::CryptoUnit;

const SecretBytes& FixedSnapshot() {
  static const SecretBytes* snapshot = new SecretBytes(hsmsim::fuzz::FixedUnit().unit->Snapshot());
  return *snapshot;
}

void CheckResponse(const hsmsim::v1::Request& request, const hsmsim::v1::Response& response) {
  HSMSIM_CHECK(response.id() == request.id());
  hsmsim::v1::Response parsed;
  HSMSIM_CHECK(parsed.ParseFromString(response.SerializeAsString()));
  // A body is set exactly when the status is OK.
  HSMSIM_CHECK((response.status().code() == 0) == (response.body_case() != 0));
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it refuses: noise here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const SecretBytes& snapshot = FixedSnapshot();
  hsmsim::v1::Request request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return -1;  // not a Request
  hsmsim::crypto::SeededEntropy entropy(size);
  auto unit = CryptoUnit::Restore(snapshot, entropy);
  HSMSIM_CHECK(unit.ok());
  if (CryptoUnit::IsReadOnly(request)) {
    CheckResponse(request, (*unit)->HandleReadOnly(request));
  }
  hsmsim::firmware::HandleResult result = (*unit)->Handle(request);
  CheckResponse(request, result.response);
  SecretBytes after = (*unit)->Snapshot();
  if (!result.state_changed) {
    HSMSIM_CHECK(after == snapshot);
    return 0;
  }
  HSMSIM_CHECK(result.response.status().code() == 0);
  auto restored = CryptoUnit::Restore(after, entropy);
  HSMSIM_CHECK(restored.ok());
  HSMSIM_CHECK((*restored)->Snapshot() == after);
  return 0;
}

#include "firmware/internal/reencryption.h"

#include <string_view>
#include <utility>

#include "common/check.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "firmware/internal/refusal.h"
#include "firmware/key_blob.h"
#include "proto/wire/enum_names.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::firmware::internal {
namespace {

// The registers of one direction, and the source's name for messages.
struct Route {
  const MasterKeyRegister& from;
  const MasterKeyRegister& to;
  std::string_view from_name;
};

Route RouteOf(ReencryptDirection direction, const UnitState& state) {
  if (direction == ReencryptDirection::kCurrentToNew) {
    return Route{state.current_register, state.new_register, "CURRENT"};
  }
  // The façade passes one of the two enumerators; anything else is a bug.
  HSMSIM_CHECK(direction == ReencryptDirection::kOldToCurrent);
  return Route{state.old_register, state.current_register, "OLD"};
}

// CheckRegisters returns OK when both registers of `direction` hold what a
// batch needs.
absl::Status CheckRegisters(ReencryptDirection direction, const Route& route) {
  if (direction == ReencryptDirection::kCurrentToNew) {
    if (route.to.state() != v1::REGISTER_FULL_COMMITTED) {
      return Precondition(reason::kNewRegisterNotCommitted,
                          StrCat("re-encryption needs NEW FULL_COMMITTED; NEW is ",
                                 wire::RegisterStateName(route.to.state())));
    }
    if (!route.from.HoldsKey()) {
      return Precondition(reason::kCurrentRegisterEmpty,
                          "re-encryption needs a VALID CURRENT register");
    }
    return absl::OkStatus();
  }
  if (!route.from.HoldsKey()) {
    return Precondition(reason::kOldRegisterEmpty,
                        "re-encryption from OLD needs a VALID OLD register");
  }
  if (!route.to.HoldsKey()) {
    return Precondition(reason::kCurrentRegisterEmpty,
                        "re-encryption needs a VALID CURRENT register");
  }
  return absl::OkStatus();
}

// ReencryptOne fills `result` for one blob of the batch.
void ReencryptOne(const std::string& blob, const Route& route, BlobRewrapper& rewrapper,
                  v1::BlobResult& result) {
  const BlobKek& source = *route.from.kek();
  const BlobKek& target = *route.to.kek();
  auto parsed = ParseBlob(AsBytes(blob));
  absl::Status failure;
  if (!parsed.ok()) {
    failure = parsed.status();
  } else if (parsed->wkid == target.wkid()) {
    result.set_outcome(v1::BLOB_ALREADY_UNDER_TARGET);
    result.set_blob(blob);
    return;
  } else if (parsed->wkid != source.wkid()) {
    failure =
        Precondition(reason::kUnknownWkid,
                     StrCat("blob for key '", Printable(parsed->key_id), "' is under WKID ",
                            ToHex(parsed->wkid), ", neither ", route.from_name, " (",
                            ToHex(source.wkid()), ") nor the target (", ToHex(target.wkid()), ")"));
  } else {
    auto rewrapped = rewrapper.Rewrap(*parsed);
    if (rewrapped.ok()) {
      result.set_outcome(v1::BLOB_REENCRYPTED);
      result.set_blob(std::move(*rewrapped));
      return;
    }
    failure = rewrapped.status();
  }
  result.set_outcome(v1::BLOB_FAILED);
  *result.mutable_status() = wire::ToWireStatus(failure);
}

}  // namespace

absl::StatusOr<v1::ReencryptBatchResponse> Reencrypt(
    ReencryptDirection direction, const google::protobuf::RepeatedPtrField<std::string>& blobs,
    const UnitState& state, crypto::Entropy& entropy) {
  const Route route = RouteOf(direction, state);
  HSMSIM_RETURN_IF_ERROR(CheckRegisters(direction, route));
  if (static_cast<size_t>(blobs.size()) > kMaxBatchBlobs) {
    return Invalid(reason::kBatchTooLarge,
                   StrCat("a batch holds at most ", kMaxBatchBlobs, " blobs, got ", blobs.size()));
  }
  v1::ReencryptBatchResponse response;
  response.mutable_results()->Reserve(static_cast<int>(blobs.size()));
  // One rewrapper for the whole batch: keyed contexts leased once, IVs drawn
  // in chunks.
  HSMSIM_ASSIGN_OR_RETURN(BlobRewrapper rewrapper,
                          BlobRewrapper::Create(*route.from.kek(), *route.to.kek(), entropy,
                                                static_cast<size_t>(blobs.size())));
  for (const std::string& blob : blobs)
    ReencryptOne(blob, route, rewrapper, *response.add_results());
  return response;
}

}  // namespace hsmsim::firmware::internal

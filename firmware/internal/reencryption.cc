#include "firmware/internal/reencryption.h"

#include <string_view>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "firmware/internal/refusal.h"
#include "firmware/key_blob.h"
#include "proto/wire/enum_names.h"
#include "proto/wire/packed_blobs.h"
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

// PackedAnswer writes the answers of a batch into a packed response: every
// blob's bytes straight into one buffer, no allocation per blob.
class PackedAnswer {
 public:
  PackedAnswer(v1::ReencryptBatchResponse& response, absl::Span<const std::string_view> blobs)
      : response_(response),
        writer_(*response.mutable_packed(), blobs.size(), wire::PackedSize(blobs)) {}

  void AlreadyUnderTarget(uint32_t index, std::string_view blob) {
    writer_.Add(blob);
    response_.add_already_under_target(index);
  }
  // Failed answers blob `index` as failed: an empty entry (the one Space
  // gave, emptied, when `took_space`) and its failure.
  void Failed(uint32_t index, const absl::Status& status, bool took_space) {
    if (took_space) {
      writer_.TruncateLast(0);
    } else {
      writer_.Add({});
    }
    v1::BlobFailure* failure = response_.add_failures();
    failure->set_index(index);
    *failure->mutable_status() = wire::ToWireStatus(status);
  }
  absl::Span<uint8_t> Space(size_t size) { return writer_.Extend(size); }

 private:
  v1::ReencryptBatchResponse& response_;
  wire::PackedBlobsWriter writer_;
};

// ReencryptOne answers for blob `index` of the batch.
void ReencryptOne(std::string_view blob, uint32_t index, const Route& route,
                  BlobRewrapper& rewrapper, PackedAnswer& answer) {
  const BlobKek& source = *route.from.kek();
  const BlobKek& target = *route.to.kek();
  auto parsed = ParseBlob(AsBytes(blob));
  absl::Status failure;
  bool took_space = false;
  if (!parsed.ok()) {
    failure = parsed.status();
  } else if (parsed->wkid == target.wkid()) {
    answer.AlreadyUnderTarget(index, blob);
    return;
  } else if (parsed->wkid != source.wkid()) {
    failure =
        Precondition(reason::kUnknownWkid,
                     StrCat("blob for key '", Printable(parsed->key_id), "' is under WKID ",
                            ToHex(parsed->wkid), ", neither ", route.from_name, " (",
                            ToHex(source.wkid()), ") nor the target (", ToHex(target.wkid()), ")"));
  } else {
    failure = rewrapper.RewrapInto(*parsed, answer.Space(BlobRewrapper::RewrappedSize(*parsed)));
    if (failure.ok()) return;
    took_space = true;
  }
  answer.Failed(index, failure, took_space);
}

// ToResults turns a packed answer into the repeated `results` that answer a
// request sent with repeated `blobs`.
void ToResults(v1::ReencryptBatchResponse& response) {
  v1::ReencryptBatchResponse packed;
  packed.Swap(&response);
  auto blobs = wire::UnpackBlobs(packed.packed());
  HSMSIM_CHECK(blobs.ok());  // written by PackedAnswer a moment ago
  auto* results = response.mutable_results();
  results->Reserve(static_cast<int>(blobs->size()));
  for (std::string_view blob : *blobs) {
    v1::BlobResult* r = results->Add();
    r->set_outcome(v1::BLOB_REENCRYPTED);
    r->set_blob(blob.data(), blob.size());
  }
  for (uint32_t i : packed.already_under_target()) {
    (*results)[static_cast<int>(i)].set_outcome(v1::BLOB_ALREADY_UNDER_TARGET);
  }
  for (v1::BlobFailure& f : *packed.mutable_failures()) {
    v1::BlobResult& r = (*results)[static_cast<int>(f.index())];
    r.set_outcome(v1::BLOB_FAILED);
    r.clear_blob();
    *r.mutable_status() = std::move(*f.mutable_status());
  }
}

}  // namespace

absl::StatusOr<v1::ReencryptBatchResponse> Reencrypt(
    ReencryptDirection direction, const google::protobuf::RepeatedPtrField<std::string>& blobs,
    const v1::PackedBlobs* packed, const UnitState& state, crypto::Entropy& entropy) {
  const Route route = RouteOf(direction, state);
  HSMSIM_RETURN_IF_ERROR(CheckRegisters(direction, route));
  const size_t count = packed != nullptr ? static_cast<size_t>(packed->sizes_size())
                                         : static_cast<size_t>(blobs.size());
  if (count > kMaxBatchBlobs) {
    return Invalid(reason::kBatchTooLarge,
                   StrCat("a batch holds at most ", kMaxBatchBlobs, " blobs, got ", count));
  }
  HSMSIM_ASSIGN_OR_RETURN(const std::vector<std::string_view> views,
                          wire::BatchBlobs(blobs, packed));
  // One rewrapper for the whole batch: keyed contexts leased once, IVs drawn
  // in chunks.
  HSMSIM_ASSIGN_OR_RETURN(
      BlobRewrapper rewrapper,
      BlobRewrapper::Create(*route.from.kek(), *route.to.kek(), entropy, views.size()));
  v1::ReencryptBatchResponse response;
  {
    PackedAnswer answer(response, views);
    for (size_t i = 0; i < views.size(); ++i) {
      ReencryptOne(views[i], static_cast<uint32_t>(i), route, rewrapper, answer);
    }
  }
  if (packed == nullptr) ToResults(response);
  return response;
}

}  // namespace hsmsim::firmware::internal

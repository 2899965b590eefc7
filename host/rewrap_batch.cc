#include "host/rewrap_batch.h"

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/master_key_id.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/packed_blobs.h"

namespace hsmsim::host {

void FailedKeys::Add(int64_t id, std::string_view name, std::string_view reason) {
  ++count;
  problems.push_back(BlobProblem{id, std::string(reason)});
  if (named.size() < kMaxNamedFailedKeys) named.push_back(StrCat(name, " (", reason, ")"));
}

void FailedKeys::Merge(const FailedKeys& other) {
  for (const std::string& n : other.named) {
    if (named.size() < kMaxNamedFailedKeys) named.push_back(n);
  }
  count += other.count;
  problems.insert(problems.end(), other.problems.begin(), other.problems.end());
}

std::string FailedKeys::List() const {
  std::string out;
  for (const std::string& k : named) out += StrCat(out.empty() ? "" : ", ", k);
  if (count > static_cast<int64_t>(named.size())) out += ", ...";
  return out;
}

namespace {

v1::PackedBlobs* MutablePacked(RewrapKind kind, v1::Request& request) {
  switch (kind) {
    case RewrapKind::kCurrentToNew:
      return request.mutable_reencrypt_batch()->mutable_packed();
    case RewrapKind::kOldToCurrent:
      return request.mutable_reencrypt_from_old()->mutable_packed();
    case RewrapKind::kCheck:
      break;
  }
  return request.mutable_check_blobs()->mutable_packed();
}

const v1::PackedBlobs& Packed(RewrapKind kind, const v1::Request& request) {
  switch (kind) {
    case RewrapKind::kCurrentToNew:
      return request.reencrypt_batch().packed();
    case RewrapKind::kOldToCurrent:
      return request.reencrypt_from_old().packed();
    case RewrapKind::kCheck:
      break;
  }
  return request.check_blobs().packed();
}

absl::Status BadResponse(std::string_view unit, std::string_view what) {
  return Error(absl::StatusCode::kInternal, reason::kBadResponse,
               StrCat("unit ", unit, " answered a batch with ", what));
}

// TakeFailures adds the keys `failures` names to `refused`, each index once
// and in range of `keys`, and returns the set of failed indices (size of
// `keys`). BAD_RESPONSE (refused left partly filled: the caller drops it)
// for an index out of range or named twice.
absl::StatusOr<std::vector<bool>> TakeFailures(
    const google::protobuf::RepeatedPtrField<v1::BlobFailure>& failures, const RewrapKeys& keys,
    std::string_view unit, FailedKeys& refused) {
  std::vector<bool> failed(keys.ids.size(), false);
  for (const v1::BlobFailure& f : failures) {
    const size_t i = f.index();
    if (i >= failed.size() || failed[i]) {
      return BadResponse(unit, StrCat("a failure for blob ", i, " of ", keys.ids.size(),
                                      i >= failed.size() ? " (out of range)" : " (twice)"));
    }
    failed[i] = true;
    refused.Add(keys.ids[i], keys.names[i], f.status().reason());
  }
  return failed;
}

}  // namespace

v1::Request MakeRewrapRequest(RewrapKind kind, std::vector<StoredKey>& page, RewrapKeys& keys) {
  v1::Request request;
  size_t bytes = 0;
  for (const StoredKey& k : page) bytes += k.blob.size();
  wire::PackedBlobsWriter packed(*MutablePacked(kind, request), page.size(), bytes);
  keys.ids.reserve(page.size());
  keys.names.reserve(page.size());
  for (StoredKey& k : page) {
    keys.ids.push_back(k.id);
    keys.names.push_back(std::move(k.name));
    packed.Add(k.blob);
  }
  return request;
}

absl::StatusOr<std::vector<RewrappedKey>> TakeRewrapped(RewrapKind kind,
                                                        const v1::Response& response,
                                                        const RewrapKeys& keys,
                                                        std::string_view target_wkid,
                                                        std::string_view unit, FailedKeys& failed) {
  const v1::ReencryptBatchResponse& answer = kind == RewrapKind::kCurrentToNew
                                                 ? response.reencrypt_batch()
                                                 : response.reencrypt_from_old();
  if (!answer.has_packed()) return BadResponse(unit, "no packed answer");
  auto blobs = wire::UnpackBlobs(answer.packed());
  if (!blobs.ok()) return BadResponse(unit, std::string(blobs.status().message()));
  if (blobs->size() != keys.ids.size()) {
    return BadResponse(unit, StrCat(blobs->size(), " answers for ", keys.ids.size(), " blobs"));
  }
  FailedKeys refused;
  HSMSIM_ASSIGN_OR_RETURN(const std::vector<bool> is_failed,
                          TakeFailures(answer.failures(), keys, unit, refused));
  std::vector<RewrappedKey> rewrapped;
  rewrapped.reserve(keys.ids.size() - static_cast<size_t>(refused.count));
  for (size_t k = 0; k < blobs->size(); ++k) {
    if (is_failed[k]) continue;
    // Never store a blob under anything but the target key: a unit whose
    // register holds another key must not strand keys.
    auto parsed = wire::ParseBlob(AsBytes((*blobs)[k]));
    if (!parsed.ok() || !SameId(crypto::AsString(parsed->wkid), target_wkid)) {
      return Error(absl::StatusCode::kDataLoss, reason::kWrongTargetKey,
                   StrCat("unit ", unit, " returned a blob that is not under the target WKID ",
                          ToHex(target_wkid), "; its ",
                          kind == RewrapKind::kCurrentToNew ? "NEW" : "CURRENT",
                          " register holds another key"));
    }
    rewrapped.push_back(
        RewrappedKey{keys.ids[k], std::string((*blobs)[k]), std::string(target_wkid)});
  }
  failed.Merge(refused);
  return rewrapped;
}

absl::Status TakeChecked(const v1::Response& response, const RewrapKeys& keys,
                         std::string_view unit, FailedKeys& failed) {
  const v1::CheckBlobsResponse& answer = response.check_blobs();
  if (answer.checked() != keys.ids.size()) {
    return BadResponse(unit, StrCat(answer.checked(), " blobs checked of ", keys.ids.size()));
  }
  FailedKeys refused;
  HSMSIM_RETURN_IF_ERROR(TakeFailures(answer.failures(), keys, unit, refused).status());
  failed.Merge(refused);
  return absl::OkStatus();
}

BatchFanout::Batch RewrapBatches::Make(std::vector<StoredKey>& page) {
  RewrapKeys keys;
  v1::Request request = MakeRewrapRequest(kind_, page, keys);
  return Remember(std::move(request), std::move(keys));
}

BatchFanout::Batch RewrapBatches::Remember(v1::Request request, RewrapKeys keys) {
  in_flight_[++next_tag_] = std::move(keys);
  return BatchFanout::Batch{std::move(request), next_tag_, 0};
}

std::vector<BatchFanout::Batch> RewrapBatches::Split(const BatchFanout::Batch& batch) {
  std::vector<BatchFanout::Batch> halves;
  auto it = in_flight_.find(batch.tag);
  if (it == in_flight_.end() || it->second.ids.size() < 2) return halves;
  const RewrapKeys keys = std::move(it->second);
  in_flight_.erase(it);
  // Our own request: its packing was made by MakeRewrapRequest.
  auto blobs = wire::UnpackBlobs(Packed(kind_, batch.request));
  HSMSIM_CHECK(blobs.ok() && blobs->size() == keys.ids.size());
  const size_t n = keys.ids.size();
  const size_t half = (n + 1) / 2;
  for (auto [from, to] : {std::pair<size_t, size_t>{0, half}, {half, n}}) {
    std::vector<StoredKey> page;
    for (size_t i = from; i < to; ++i) {
      StoredKey k;
      k.id = keys.ids[i];
      k.name = keys.names[i];
      k.blob = std::string((*blobs)[i]);
      page.push_back(std::move(k));
    }
    halves.push_back(Make(page));
  }
  batch_size_ = std::min(batch_size_, half);
  return halves;
}

}  // namespace hsmsim::host

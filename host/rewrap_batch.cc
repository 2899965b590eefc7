#include "host/rewrap_batch.h"

#include <algorithm>
#include <utility>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/master_key_id.h"
#include "proto/wire/blob_format.h"

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

google::protobuf::RepeatedPtrField<std::string>* MutableBlobs(RewrapKind kind,
                                                              v1::Request& request) {
  switch (kind) {
    case RewrapKind::kCurrentToNew:
      return request.mutable_reencrypt_batch()->mutable_blobs();
    case RewrapKind::kOldToCurrent:
      return request.mutable_reencrypt_from_old()->mutable_blobs();
    case RewrapKind::kCheck:
      break;
  }
  return request.mutable_check_blobs()->mutable_blobs();
}

const google::protobuf::RepeatedPtrField<std::string>& Blobs(RewrapKind kind,
                                                             const v1::Request& request) {
  switch (kind) {
    case RewrapKind::kCurrentToNew:
      return request.reencrypt_batch().blobs();
    case RewrapKind::kOldToCurrent:
      return request.reencrypt_from_old().blobs();
    case RewrapKind::kCheck:
      break;
  }
  return request.check_blobs().blobs();
}

}  // namespace

v1::Request MakeRewrapRequest(RewrapKind kind, std::vector<StoredKey>& page, RewrapKeys& keys) {
  v1::Request request;
  auto* blobs = MutableBlobs(kind, request);
  blobs->Reserve(static_cast<int>(page.size()));
  for (StoredKey& k : page) {
    keys.ids.push_back(k.id);
    keys.names.push_back(std::move(k.name));
    *blobs->Add() = std::move(k.blob);
  }
  return request;
}

absl::StatusOr<std::vector<RewrappedKey>> TakeRewrapped(RewrapKind kind,
                                                        const v1::Response& response,
                                                        const RewrapKeys& keys,
                                                        std::string_view target_wkid,
                                                        std::string_view unit, FailedKeys& failed) {
  const auto& results = kind == RewrapKind::kCurrentToNew ? response.reencrypt_batch().results()
                                                          : response.reencrypt_from_old().results();
  if (results.size() != static_cast<int>(keys.ids.size())) {
    return Error(absl::StatusCode::kInternal, reason::kBadResponse,
                 StrCat("unit ", unit, " answered ", results.size(), " results for ",
                        keys.ids.size(), " blobs"));
  }
  std::vector<RewrappedKey> rewrapped;
  FailedKeys refused;
  for (int i = 0; i < results.size(); ++i) {
    const v1::BlobResult& r = results[i];
    const size_t k = static_cast<size_t>(i);
    if (r.outcome() == v1::BLOB_FAILED) {
      refused.Add(keys.ids[k], keys.names[k], r.status().reason());
      continue;
    }
    // Never store a blob under anything but the target key: a unit whose
    // register holds another key must not strand keys.
    auto parsed = wire::ParseBlob(AsBytes(r.blob()));
    if (!parsed.ok() || !SameId(crypto::AsString(parsed->wkid), target_wkid)) {
      return Error(absl::StatusCode::kDataLoss, reason::kWrongTargetKey,
                   StrCat("unit ", unit, " returned a blob that is not under the target WKID ",
                          ToHex(target_wkid), "; its ",
                          kind == RewrapKind::kCurrentToNew ? "NEW" : "CURRENT",
                          " register holds another key"));
    }
    rewrapped.push_back(RewrappedKey{keys.ids[k], r.blob(), std::string(target_wkid)});
  }
  failed.Merge(refused);
  return rewrapped;
}

absl::Status TakeChecked(const v1::Response& response, const RewrapKeys& keys,
                         std::string_view unit, FailedKeys& failed) {
  const auto& results = response.check_blobs().results();
  if (results.size() != static_cast<int>(keys.ids.size())) {
    return Error(absl::StatusCode::kInternal, reason::kBadResponse,
                 StrCat("unit ", unit, " answered ", results.size(), " results for ",
                        keys.ids.size(), " blobs"));
  }
  for (int i = 0; i < results.size(); ++i) {
    const size_t k = static_cast<size_t>(i);
    if (results[i].status().code() != 0) {
      failed.Add(keys.ids[k], keys.names[k], results[i].status().reason());
    }
  }
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
  const auto& blobs = Blobs(kind_, batch.request);
  const size_t n = keys.ids.size();
  const size_t half = (n + 1) / 2;
  for (auto [from, to] : {std::pair<size_t, size_t>{0, half}, {half, n}}) {
    std::vector<StoredKey> page;
    for (size_t i = from; i < to; ++i) {
      StoredKey k;
      k.id = keys.ids[i];
      k.name = keys.names[i];
      k.blob = blobs[static_cast<int>(i)];
      page.push_back(std::move(k));
    }
    halves.push_back(Make(page));
  }
  batch_size_ = std::min(batch_size_, half);
  return halves;
}

}  // namespace hsmsim::host

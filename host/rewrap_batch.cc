#include "host/rewrap_batch.h"

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

void FailedKeys::Add(std::string_view name, std::string_view reason) {
  ++count;
  if (named.size() < kMaxNamedFailedKeys) named.push_back(StrCat(name, " (", reason, ")"));
}

std::string FailedKeys::List() const {
  std::string out;
  for (const std::string& k : named) out += StrCat(out.empty() ? "" : ", ", k);
  if (count > static_cast<int64_t>(named.size())) out += ", ...";
  return out;
}

v1::Request MakeRewrapRequest(RewrapKind kind, std::vector<StoredKey>& page, RewrapKeys& keys) {
  v1::Request request;
  auto* blobs = kind == RewrapKind::kCurrentToNew
                    ? request.mutable_reencrypt_batch()->mutable_blobs()
                    : request.mutable_reencrypt_from_old()->mutable_blobs();
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
      refused.Add(keys.names[k], r.status().reason());
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
  for (const std::string& n : refused.named) {
    if (failed.named.size() < kMaxNamedFailedKeys) failed.named.push_back(n);
  }
  failed.count += refused.count;
  return rewrapped;
}

}  // namespace hsmsim::host

#include "pkcs11/fleet_token.h"

#include <filesystem>
#include <utility>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/internal/pq.h"
#include "host/key_creation.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::pkcs11 {
namespace {

// IsWkidRefusal is true for a unit's answer that another blob of the same
// key may get past: the blob is under a master key the unit cannot use.
bool IsWkidRefusal(const absl::Status& status) {
  const std::string reason = ReasonOf(status);
  return reason == reason::kUnknownWkid || reason == reason::kBlobUnderNew;
}

bool IsTransportError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::StatusOr<std::string> WkidOf(const std::string& blob) {
  HSMSIM_ASSIGN_OR_RETURN(wire::ParsedBlob parsed, wire::ParseBlob(AsBytes(blob)));
  return std::string(parsed.wkid.begin(), parsed.wkid.end());
}

v1::KeyAlgorithm AlgorithmFor(size_t key_bytes) {
  if (key_bytes == 16) return v1::KEY_ALGORITHM_AES_128;
  if (key_bytes == 24) return v1::KEY_ALGORITHM_AES_192;
  return v1::KEY_ALGORITHM_AES_256;
}

// Answer returns the response, or its status as an error.
absl::StatusOr<v1::Response> Answer(absl::StatusOr<v1::Response> response) {
  if (!response.ok()) return response.status();
  HSMSIM_RETURN_IF_ERROR(wire::FromWireStatus(response->status()));
  return response;
}

}  // namespace

FleetToken::FleetToken(ModuleConfig config, host::FleetManifest manifest,
                       std::unique_ptr<host::Keystore> keystore, std::unique_ptr<TokenStore> store)
    : config_(std::move(config)),
      manifest_(std::move(manifest)),
      keystore_(std::move(keystore)),
      store_(std::move(store)) {
  for (const host::FleetUnit* unit : manifest_.SelectedUnits()) {
    links_.push_back(
        std::make_unique<UnitLink>(unit->name, unit->endpoint, config_.unit_timeout_ms));
  }
}

absl::StatusOr<std::unique_ptr<FleetToken>> FleetToken::Open(const ModuleConfig& config) {
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, host::LoadFleetManifest(config.fleet_dir));
  std::string path = manifest.keystore;
  if (path.empty()) path = (std::filesystem::path(config.fleet_dir) / "keystore.db").string();
  if (host::internal::IsPostgresUrl(path)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kBadPkcs11Config,
                 StrCat("fleet ", config.fleet_dir,
                        " keeps its keys in PostgreSQL; this PKCS#11 module serves fleets with a "
                        "SQLite keystore only (docs/pkcs11.md)"));
  }
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<host::Keystore> keystore,
                          host::OpenSqliteKeystore(path, /*create=*/true));
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<TokenStore> store, TokenStore::Open(path));
  return std::unique_ptr<FleetToken>(
      new FleetToken(config, std::move(manifest), std::move(keystore), std::move(store)));
}

void FleetToken::AbandonAfterFork() {
  for (auto& link : links_) link->Forget();
  (void)keystore_.release();  // NOLINT: deliberately leaked, see the header
  (void)store_.release();     // NOLINT
}

absl::StatusOr<v1::Response> FleetToken::UseBlobs(
    const std::vector<std::string>& blobs,
    const std::function<v1::Request(const std::string&)>& make) {
  if (links_.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                 StrCat("fleet ", config_.fleet_dir, " selects no unit"));
  }
  absl::Status last =
      Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable, "no blob to use");
  for (size_t tried = 0; tried < links_.size(); ++tried) {
    UnitLink& link = *links_[(next_unit_ + tried) % links_.size()];
    for (const std::string& blob : blobs) {
      if (blob.empty()) continue;
      absl::StatusOr<v1::Response> response = Answer(link.Call(make(blob)));
      if (response.ok()) {
        next_unit_ = (next_unit_ + tried + 1) % links_.size();
        return response;
      }
      last = response.status();
      if (IsTransportError(last)) break;      // the next unit
      if (!IsWkidRefusal(last)) return last;  // the key's answer, not the unit's
    }
  }
  return last;
}

absl::StatusOr<v1::Response> FleetToken::UseKey(
    const KeyRef& key, const std::function<v1::Request(const std::string&)>& make) {
  if (!key.token) return UseBlobs({key.blob}, make);
  absl::Status last = Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                            StrCat("no unit could use key '", key.name, "'"));
  // The second round reads the row again: a rotation may have finalized
  // (its pending blobs became the blobs) between the read and the use.
  for (int round = 0; round < 2; ++round) {
    HSMSIM_ASSIGN_OR_RETURN(std::optional<host::StoredKey> row, keystore_->FindKey(key.name));
    if (!row.has_value()) {
      return Error(absl::StatusCode::kNotFound, reason::kNoSuchKey,
                   StrCat("key '", key.name, "' is no longer in the keystore"));
    }
    absl::StatusOr<v1::Response> response = UseBlobs({row->blob, row->pending_blob}, make);
    if (response.ok() || !IsWkidRefusal(response.status())) return response;
    last = response.status();
  }
  return last;
}

absl::StatusOr<std::string> FleetToken::Encrypt(const KeyRef& key, const GcmOperation& op,
                                                const std::string& plaintext) {
  auto make = [&](const std::string& blob) {
    v1::Request r;
    v1::EncryptAesGcmRequest* e = r.mutable_encrypt_aes_gcm();
    e->set_blob(blob);
    e->set_iv(op.iv);
    e->set_aad(op.aad);
    e->set_tag_size(op.tag_size);
    e->set_plaintext(plaintext);
    return r;
  };
  HSMSIM_ASSIGN_OR_RETURN(v1::Response response, UseKey(key, make));
  if (!key.token && response.encrypt_aes_gcm().blob_under_old()) session_blob_under_old_ = true;
  return std::move(*response.mutable_encrypt_aes_gcm()->mutable_ciphertext());
}

absl::StatusOr<SecretBytes> FleetToken::Decrypt(const KeyRef& key, const GcmOperation& op,
                                                const std::string& ciphertext) {
  auto make = [&](const std::string& blob) {
    v1::Request r;
    v1::DecryptAesGcmRequest* d = r.mutable_decrypt_aes_gcm();
    d->set_blob(blob);
    d->set_iv(op.iv);
    d->set_aad(op.aad);
    d->set_tag_size(op.tag_size);
    d->set_ciphertext(ciphertext);
    return r;
  };
  HSMSIM_ASSIGN_OR_RETURN(v1::Response response, UseKey(key, make));
  if (!key.token && response.decrypt_aes_gcm().blob_under_old()) session_blob_under_old_ = true;
  std::string* plaintext = response.mutable_decrypt_aes_gcm()->mutable_plaintext();
  SecretBytes out = MakeSecret(*plaintext);
  WipeString(plaintext);
  return out;
}

absl::StatusOr<std::string> FleetToken::EncryptCbcPad(const KeyRef& key, const std::string& iv,
                                                      const std::string& plaintext) {
  auto make = [&](const std::string& blob) {
    v1::Request r;
    v1::EncryptAesCbcPadRequest* e = r.mutable_encrypt_aes_cbc_pad();
    e->set_blob(blob);
    e->set_iv(iv);
    e->set_plaintext(plaintext);
    return r;
  };
  HSMSIM_ASSIGN_OR_RETURN(v1::Response response, UseKey(key, make));
  if (!key.token && response.encrypt_aes_cbc_pad().blob_under_old()) {
    session_blob_under_old_ = true;
  }
  return std::move(*response.mutable_encrypt_aes_cbc_pad()->mutable_ciphertext());
}

absl::StatusOr<SecretBytes> FleetToken::DecryptCbcPad(const KeyRef& key, const std::string& iv,
                                                      const std::string& ciphertext) {
  auto make = [&](const std::string& blob) {
    v1::Request r;
    v1::DecryptAesCbcPadRequest* d = r.mutable_decrypt_aes_cbc_pad();
    d->set_blob(blob);
    d->set_iv(iv);
    d->set_ciphertext(ciphertext);
    return r;
  };
  HSMSIM_ASSIGN_OR_RETURN(v1::Response response, UseKey(key, make));
  if (!key.token && response.decrypt_aes_cbc_pad().blob_under_old()) {
    session_blob_under_old_ = true;
  }
  std::string* plaintext = response.mutable_decrypt_aes_cbc_pad()->mutable_plaintext();
  SecretBytes out = MakeSecret(*plaintext);
  WipeString(plaintext);
  return out;
}

absl::StatusOr<std::string> FleetToken::MakeBlob(UnitLink& link, const std::string& key_id,
                                                 size_t key_bytes, const KeySource& source) {
  if (!source.wrapped.empty()) {
    absl::Status last = Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                              "the unwrapping key has no blob");
    for (const std::string& blob : source.unwrapping_blobs) {
      if (blob.empty()) continue;
      v1::Request r;
      v1::UnwrapAesKeyPadRequest* u = r.mutable_unwrap_aes_key_pad();
      u->set_wrapping_blob(blob);
      u->set_wrapped(source.wrapped);
      u->set_key_id(key_id);
      u->set_attributes(source.blob_attributes);
      absl::StatusOr<v1::Response> response = Answer(link.Call(std::move(r)));
      if (response.ok()) return std::move(*response->mutable_unwrap_aes_key_pad()->mutable_blob());
      last = response.status();
      if (!IsWkidRefusal(last)) return last;
    }
    return last;
  }
  v1::Request r;
  if (source.value != nullptr) {
    r.mutable_import_key()->set_key_id(key_id);
    r.mutable_import_key()->set_key_value(std::string(AsStringView(*source.value)));
    r.mutable_import_key()->set_attributes(source.blob_attributes);
  } else {
    r.mutable_generate_key()->set_key_id(key_id);
    r.mutable_generate_key()->set_algorithm(AlgorithmFor(key_bytes));
    r.mutable_generate_key()->set_attributes(source.blob_attributes);
  }
  // The request holds the clear key: UnitLink::Call wipes it (and its
  // encoded frame) before they are freed.
  absl::StatusOr<v1::Response> response = Answer(link.Call(std::move(r)));
  if (!response.ok()) return response.status();
  return source.value != nullptr ? response->import_key().blob() : response->generate_key().blob();
}

absl::StatusOr<std::vector<std::string>> FleetToken::BlobsOf(const KeyRef& key) {
  if (!key.token) return std::vector<std::string>{key.blob};
  HSMSIM_ASSIGN_OR_RETURN(std::optional<host::StoredKey> row, keystore_->FindKey(key.name));
  if (!row.has_value()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoSuchKey,
                 StrCat("key '", key.name, "' is no longer in the keystore"));
  }
  return std::vector<std::string>{row->blob, row->pending_blob};
}

absl::StatusOr<std::optional<std::string>> FleetToken::TryWrap(
    const std::vector<std::string>& wrapping, const std::vector<std::string>& key,
    absl::Status* last) {
  for (size_t tried = 0; tried < links_.size(); ++tried) {
    UnitLink& link = *links_[(next_unit_ + tried) % links_.size()];
    bool next_unit = false;
    for (const std::string& w : wrapping) {
      for (const std::string& k : key) {
        if (w.empty() || k.empty() || next_unit) continue;
        v1::Request r;
        r.mutable_wrap_aes_key_pad()->set_wrapping_blob(w);
        r.mutable_wrap_aes_key_pad()->set_key_blob(k);
        absl::StatusOr<v1::Response> response = Answer(link.Call(std::move(r)));
        if (response.ok()) {
          next_unit_ = (next_unit_ + tried + 1) % links_.size();
          const v1::WrapAesKeyPadResponse& answer = response->wrap_aes_key_pad();
          if ((wrapping.size() == 1 && answer.wrapping_blob_under_old()) ||
              (key.size() == 1 && answer.key_blob_under_old())) {
            session_blob_under_old_ = true;  // one blob: a session object's
          }
          return std::optional<std::string>(
              std::move(*response->mutable_wrap_aes_key_pad()->mutable_wrapped()));
        }
        *last = response.status();
        if (IsTransportError(*last))
          next_unit = true;  // the next unit
        else if (!IsWkidRefusal(*last))
          return *last;  // the keys' answer
      }
    }
  }
  return std::optional<std::string>();
}

absl::StatusOr<std::vector<std::string>> FleetToken::ReencryptFromOld(
    const std::vector<std::string>& blobs) {
  absl::Status last = Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                            StrCat("fleet ", config_.fleet_dir, " selects no unit"));
  for (size_t tried = 0; tried < links_.size(); ++tried) {
    UnitLink& link = *links_[(next_unit_ + tried) % links_.size()];
    v1::Request r;
    for (const std::string& blob : blobs) r.mutable_reencrypt_from_old()->add_blobs(blob);
    absl::StatusOr<v1::Response> response = Answer(link.Call(std::move(r)));
    if (!response.ok()) {
      last = response.status();
      if (IsTransportError(last)) continue;
      return last;
    }
    const v1::ReencryptBatchResponse& answer = response->reencrypt_from_old();
    if (answer.results_size() != static_cast<int>(blobs.size())) {
      return Error(absl::StatusCode::kInternal, reason::kBadResponse,
                   "the unit answered a re-encryption with another count");
    }
    std::vector<std::string> out;
    for (int i = 0; i < answer.results_size(); ++i) {
      const v1::BlobResult& result = answer.results(i);
      if (result.outcome() == v1::BLOB_REENCRYPTED) {
        out.push_back(result.blob());
      } else if (result.outcome() == v1::BLOB_ALREADY_UNDER_TARGET) {
        out.push_back(blobs[static_cast<size_t>(i)]);
      } else {
        out.emplace_back();
      }
    }
    return out;
  }
  return last;
}

absl::StatusOr<std::string> FleetToken::WrapKey(const KeyRef& wrapping, const KeyRef& key) {
  absl::Status last = Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                            StrCat("fleet ", config_.fleet_dir, " selects no unit"));
  // The second round reads the rows again, as UseKey does.
  for (int round = 0; round < 2; ++round) {
    HSMSIM_ASSIGN_OR_RETURN(std::vector<std::string> wrapping_blobs, BlobsOf(wrapping));
    HSMSIM_ASSIGN_OR_RETURN(std::vector<std::string> key_blobs, BlobsOf(key));
    HSMSIM_ASSIGN_OR_RETURN(std::optional<std::string> wrapped,
                            TryWrap(wrapping_blobs, key_blobs, &last));
    if (wrapped.has_value()) return std::move(*wrapped);
    if (!IsWkidRefusal(last)) return last;
  }
  return last;
}

std::vector<host::UnitObservation> FleetToken::ObserveUnits() {
  std::vector<host::UnitObservation> units;
  const std::vector<const host::FleetUnit*> selected = manifest_.SelectedUnits();
  for (size_t i = 0; i < links_.size(); ++i) {
    v1::Request r;
    r.mutable_get_info();
    absl::StatusOr<v1::Response> response = Answer(links_[i]->Call(std::move(r)));
    host::UnitObservation o{*selected[i], absl::StatusOr<v1::GetInfoResponse>()};
    if (response.ok()) {
      o.info = response->get_info();
    } else {
      o.info = response.status();
    }
    units.push_back(std::move(o));
  }
  return units;
}

absl::Status FleetToken::CreateTokenKey(const std::string& name, size_t key_bytes,
                                        const KeySource& source) {
  // A rotation may move on between the plan and the insert: the keystore
  // then refuses (JOURNAL_CHANGED), or the unit refuses to re-encrypt under
  // a NEW it has just promoted, and the key is placed again from a fresh
  // look at the journal and the units.
  absl::Status last = absl::OkStatus();
  for (int attempt = 0; attempt < 5; ++attempt) {
    HSMSIM_ASSIGN_OR_RETURN(std::optional<host::RotationJournal> journal, keystore_->ReadJournal());
    HSMSIM_ASSIGN_OR_RETURN(host::KeyCreationPlan plan,
                            host::PlanKeyCreation(journal, ObserveUnits()));
    size_t unit = 0;
    while (unit < plan.routes.size() && plan.routes[unit] == host::KeyRoute::kNone) ++unit;
    if (unit == plan.routes.size()) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                   "no unit can make keys now");
    }
    host::PlacedKey key;
    key.name = name;
    HSMSIM_ASSIGN_OR_RETURN(key.blob, MakeBlob(*links_[unit], name, key_bytes, source));
    HSMSIM_ASSIGN_OR_RETURN(key.wkid, WkidOf(key.blob));
    if (plan.routes[unit] == host::KeyRoute::kPendingTarget) {
      v1::Request r;
      r.mutable_reencrypt_batch()->add_blobs(key.blob);
      absl::StatusOr<v1::Response> response = Answer(links_[unit]->Call(std::move(r)));
      if (!response.ok()) {
        last = response.status();
        if (IsTransportError(last)) return last;
        continue;  // the unit's registers moved on since the plan: plan again
      }
      if (response->reencrypt_batch().results_size() != 1) {
        return Error(absl::StatusCode::kInternal, reason::kBadResponse,
                     "the unit answered a one-blob re-encryption with another count");
      }
      const v1::BlobResult& result = response->reencrypt_batch().results(0);
      if (result.outcome() == v1::BLOB_FAILED) {
        last = wire::FromWireStatus(result.status());
        continue;
      }
      key.pending_blob = result.blob();
      HSMSIM_ASSIGN_OR_RETURN(key.pending_wkid, WkidOf(key.pending_blob));
    }
    last = keystore_->AddKeysPlanned({key}, plan.journal);
    if (last.ok()) return keystore_->Flush();
    if (ReasonOf(last) != reason::kJournalChanged) return last;
  }
  return last;
}

absl::StatusOr<std::string> FleetToken::CreateSessionBlob(size_t key_bytes,
                                                          const KeySource& source) {
  absl::Status last = Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitAvailable,
                            StrCat("fleet ", config_.fleet_dir, " selects no unit"));
  for (size_t tried = 0; tried < links_.size(); ++tried) {
    UnitLink& link = *links_[(next_unit_ + tried) % links_.size()];
    absl::StatusOr<std::string> blob = MakeBlob(link, "pkcs11-session-key", key_bytes, source);
    if (blob.ok() || !(IsTransportError(blob.status()) || IsWkidRefusal(blob.status()))) {
      return blob;
    }
    last = blob.status();
  }
  return last;
}

}  // namespace hsmsim::pkcs11

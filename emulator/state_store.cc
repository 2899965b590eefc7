#include "emulator/state_store.h"

#include <cstring>
#include <utility>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/symmetric.h"

namespace hsmsim::emulator {
namespace {

constexpr size_t kIvOffset = kStateFileHeaderSize;
constexpr size_t kCiphertextOffset = kIvOffset + crypto::kGcmIvSize;
constexpr size_t kMinStateFileSize = kCiphertextOffset + crypto::kGcmTagSize;

absl::Status DataLoss(std::string_view path, std::string_view reason, std::string_view what) {
  return Error(absl::StatusCode::kDataLoss, reason, StrCat(path, ": ", what));
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return StrCat(dir, name);
  return StrCat(dir, "/", name);
}

void PutHeader(uint8_t* out) {
  std::memcpy(out, kStateFileMagic.data(), kStateFileMagic.size());
  for (size_t i = 0; i < 4; ++i) {
    out[kStateFileMagic.size() + i] = static_cast<uint8_t>(kStateFileVersion >> (8 * i));
  }
}

}  // namespace

absl::StatusOr<std::string> EncodeStateFile(absl::Span<const uint8_t> device_key,
                                            absl::Span<const uint8_t> snapshot,
                                            crypto::Entropy& entropy) {
  std::string file(kMinStateFileSize + snapshot.size(), '\0');
  auto* bytes = reinterpret_cast<uint8_t*>(file.data());
  PutHeader(bytes);
  absl::Span<uint8_t> iv(bytes + kIvOffset, crypto::kGcmIvSize);
  HSMSIM_RETURN_IF_ERROR(entropy.Generate(iv));
  HSMSIM_RETURN_IF_ERROR(crypto::AesGcmSeal(
      device_key, iv, absl::Span<const uint8_t>(bytes, kStateFileHeaderSize), snapshot,
      absl::Span<uint8_t>(bytes + kCiphertextOffset, snapshot.size()),
      absl::Span<uint8_t>(bytes + kCiphertextOffset + snapshot.size(), crypto::kGcmTagSize)));
  return file;
}

absl::StatusOr<SecretBytes> DecodeStateFile(std::string_view path,
                                            absl::Span<const uint8_t> device_key,
                                            absl::Span<const uint8_t> file) {
  if (file.size() < kStateFileHeaderSize) {
    return DataLoss(path, reason::kStateFileTruncated,
                    StrCat("truncated: ", file.size(), " bytes, shorter than the ",
                           kStateFileHeaderSize, "-byte header"));
  }
  if (std::memcmp(file.data(), kStateFileMagic.data(), kStateFileMagic.size()) != 0) {
    return DataLoss(path, reason::kBadStateFileMagic,
                    "not an hsmsim unit state file (bad magic; expected \"HSMSIMST\")");
  }
  uint32_t version = 0;
  for (size_t i = 0; i < 4; ++i) {
    version |= static_cast<uint32_t>(file[kStateFileMagic.size() + i]) << (8 * i);
  }
  if (version > kStateFileVersion) {
    return DataLoss(
        path, reason::kUnsupportedStateFileVersion,
        StrCat("format version ", version, " is newer than the newest this hsmsim-unit reads (",
               kStateFileVersion, "); run a newer hsmsim-unit"));
  }
  if (version != kStateFileVersion) {
    return DataLoss(path, reason::kUnsupportedStateFileVersion,
                    StrCat("unknown format version ", version));
  }
  if (file.size() < kMinStateFileSize) {
    return DataLoss(path, reason::kStateFileTruncated,
                    StrCat("truncated: ", file.size(), " bytes, shorter than the ",
                           kMinStateFileSize, " bytes of header, IV and tag"));
  }
  size_t ciphertext_size = file.size() - kMinStateFileSize;
  SecretBytes plaintext(ciphertext_size);
  absl::Status opened = crypto::AesGcmOpen(
      device_key, file.subspan(kIvOffset, crypto::kGcmIvSize), file.first(kStateFileHeaderSize),
      file.subspan(kCiphertextOffset, ciphertext_size),
      file.subspan(kCiphertextOffset + ciphertext_size, crypto::kGcmTagSize),
      absl::MakeSpan(plaintext));
  if (!opened.ok()) {
    // A truncated file whose header survived also ends up here: without the
    // tag nothing distinguishes a cut from a damaged byte.
    return DataLoss(path, reason::kStateFileAuthenticationFailed,
                    "authentication failed: the file is damaged, truncated or was written "
                    "with another device key");
  }
  return plaintext;
}

std::string StateStore::state_path() const { return JoinPath(dir_, kStateFileName); }
std::string StateStore::temp_path() const { return JoinPath(dir_, kStateTempFileName); }
std::string StateStore::device_key_path() const { return JoinPath(dir_, kDeviceKeyFileName); }

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(std::string dir, StateFileSystem& fs,
                                                             crypto::Entropy& entropy) {
  HSMSIM_RETURN_IF_ERROR(fs.CreateDirectories(dir));
  std::string key_path = JoinPath(dir, kDeviceKeyFileName);
  std::string state_path = JoinPath(dir, kStateFileName);

  absl::StatusOr<SecretBytes> key = fs.ReadFile(key_path);
  bool created_key = false;
  if (!key.ok() && key.status().code() == absl::StatusCode::kNotFound) {
    HSMSIM_ASSIGN_OR_RETURN(bool state_exists, fs.FileExists(state_path));
    if (state_exists) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceKeyMissing,
                   StrCat(state_path, ": the device key ", key_path,
                          " is missing, so the state cannot be decrypted; restore the device "
                          "key or remove the state directory to start a new unit"));
    }
    SecretBytes fresh(kDeviceKeySize);
    HSMSIM_RETURN_IF_ERROR(entropy.Generate(absl::MakeSpan(fresh)));
    absl::Status created = fs.CreateFileExclusive(key_path, fresh, 0600);
    if (created.ok()) {
      HSMSIM_RETURN_IF_ERROR(fs.SyncDirectory(dir));
      key = std::move(fresh);
      created_key = true;
    } else if (created.code() == absl::StatusCode::kAlreadyExists) {
      key = fs.ReadFile(key_path);  // another process won the race
    } else {
      return created;
    }
  }
  if (!key.ok()) return key.status();
  if (key->size() != kDeviceKeySize) {
    return Error(
        absl::StatusCode::kDataLoss, reason::kBadDeviceKey,
        StrCat(key_path, ": device key is ", key->size(), " bytes, expected ", kDeviceKeySize));
  }
  return std::unique_ptr<StateStore>(
      new StateStore(std::move(dir), fs, entropy, std::move(key).value(), created_key));
}

absl::StatusOr<std::optional<SecretBytes>> StateStore::Load() {
  std::string path = state_path();
  absl::StatusOr<SecretBytes> file = fs_.ReadFile(path);
  if (!file.ok()) {
    if (file.status().code() == absl::StatusCode::kNotFound) {
      return std::optional<SecretBytes>();
    }
    return file.status();
  }
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes snapshot, DecodeStateFile(path, device_key_, *file));
  return std::optional<SecretBytes>(std::move(snapshot));
}

absl::Status StateStore::Save(absl::Span<const uint8_t> snapshot, bool* replaced) {
  if (replaced != nullptr) *replaced = false;
  HSMSIM_ASSIGN_OR_RETURN(std::string file, EncodeStateFile(device_key_, snapshot, entropy_));
  std::string tmp = temp_path();
  absl::Status status = fs_.WriteFileSynced(tmp, AsBytes(file), 0600);
  if (status.ok()) status = fs_.Rename(tmp, state_path());
  if (!status.ok()) {
    (void)fs_.RemoveFile(tmp);  // best effort; the old unit.state is intact
    return WithContext(status, "saving the unit state");
  }
  // After the rename the new state is in place; the directory sync makes the
  // rename itself durable.
  if (replaced != nullptr) *replaced = true;
  return WithContext(fs_.SyncDirectory(dir_), "saving the unit state");
}

absl::StatusOr<std::unique_ptr<firmware::CryptoUnit>> LoadOrCreateUnit(StateStore& store,
                                                                       crypto::Entropy& entropy,
                                                                       NewUnitPolicy policy) {
  HSMSIM_ASSIGN_OR_RETURN(std::optional<SecretBytes> snapshot, store.Load());
  if (!snapshot.has_value()) {
    if (policy == NewUnitPolicy::kOnlyWhereNoUnitWas && !store.device_key_created()) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kUnitStateMissing,
                   StrCat(store.state_path(), " is missing but ", store.device_key_path(),
                          " exists: this directory held a unit whose state is gone. A blank "
                          "unit here would answer under a new unit id, with no administrators. "
                          "Restore unit.state from a backup, or start with --new-unit to "
                          "replace the unit on purpose"));
    }
    HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<firmware::CryptoUnit> unit,
                            firmware::CryptoUnit::Create(entropy));
    HSMSIM_RETURN_IF_ERROR(store.Save(unit->Snapshot()));
    return unit;
  }
  auto unit = firmware::CryptoUnit::Restore(*snapshot, entropy);
  if (!unit.ok()) return WithContext(unit.status(), store.state_path());
  return std::move(unit).value();
}

}  // namespace hsmsim::emulator

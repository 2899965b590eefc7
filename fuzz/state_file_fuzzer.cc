// Fuzzes the unit's nonvolatile state on disk as hsmsim-unit reads it at
// start:
//  1. the input as the bytes of DIR/unit.state, through StateStore::Load and
//     LoadOrCreateUnit on an in-memory file system (a fixed device key);
//  2. the input as snapshot bytes sealed into a valid state file, through the
//     same loader, which reaches CryptoUnit::Restore;
//  3. CryptoUnit::Restore on the input directly.
// Properties: never crash; a state file that fails to load is never replaced
// (no blank unit over it); a restored unit snapshots and restores to itself,
// and its GetInfo serializes and parses back.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "common/check.h"
#include "common/status.h"
#include "emulator/state_store.h"
#include "firmware/crypto_unit.h"

namespace {

using namespace hsmsim;  // NOLINT

// MemoryFileSystem holds files in a map. Not thread-safe (fuzzing is not).
class MemoryFileSystem final : public emulator::StateFileSystem {
 public:
  std::map<std::string, std::string> files;

  absl::Status CreateDirectories(const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<bool> FileExists(const std::string& path) override {
    return files.count(path) > 0;
  }
  absl::StatusOr<SecretBytes> ReadFile(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return Error(absl::StatusCode::kNotFound, "FILE_NOT_FOUND", path);
    return SecretBytes(it->second.begin(), it->second.end());
  }
  absl::Status CreateFileExclusive(const std::string& path, absl::Span<const uint8_t> data,
                                   mode_t) override {
    if (files.count(path) > 0) return Error(absl::StatusCode::kAlreadyExists, "FILE_EXISTS", path);
    files[path] = std::string(data.begin(), data.end());
    return absl::OkStatus();
  }
  absl::Status WriteFileSynced(const std::string& path, absl::Span<const uint8_t> data,
                               mode_t) override {
    files[path] = std::string(data.begin(), data.end());
    return absl::OkStatus();
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    auto it = files.find(from);
    if (it == files.end()) return Error(absl::StatusCode::kNotFound, "FILE_NOT_FOUND", from);
    files[to] = std::move(it->second);
    files.erase(from);
    return absl::OkStatus();
  }
  absl::Status SyncDirectory(const std::string&) override { return absl::OkStatus(); }
  absl::Status RemoveFile(const std::string& path) override {
    files.erase(path);
    return absl::OkStatus();
  }
};

constexpr char kDir[] = "/unit";

std::string DeviceKey() { return std::string(emulator::kDeviceKeySize, '\x42'); }

void CheckRestoredUnit(const firmware::CryptoUnit& unit, crypto::Entropy& entropy) {
  SecretBytes snapshot = unit.Snapshot();
  auto again = firmware::CryptoUnit::Restore(snapshot, entropy);
  HSMSIM_CHECK(again.ok());
  HSMSIM_CHECK((*again)->Snapshot() == snapshot);
  v1::GetInfoResponse parsed;
  HSMSIM_CHECK(parsed.ParseFromString(unit.Info().SerializeAsString()));
}

// LoadFromFile runs the emulator's loader over a state directory whose
// unit.state holds `file`.
void LoadFromFile(const std::string& file, crypto::Entropy& entropy) {
  MemoryFileSystem fs;
  fs.files[std::string(kDir) + "/" + emulator::kDeviceKeyFileName] = DeviceKey();
  const std::string state_path = std::string(kDir) + "/" + emulator::kStateFileName;
  fs.files[state_path] = file;
  auto store = emulator::StateStore::Open(kDir, fs, entropy);
  HSMSIM_CHECK(store.ok());
  auto unit = emulator::LoadOrCreateUnit(**store, entropy);
  if (!unit.ok()) {
    HSMSIM_CHECK(fs.files[state_path] == file);  // never a blank unit over it
    HSMSIM_CHECK(ReasonOf(unit.status()) != "UNSPECIFIED");
    return;
  }
  CheckRestoredUnit(**unit, entropy);
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it refuses: noise here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  crypto::SeededEntropy entropy(size);
  const std::string input(reinterpret_cast<const char*>(data), size);
  LoadFromFile(input, entropy);

  const std::string key = DeviceKey();
  auto sealed = emulator::EncodeStateFile(AsBytes(key), AsBytes(input), entropy);
  HSMSIM_CHECK(sealed.ok());
  LoadFromFile(*sealed, entropy);

  auto unit = firmware::CryptoUnit::Restore(absl::Span<const uint8_t>(data, size), entropy);
  if (unit.ok()) CheckRestoredUnit(**unit, entropy);
  return 0;
}

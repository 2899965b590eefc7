// StateStore: the crypto unit's nonvolatile memory on disk.
//
// DIR/device.key holds 32 random bytes (mode 0600) that stand in for the
// card's battery-backed memory; it is created once, on first start.
// DIR/unit.state holds the unit's snapshot, encrypted and authenticated:
//
//   offset  size  field
//   0       8     magic "HSMSIMST"
//   8       4     format version, little-endian (kStateFileVersion)
//   12      12    random IV
//   24      n     AES-256-GCM ciphertext of CryptoUnit::Snapshot()
//   24+n    16    GCM tag; the associated data is bytes 0..11 (magic+version)
//
// Save() is crash-atomic: it writes DIR/unit.state.tmp, fsyncs it, renames it
// over unit.state and fsyncs DIR. A crash at any point leaves either the old
// or the new state, never a mix.
#ifndef HSMSIM_EMULATOR_STATE_STORE_H_
#define HSMSIM_EMULATOR_STATE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secret_bytes.h"
#include "crypto/entropy.h"
#include "emulator/state_file_system.h"
#include "firmware/crypto_unit.h"

namespace hsmsim::emulator {

inline constexpr std::string_view kStateFileMagic = "HSMSIMST";
inline constexpr uint32_t kStateFileVersion = 1;
inline constexpr size_t kDeviceKeySize = 32;
inline constexpr size_t kStateFileHeaderSize = 12;  // magic + version
inline constexpr char kDeviceKeyFileName[] = "device.key";
inline constexpr char kStateFileName[] = "unit.state";
inline constexpr char kStateTempFileName[] = "unit.state.tmp";

// EncodeStateFile returns the bytes of a state file holding `snapshot`
// sealed under `device_key` with a fresh IV from `entropy`. Returns INTERNAL
// when entropy or the cipher fails.
absl::StatusOr<std::string> EncodeStateFile(absl::Span<const uint8_t> device_key,
                                            absl::Span<const uint8_t> snapshot,
                                            crypto::Entropy& entropy);

// DecodeStateFile authenticates and decrypts the bytes of a state file.
// `path` only names the file in error messages. Every failure is DATA_LOSS
// with a message that starts with `path`; reasons: STATE_FILE_TRUNCATED,
// BAD_STATE_FILE_MAGIC, UNSUPPORTED_STATE_FILE_VERSION,
// STATE_FILE_AUTHENTICATION_FAILED.
absl::StatusOr<SecretBytes> DecodeStateFile(std::string_view path,
                                            absl::Span<const uint8_t> device_key,
                                            absl::Span<const uint8_t> file);

// StateStore reads and writes one unit's state directory. Thread-compatible:
// the caller serializes Save() calls (the emulator holds its exclusive lock).
// The file system and entropy passed to Open() must outlive the store.
class StateStore {
 public:
  // Open creates `dir` (0700) when missing and reads DIR/device.key, creating
  // it (32 random bytes, 0600, O_EXCL) when neither it nor unit.state exists
  // (device_key_created() then says so).
  // Returns FAILED_PRECONDITION (DEVICE_KEY_MISSING) when unit.state exists
  // without device.key, DATA_LOSS (BAD_DEVICE_KEY) for a key of the wrong
  // size, or the file system's error.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(std::string dir, StateFileSystem& fs,
                                                          crypto::Entropy& entropy);

  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Load returns the decrypted snapshot, or std::nullopt when no unit.state
  // exists. Errors as DecodeStateFile(), or the file system's.
  absl::StatusOr<std::optional<SecretBytes>> Load();

  // Save writes `snapshot` crash-atomically. On failure the status names the
  // file and the step that failed. When `replaced` is not null it is set to
  // whether unit.state was replaced: false on a failure before the rename
  // (the previous unit.state is untouched and the temp file removed when
  // possible), true once the rename happened, even if syncing the directory
  // after it then failed.
  absl::Status Save(absl::Span<const uint8_t> snapshot, bool* replaced = nullptr);

  // entropy returns the entropy the store was opened with (the emulator's
  // unit uses the same), for rebuilding a unit from a snapshot.
  crypto::Entropy& entropy() const { return entropy_; }

  const std::string& dir() const { return dir_; }
  // device_key_created is true when Open created device.key: the directory
  // held no unit before. False when a device key was there already, so a
  // unit's state existed in this directory at some point.
  bool device_key_created() const { return device_key_created_; }
  std::string state_path() const;
  std::string temp_path() const;
  std::string device_key_path() const;

 private:
  StateStore(std::string dir, StateFileSystem& fs, crypto::Entropy& entropy, SecretBytes key,
             bool key_created)
      : dir_(std::move(dir)),
        fs_(fs),
        entropy_(entropy),
        device_key_(std::move(key)),
        device_key_created_(key_created) {}

  std::string dir_;
  StateFileSystem& fs_;
  crypto::Entropy& entropy_;
  SecretBytes device_key_;
  bool device_key_created_ = false;
};

// When LoadOrCreateUnit may create a new, blank unit (imprint mode, a new
// unit id, no administrators).
enum class NewUnitPolicy {
  // Only in a directory that never held a unit: Open created its device key.
  kOnlyWhereNoUnitWas,
  // Also where a unit's state is gone (hsmsim-unit --new-unit): the operator
  // replaces the unit on purpose.
  kAllowed,
};

// LoadOrCreateUnit restores the unit from `store`, or, when no state file
// exists, creates a new unit and saves it at once. Never creates a unit over
// an existing state file: any load or restore failure is returned, prefixed
// with the state file's path. With kOnlyWhereNoUnitWas, a missing state file
// in a directory whose device key existed before Open (the unit's state was
// removed or lost) is FAILED_PRECONDITION (UNIT_STATE_MISSING) naming both
// files: a blank unit there would answer under a new unit id.
absl::StatusOr<std::unique_ptr<firmware::CryptoUnit>> LoadOrCreateUnit(
    StateStore& store, crypto::Entropy& entropy,
    NewUnitPolicy policy = NewUnitPolicy::kOnlyWhereNoUnitWas);

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_STATE_STORE_H_

#include "emulator/state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/status.h"
#include "crypto/entropy.h"
#include "emulator/state_file_system.h"
#include "tests/support/temp_dir.h"

namespace hsmsim::emulator {
namespace {

using ::hsmsim::test_support::TempDir;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

SecretBytes Bytes(std::string_view s) { return MakeSecret(s); }

// FaultyFileSystem forwards to the real file system and fails the chosen
// step once armed.
class FaultyFileSystem final : public StateFileSystem {
 public:
  enum class Fault { kNone, kWrite, kRename, kSyncDirectory };
  Fault fault = Fault::kNone;

  absl::Status CreateDirectories(const std::string& dir) override {
    return real_.CreateDirectories(dir);
  }
  absl::StatusOr<bool> FileExists(const std::string& path) override {
    return real_.FileExists(path);
  }
  absl::StatusOr<SecretBytes> ReadFile(const std::string& path) override {
    return real_.ReadFile(path);
  }
  absl::Status CreateFileExclusive(const std::string& path, absl::Span<const uint8_t> data,
                                   mode_t mode) override {
    return real_.CreateFileExclusive(path, data, mode);
  }
  absl::Status WriteFileSynced(const std::string& path, absl::Span<const uint8_t> data,
                               mode_t mode) override {
    if (fault == Fault::kWrite) {
      // A torn write: half the bytes land, then the disk is full.
      (void)real_.WriteFileSynced(path, data.first(data.size() / 2), mode);
      return Error(absl::StatusCode::kResourceExhausted, "FILE_IO_FAILED",
                   path + ": write failed: No space left on device");
    }
    return real_.WriteFileSynced(path, data, mode);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (fault == Fault::kRename) {
      return Error(absl::StatusCode::kInternal, "FILE_IO_FAILED", from + ": rename failed");
    }
    return real_.Rename(from, to);
  }
  absl::Status SyncDirectory(const std::string& dir) override {
    if (fault == Fault::kSyncDirectory) {
      return Error(absl::StatusCode::kInternal, "FILE_IO_FAILED", dir + ": fsync failed");
    }
    return real_.SyncDirectory(dir);
  }
  absl::Status RemoveFile(const std::string& path) override { return real_.RemoveFile(path); }

 private:
  PosixStateFileSystem real_;
};

class StateStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<StateStore> OpenStore() {
    auto store = StateStore::Open(dir_.Join("state"), fs_, entropy_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::string StatePath() const { return dir_.Join("state/unit.state"); }
  std::string KeyPath() const { return dir_.Join("state/device.key"); }

  absl::Status LoadStatus() {
    auto store = StateStore::Open(dir_.Join("state"), fs_, entropy_);
    if (!store.ok()) return store.status();
    return (*store)->Load().status();
  }

  TempDir dir_;
  FaultyFileSystem fs_;
  crypto::SeededEntropy entropy_{42};
};

TEST_F(StateStoreTest, NoStateFileLoadsNothing) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto loaded = store->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
}

TEST_F(StateStoreTest, RoundTrip) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("first snapshot")).ok());
  ASSERT_TRUE(store->Save(Bytes("second snapshot")).ok());

  auto reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  auto loaded = reopened->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ(AsStringView(**loaded), "second snapshot");

  std::string file = ReadAll(StatePath());
  EXPECT_EQ(file.substr(0, 8), "HSMSIMST");
  EXPECT_EQ(file.find("second snapshot"), std::string::npos) << "state must be encrypted";
}

TEST_F(StateStoreTest, DeviceKeyIsCreatedWithMode0600) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  struct stat st;
  ASSERT_EQ(::stat(KeyPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kDeviceKeySize));
  // A second open reuses the key instead of replacing it.
  std::string key = ReadAll(KeyPath());
  ASSERT_NE(OpenStore(), nullptr);
  EXPECT_EQ(ReadAll(KeyPath()), key);
}

TEST_F(StateStoreTest, EveryFlippedByteIsRefusedAsDataLossNamingTheFile) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("a snapshot of some length")).ok());
  const std::string good = ReadAll(StatePath());
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    WriteAll(StatePath(), bad);
    absl::Status status = LoadStatus();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << "byte " << i << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(StatePath())) << "byte " << i;
  }
  WriteAll(StatePath(), good);
  EXPECT_TRUE(LoadStatus().ok());
}

TEST_F(StateStoreTest, AuthenticationFailureSaysSo) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("snapshot")).ok());
  std::string bad = ReadAll(StatePath());
  bad[30] = static_cast<char>(bad[30] ^ 0x80);
  WriteAll(StatePath(), bad);
  absl::Status status = LoadStatus();
  EXPECT_EQ(ReasonOf(status), "STATE_FILE_AUTHENTICATION_FAILED");
  EXPECT_THAT(std::string(status.message()), HasSubstr("authentication failed"));
}

TEST_F(StateStoreTest, TruncatedFileIsRefused) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("a snapshot of some length")).ok());
  const std::string good = ReadAll(StatePath());
  for (size_t size : {size_t{0}, size_t{5}, size_t{12}, size_t{30}, good.size() - 1}) {
    WriteAll(StatePath(), good.substr(0, size));
    absl::Status status = LoadStatus();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << "size " << size << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(StatePath()));
  }
  WriteAll(StatePath(), good.substr(0, 20));
  EXPECT_EQ(ReasonOf(LoadStatus()), "STATE_FILE_TRUNCATED");
}

TEST_F(StateStoreTest, WrongDeviceKeyIsRefused) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("snapshot")).ok());
  std::string key = ReadAll(KeyPath());
  key[0] = static_cast<char>(key[0] ^ 0xff);
  WriteAll(KeyPath(), key);
  absl::Status status = LoadStatus();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_EQ(ReasonOf(status), "STATE_FILE_AUTHENTICATION_FAILED");
  EXPECT_THAT(std::string(status.message()), HasSubstr("another device key"));
}

TEST_F(StateStoreTest, MissingDeviceKeyWithStateIsRefusedAndNotRecreated) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("snapshot")).ok());
  ASSERT_EQ(::unlink(KeyPath().c_str()), 0);
  absl::Status status = LoadStatus();
  EXPECT_EQ(ReasonOf(status), "DEVICE_KEY_MISSING") << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(KeyPath()));
  EXPECT_FALSE(std::filesystem::exists(KeyPath()));
}

TEST_F(StateStoreTest, NewerFormatVersionIsRefusedClearly) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("snapshot")).ok());
  std::string file = ReadAll(StatePath());
  file[8] = 2;  // little-endian version 2
  WriteAll(StatePath(), file);
  absl::Status status = LoadStatus();
  EXPECT_EQ(ReasonOf(status), "UNSUPPORTED_STATE_FILE_VERSION") << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(StatePath()));
  EXPECT_THAT(std::string(status.message()), HasSubstr("format version 2 is newer"));
}

TEST_F(StateStoreTest, BadMagicIsRefused) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("snapshot")).ok());
  std::string file = ReadAll(StatePath());
  file.replace(0, 8, "NOTSTATE");
  WriteAll(StatePath(), file);
  EXPECT_EQ(ReasonOf(LoadStatus()), "BAD_STATE_FILE_MAGIC");
}

TEST_F(StateStoreTest, FailedWriteLeavesPreviousStateLoadable) {
  for (auto fault : {FaultyFileSystem::Fault::kWrite, FaultyFileSystem::Fault::kRename}) {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Save(Bytes("good state")).ok());
    fs_.fault = fault;
    absl::Status saved = store->Save(Bytes("state that never lands"));
    fs_.fault = FaultyFileSystem::Fault::kNone;
    EXPECT_FALSE(saved.ok());
    EXPECT_THAT(std::string(saved.message()), HasSubstr("unit.state.tmp"));

    auto reopened = OpenStore();
    ASSERT_NE(reopened, nullptr);
    auto loaded = reopened->Load();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->has_value());
    EXPECT_EQ(AsStringView(**loaded), "good state");
    EXPECT_FALSE(std::filesystem::exists(StatePath() + ".tmp"));
  }
}

TEST_F(StateStoreTest, TempFileDoesNotSurviveSuccessfulWrite) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Save(Bytes("snapshot")).ok());
  EXPECT_TRUE(std::filesystem::exists(StatePath()));
  EXPECT_FALSE(std::filesystem::exists(StatePath() + ".tmp"));
  struct stat st;
  ASSERT_EQ(::stat(StatePath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(StateStoreTest, LoadOrCreateUnitCreatesOnceThenRestores) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto created = LoadOrCreateUnit(*store, entropy_);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(std::filesystem::exists(StatePath()));
  auto restored = LoadOrCreateUnit(*store, entropy_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->unit_id(), (*created)->unit_id());
}

TEST_F(StateStoreTest, LoadOrCreateUnitNeverStartsBlankWhereAUnitsStateIsGone) {
  std::array<uint8_t, firmware::kUnitIdSize> first_id{};
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->device_key_created());
    auto created = LoadOrCreateUnit(*store, entropy_);
    ASSERT_TRUE(created.ok()) << created.status();
    first_id = (*created)->unit_id();
  }
  ASSERT_TRUE(std::filesystem::remove(StatePath()));  // device.key stays
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->device_key_created());
  auto unit = LoadOrCreateUnit(*store, entropy_);
  ASSERT_FALSE(unit.ok());
  EXPECT_EQ(unit.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(unit.status()), "UNIT_STATE_MISSING");
  EXPECT_THAT(std::string(unit.status().message()),
              ::testing::AllOf(HasSubstr(StatePath() + " is missing but " + KeyPath() + " exists"),
                               HasSubstr("--new-unit")));
  EXPECT_FALSE(std::filesystem::exists(StatePath())) << "no blank unit was saved";
  // Replacing the unit is deliberate: a new unit, with another id.
  auto replaced = LoadOrCreateUnit(*store, entropy_, NewUnitPolicy::kAllowed);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_NE((*replaced)->unit_id(), first_id);
  EXPECT_TRUE(std::filesystem::exists(StatePath()));
}

TEST_F(StateStoreTest, LoadOrCreateUnitNeverStartsBlankOverADamagedFile) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(LoadOrCreateUnit(*store, entropy_).ok());
  std::string file = ReadAll(StatePath());
  file.back() = static_cast<char>(file.back() ^ 0x01);
  WriteAll(StatePath(), file);
  auto unit = LoadOrCreateUnit(*store, entropy_);
  EXPECT_EQ(unit.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadAll(StatePath()), file) << "the damaged file must be left as it is";
}

}  // namespace
}  // namespace hsmsim::emulator

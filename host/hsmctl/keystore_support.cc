#include "host/hsmctl/keystore_support.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/internal/pq.h"
#include "proto/wire/blob_format.h"

namespace hsmsim::hsmctl {

std::string KeystorePath(const Invocation& inv, const host::FleetManifest& manifest) {
  if (!manifest.keystore.empty()) return manifest.keystore;
  return (std::filesystem::path(FleetDir(inv)) / "keystore.db").string();
}

absl::StatusOr<std::unique_ptr<host::Keystore>> OpenKeystore(const Invocation& inv,
                                                             const host::FleetManifest& manifest,
                                                             bool create) {
  return host::OpenKeystore(KeystorePath(inv, manifest), create);
}

absl::StatusOr<std::vector<host::WkidPairCount>> KeyCounts(const Invocation& inv,
                                                           const host::FleetManifest& manifest) {
  auto store = OpenKeystore(inv, manifest, false);
  if (!store.ok()) {
    if (ReasonOf(store.status()) == reason::kNoKeystore) return std::vector<host::WkidPairCount>();
    return store.status();
  }
  return (*store)->CountByWkid();
}

absl::StatusOr<std::vector<host::WkidPairCount>> QuarantinedCounts(
    const Invocation& inv, const host::FleetManifest& manifest) {
  auto store = OpenKeystore(inv, manifest, false);
  if (!store.ok()) {
    if (ReasonOf(store.status()) == reason::kNoKeystore) return std::vector<host::WkidPairCount>();
    return store.status();
  }
  return (*store)->CountQuarantined();
}

std::vector<host::UnitChannel*> Channels(std::vector<UnitConnection>& conns) {
  std::vector<host::UnitChannel*> out;
  for (UnitConnection& c : conns) out.push_back(c.client.get());
  return out;
}

std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> UnitPairs(
    std::vector<UnitConnection>& conns) {
  std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> out;
  for (UnitConnection& c : conns) out.emplace_back(c.unit, c.client.get());
  return out;
}

std::vector<host::UnitObservation> ObserveAll(std::vector<UnitConnection>& conns) {
  std::vector<host::UnitObservation> out;
  for (UnitConnection& c : conns) out.push_back(host::UnitObservation{c.unit, c.client->GetInfo()});
  return out;
}

absl::Status RefuseDuringRotation(host::Keystore& keystore) {
  HSMSIM_ASSIGN_OR_RETURN(auto journal, keystore.ReadJournal());
  if (journal.has_value() && journal->phase != host::RotationPhase::kDone) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kRotationInProgress,
                 StrCat("a master key rotation is in progress (phase ",
                        host::RotationPhaseName(journal->phase),
                        "); operational workloads wait until it completes: hsmctl mk rotate "
                        "--resume, or hsmctl recover"));
  }
  return absl::OkStatus();
}

ProgressPrinter::ProgressPrinter(bool quiet)
    : quiet_(quiet),
      tty_(::isatty(STDERR_FILENO) == 1),
      last_line_(std::chrono::steady_clock::now()) {}

void ProgressPrinter::Update(const host::RotationProgress& p) {
  const double rate = p.seconds > 0 ? static_cast<double>(p.done) / p.seconds : 0;
  const double eta =
      rate > 0 && p.total > p.done ? static_cast<double>(p.total - p.done) / rate : 0;
  if (!publish_path_.empty()) Publish(p, rate, eta);
  if (quiet_) return;
  if (tty_) {
    constexpr int kWidth = 30;
    int filled =
        p.total > 0 ? static_cast<int>(kWidth * p.done / std::max<int64_t>(p.total, 1)) : kWidth;
    filled = std::min(filled, kWidth);
    std::fprintf(stderr, "\r%-13s [%s%s] %lld/%lld keys  %.0f keys/s  ETA %.0fs   ",
                 p.phase.c_str(), std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(kWidth - filled), '.').c_str(),
                 static_cast<long long>(p.done), static_cast<long long>(p.total), rate, eta);
    drawn_ = true;
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (now - last_line_ < std::chrono::seconds(2) && p.done < p.total) return;
  last_line_ = now;
  std::fprintf(stderr, "%s: %lld/%lld keys, %.0f keys/s, ETA %.0fs\n", p.phase.c_str(),
               static_cast<long long>(p.done), static_cast<long long>(p.total), rate, eta);
}

namespace {

// RemoveDeadPublishersTemporaries removes PATH.tmp.PID files beside `path`
// whose PID is not a running process: what an hsmctl killed between
// writing and renaming its progress file leaves. Best effort.
void RemoveDeadPublishersTemporaries(const std::string& path) {
  const std::filesystem::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  std::filesystem::directory_iterator it(target.parent_path().empty() ? "." : target.parent_path(),
                                         ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH)
      continue;  // running, or not ours to judge
    std::error_code ignored;
    std::filesystem::remove(it->path(), ignored);  // a link is removed, never followed
  }
}

}  // namespace

void ProgressPrinter::PublishTo(std::string path) {
  publish_path_ = std::move(path);
  RemoveDeadPublishersTemporaries(publish_path_);
}

void ProgressPrinter::Publish(const host::RotationProgress& p, double rate, double eta) {
  const auto now = std::chrono::steady_clock::now();
  if (p.phase == published_phase_ && p.done < p.total &&
      now - last_published_ < std::chrono::milliseconds(250)) {
    return;
  }
  published_phase_ = p.phase;
  last_published_ = now;
  json doc{
      {"pid", static_cast<int64_t>(::getpid())},
      {"host", host::RotationLockHolder::Self("").host},
      {"phase", p.phase},
      {"keys_done", p.done},
      {"keys_total", p.total},
      {"seconds", std::round(p.seconds * 100) / 100},
      {"keys_per_second", std::round(rate)},
      {"eta_seconds", std::round(eta)},
      {"keys_per_unit", p.keys_per_unit},
      {"updated_at",
       std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()}};
  const std::string tmp = StrCat(publish_path_, ".tmp.", ::getpid());
  {
    // Never through a symbolic link someone put at the temporary name.
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return;
    const std::string text = doc.dump() + "\n";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!written) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, publish_path_, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

std::string ProgressFilePath(const Invocation& inv, const host::FleetManifest& manifest) {
  const std::string keystore = KeystorePath(inv, manifest);
  // A keystore on a database server: the progress file goes in the fleet
  // directory, where the console of this machine reads it.
  if (host::internal::IsPostgresUrl(keystore)) {
    return (std::filesystem::path(FleetDir(inv)) / "keystore.progress.json").string();
  }
  return keystore + ".progress.json";
}

namespace {

// The most a progress file may hold, and the most units it may name.
constexpr size_t kMaxProgressFileBytes = 64 * 1024;
constexpr size_t kMaxPublishedUnits = 64;

// ReadSmallRegularFile returns the file at `path` when it is a regular file
// (not followed through a link, never blocking on a FIFO) of at most
// kMaxProgressFileBytes, else nothing.
std::optional<std::string> ReadSmallRegularFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<size_t>(st.st_size) <= kMaxProgressFileBytes) {
    text.resize(kMaxProgressFileBytes + 1);
    const ssize_t n = ::read(fd, text.data(), text.size());
    text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  if (text.empty() || text.size() > kMaxProgressFileBytes) return std::nullopt;
  return text;
}

}  // namespace

json ReadPublishedProgress(const Invocation& inv) {
  auto manifest = host::LoadFleetManifest(FleetDir(inv));
  if (!manifest.ok()) return nullptr;
  std::optional<std::string> text = ReadSmallRegularFile(ProgressFilePath(inv, *manifest));
  if (!text.has_value()) return nullptr;
  const json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  // Anyone who can write beside the keystore can write this file: only
  // the fields the console shows are kept, each of the type it expects.
  if (!doc.is_object() || !doc.contains("pid") || !doc["pid"].is_number_integer()) return nullptr;
  json out{{"pid", doc["pid"].get<int64_t>()}};
  // The publisher's host name (as the rotation lock records it: a keystore
  // shared by hosts makes a pid alone ambiguous); null when absent.
  out["host"] = doc.contains("host") && doc["host"].is_string() &&
                        doc["host"].get_ref<const std::string&>().size() <= 255
                    ? doc["host"]
                    : json(nullptr);
  for (const char* number : {"keys_per_second", "eta_seconds"}) {
    out[number] = doc.contains(number) && doc[number].is_number() ? doc[number] : json(nullptr);
  }
  json units = json::object();
  if (doc.contains("keys_per_unit") && doc["keys_per_unit"].is_object()) {
    for (const auto& [name, keys] : doc["keys_per_unit"].items()) {
      if (units.size() >= kMaxPublishedUnits) break;
      if (name.size() <= 64 && keys.is_number_integer()) units[name] = keys.get<int64_t>();
    }
  }
  out["keys_per_unit"] = std::move(units);
  return out;
}

void ProgressPrinter::Finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> Base64Decode(std::string_view text) {
  std::string clean;
  for (char c : text) {
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') clean.push_back(c);
  }
  if (clean.empty() || clean.size() % 4 != 0 || clean.size() > 8192) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadBase64,
                 StrCat("input is not base64 (", clean.size(), " characters)"));
  }
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadBase64,
                 "input is not valid base64");
  }
  size_t pad = 0;
  if (clean.back() == '=') ++pad;
  if (clean.size() >= 2 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace hsmsim::hsmctl

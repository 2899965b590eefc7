// Where a fleet keeps its keys: hsmctl keys set-keystore, and the checks
// that fleet up --keystore shares (a SQLite file, or a PostgreSQL URL
// without a password: docs/cli.md, docs/deployment.md).
#include <filesystem>
#include <iostream>

#include "CLI/CLI.hpp"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/fleet_manifest.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/keystore_support.h"
#include "host/internal/pq.h"

namespace hsmsim::hsmctl {

absl::Status CheckKeystoreLocation(const std::string& location) {
  if (location.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kNoKeystore,
                 "the keystore location is empty");
  }
  if (host::internal::IsPostgresUrl(location) && host::internal::UrlHasPassword(location)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kKeystoreUrlHasPassword,
                 "the keystore URL names a password (not repeated here); fleet.json would keep "
                 "it. Give it in a password file instead (PGPASSFILE or ~/.pgpass, libpq "
                 "section 34.16) or PGPASSWORD");
  }
  return absl::OkStatus();
}

std::string StoredKeystoreLocation(const std::string& location) {
  if (host::internal::IsPostgresUrl(location)) return location;
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(location, ec);
  return ec ? location : absolute.lexically_normal().string();
}

std::string ShownKeystoreLocation(const std::string& location) {
  return host::internal::IsPostgresUrl(location) ? host::internal::RedactPostgresUrl(location)
                                                 : location;
}

namespace {

// LeftBehind returns what the keystore at `location` still holds (keys, an
// open rotation) as a KEYSTORE_NOT_EMPTY error, OK when it holds nothing
// or does not exist.
absl::Status LeftBehind(const std::string& location) {
  auto store = host::OpenKeystore(location, false);
  if (!store.ok()) {
    return ReasonOf(store.status()) == reason::kNoKeystore ? absl::OkStatus() : store.status();
  }
  HSMSIM_ASSIGN_OR_RETURN(int64_t keys, (*store)->CountKeys());
  HSMSIM_ASSIGN_OR_RETURN(std::optional<host::RotationJournal> journal, (*store)->ReadJournal());
  const bool open_rotation = journal.has_value() && journal->phase != host::RotationPhase::kDone;
  if (keys == 0 && !open_rotation) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeystoreNotEmpty,
               StrCat("the fleet's keystore ", ShownKeystoreLocation(location), " holds ", keys,
                      " key(s)", open_rotation ? " and an open rotation" : "",
                      "; a new location would leave them behind (hsmctl does not copy keys "
                      "between keystores). Nothing changed"));
}

int RunSetKeystore(Invocation& inv, const std::string& given) {
  const std::string location = StoredKeystoreLocation(given);
  const std::string dir = FleetDir(inv);
  auto manifest = host::LoadFleetManifest(dir);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  if (absl::Status ok = CheckKeystoreLocation(location); !ok.ok()) return Fail(inv, ok);
  const std::string current = KeystorePath(inv, *manifest);
  if (current != location) {
    if (absl::Status left = LeftBehind(current); !left.ok()) return Fail(inv, left);
  }
  // Open (and create) it before fleet.json names it: a wrong login or an
  // unreachable server changes nothing.
  auto store = host::OpenKeystore(location, true);
  if (!store.ok()) return Fail(inv, store.status());
  auto keys = (*store)->CountKeys();
  if (!keys.ok()) return Fail(inv, keys.status());
  manifest->keystore = location;
  if (absl::Status saved = host::SaveFleetManifest(dir, *manifest); !saved.ok()) {
    return Fail(inv, saved);
  }
  const std::string shown = ShownKeystoreLocation(location);
  if (inv.json) {
    std::cout << json{{"command", "keys set-keystore"},
                      {"ok", true},
                      {"keystore", shown},
                      {"keys", *keys}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "fleet " << dir << " now keeps its keys in " << shown << " (" << *keys
              << " key(s) there)\n";
  }
  return kExitOk;
}

}  // namespace

void AddSetKeystoreCommand(CLI::App& keys, Invocation& inv) {
  auto location = std::make_shared<std::string>();
  CLI::App* set = keys.add_subcommand(
      "set-keystore",
      "Keep the fleet's keys at LOCATION from now on: a SQLite file, or a PostgreSQL database "
      "(postgresql://USER@HOST:PORT/DB, password from PGPASSFILE, ~/.pgpass or PGPASSWORD), "
      "created if new; refused while the current keystore holds keys or an open rotation");
  set->add_option("LOCATION", *location, "SQLite file path or postgresql:// URL")->required();
  AddFleetOption(set, inv);
  AddJsonOption(set, inv);
  set->callback([&inv, location] {
    inv.action = [&inv, location] { return RunSetKeystore(inv, *location); };
  });
}

}  // namespace hsmsim::hsmctl

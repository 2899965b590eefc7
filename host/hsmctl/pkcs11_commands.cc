// hsmctl pkcs11 set-pin: the user PIN of the fleet's PKCS#11 token
// (libhsmsim-pkcs11.so, docs/pkcs11.md), set by the operator on the host.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/fleet_manifest.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/json_reports.h"
#include "host/hsmctl/keystore_support.h"
#include "host/internal/pq.h"
#include "host/keystore.h"
#include "pkcs11/token_store.h"

namespace hsmsim::hsmctl {
namespace {

// ReadPinFile returns the first line of `path`, without its line break.
absl::StatusOr<SecretBytes> ReadPinFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return Error(absl::StatusCode::kNotFound, reason::kFileUnreadable,
                 StrCat("cannot read the PIN file ", path));
  }
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  SecretBytes pin = MakeSecret(line);
  WipeString(&line);
  return pin;
}

absl::StatusOr<std::string> SetPin(const Invocation& inv, const std::string& pin_file) {
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes pin, ReadPinFile(pin_file));
  HSMSIM_RETURN_IF_ERROR(pkcs11::ValidatePin(pin));
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, host::LoadFleetManifest(FleetDir(inv)));
  const std::string path = KeystorePath(inv, manifest);
  if (host::internal::IsPostgresUrl(path)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kBadPkcs11Config,
                 "the fleet keeps its keys in PostgreSQL; the PKCS#11 token lives beside a SQLite "
                 "keystore only (docs/pkcs11.md)");
  }
  // The token lives beside the keystore: make it when the fleet has none yet.
  HSMSIM_RETURN_IF_ERROR(host::OpenSqliteKeystore(path, /*create=*/true).status());
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<pkcs11::TokenStore> store,
                          pkcs11::TokenStore::Open(path));
  HSMSIM_RETURN_IF_ERROR(store->SetPin(pkcs11::PinRole::kUser, pin));
  return path;
}

}  // namespace

void AddPkcs11Commands(CLI::App& app, Invocation& inv) {
  CLI::App* pkcs11 =
      app.add_subcommand("pkcs11", "The fleet's PKCS#11 token (libhsmsim-pkcs11.so)");
  pkcs11->require_subcommand(1);
  CLI::App* set_pin = pkcs11->add_subcommand(
      "set-pin",
      "Set the token's user PIN from the first line of a file; clears the wrong-PIN count");
  auto pin_file = std::make_shared<std::string>();
  set_pin->add_option("--pin-file", *pin_file, "File whose first line is the new PIN (4..64 bytes)")
      ->required();
  AddFleetOption(set_pin, inv);
  AddJsonOption(set_pin, inv);
  set_pin->callback([&inv, pin_file] {
    inv.action = [&inv, pin_file] {
      absl::StatusOr<std::string> path = SetPin(inv, *pin_file);
      if (!path.ok()) return Fail(inv, path.status());
      if (inv.json) {
        std::cout << json{{"command", "pkcs11 set-pin"}, {"ok", true}, {"keystore", *path}}.dump(2)
                  << "\n";
      } else {
        std::cout << "user PIN set for the PKCS#11 token of keystore " << *path
                  << "; wrong-PIN count cleared\n";
      }
      return kExitOk;
    };
  });
}

}  // namespace hsmsim::hsmctl

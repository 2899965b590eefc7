// hsmctl admin keygen | add | rm, and hsmctl thresholds set.
#include <iostream>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/verification_pattern.h"
#include "host/hsmctl/context.h"
#include "host/password.h"
#include "host/signed_command.h"

namespace hsmsim::hsmctl {
namespace {

struct KeygenOptions {
  std::string name;
  std::string out;
};

int RunKeygen(Invocation& inv, const KeygenOptions& o) {
  auto key = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
  if (!key.ok()) return Fail(inv, key.status());
  auto admin = host::MakeAdminKey(o.name, std::move(*key));
  if (!admin.ok()) return Fail(inv, admin.status());
  auto password = GetPassword(inv, "Password for the new admin key: ", /*confirm=*/true);
  if (!password.ok()) return Fail(inv, password.status());
  absl::Status written = host::WriteAdminKeyFile(o.out, *admin, *password);
  if (!written.ok()) return Fail(inv, written);
  const std::string key_id = ToHex(admin->key_id);
  if (inv.json) {
    std::cout << json{{"command", "admin keygen"},
                      {"ok", true},
                      {"name", admin->name},
                      {"key_id", key_id},
                      {"file", o.out}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "administrator '" << admin->name << "' key " << key_id << " written to " << o.out
              << "\n";
  }
  return kExitOk;
}

// SendOp issues `op` on one unit and records the counter after it.
absl::Status SendOp(UnitConnection& c, const v1::GetInfoResponse& info, const v1::Command& op,
                    const std::vector<const host::AdminKey*>& signers, UnitOutcome& o) {
  auto result = host::IssueCommand(*c.client, info, op, signers);
  if (!result.ok()) return result.status();
  o.details["transaction_counter"] = result->info().transaction_counter();
  return absl::OkStatus();
}

int RunAdminAdd(Invocation& inv, const std::vector<std::string>& files) {
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  // The new administrators' files are opened with the same password.
  std::vector<host::AdminKey> admins;
  {
    auto password = GetPassword(inv, "Password: ");
    if (!password.ok()) return Fail(inv, password.status());
    for (const std::string& file : files) {
      auto admin = host::ReadAdminKeyFile(file, *password);
      if (!admin.ok()) return Fail(inv, admin.status());
      admins.push_back(std::move(*admin));
    }
  }
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  const auto signer_ptrs = SignerPointers(*signers);
  auto outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& first, UnitOutcome& o) -> absl::Status {
        v1::GetInfoResponse info = first;
        json added = json::array();
        json present = json::array();
        for (const host::AdminKey& admin : admins) {
          const std::string key_id = crypto::AsString(admin.key_id);
          bool installed = false;
          for (const v1::AdministratorInfo& a : info.administrators())
            installed |= a.key_id() == key_id;
          if (installed) {
            present.push_back(admin.name);
            continue;
          }
          v1::Command op;
          op.mutable_add_admin()->set_name(admin.name);
          op.mutable_add_admin()->set_public_key(admin.public_key_der);
          auto result = host::IssueCommand(*c.client, info, op, signer_ptrs);
          if (!result.ok()) {
            return WithContext(result.status(), StrCat("adding '", admin.name, "'"));
          }
          info = result->info();
          added.push_back(admin.name);
        }
        o.details["added"] = added;
        o.details["already_installed"] = present;
        o.details["administrators"] = info.administrators_size();
        o.text = StrCat("added ", added.size(), ", already installed ", present.size(), "; ",
                        info.administrators_size(), " administrator(s)");
        return absl::OkStatus();
      });
  return ReportOutcomes(inv, "admin add", outcomes);
}

int RunAdminRm(Invocation& inv, const std::string& name) {
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  const auto signer_ptrs = SignerPointers(*signers);
  auto outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& info, UnitOutcome& o) -> absl::Status {
        const v1::AdministratorInfo* found = nullptr;
        for (const v1::AdministratorInfo& a : info.administrators()) {
          if (a.name() == name) found = &a;
        }
        if (found == nullptr) {
          return Error(absl::StatusCode::kNotFound, "NO_SUCH_ADMIN",
                       StrCat("unit ", c.unit.name, " has no administrator '", name, "'"));
        }
        v1::Command op;
        op.mutable_remove_admin()->set_key_id(found->key_id());
        o.text = StrCat("removed '", name, "'");
        return SendOp(c, info, op, signer_ptrs, o);
      });
  return ReportOutcomes(inv, "admin rm", outcomes);
}

int RunThresholdsSet(Invocation& inv, uint32_t signature, uint32_t revocation) {
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  const auto signer_ptrs = SignerPointers(*signers);
  auto outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& info, UnitOutcome& o) -> absl::Status {
        v1::Command op;
        op.mutable_set_thresholds()->set_signature_threshold(signature);
        op.mutable_set_thresholds()->set_revocation_threshold(revocation);
        o.text = StrCat("signature threshold ", signature, ", revocation threshold ", revocation);
        return SendOp(c, info, op, signer_ptrs, o);
      });
  return ReportOutcomes(inv, "thresholds set", outcomes);
}

}  // namespace

void AddAdminCommands(CLI::App& app, Invocation& inv) {
  CLI::App* admin = app.add_subcommand("admin", "Administrator keys and their installation");
  admin->require_subcommand(1);

  auto keygen_opts = std::make_shared<KeygenOptions>();
  CLI::App* keygen = admin->add_subcommand(
      "keygen", "Create a P-521 administrator key in a password-protected file");
  keygen->add_option("--name", keygen_opts->name, "Administrator name (1..30 characters)")
      ->required();
  keygen->add_option("--out", keygen_opts->out, "File to create (never overwritten)")->required();
  AddPasswordOption(keygen, inv);
  AddJsonOption(keygen, inv);
  keygen->callback([&inv, keygen_opts] {
    inv.action = [&inv, keygen_opts] { return RunKeygen(inv, *keygen_opts); };
  });

  auto files = std::make_shared<std::vector<std::string>>();
  CLI::App* add = admin->add_subcommand(
      "add", "Install administrators (from their key files) on every selected unit");
  add->add_option("FILE", *files, "Administrator key files")->required();
  AddSignOption(add, inv);
  AddUnitOptions(add, inv);
  AddJsonOption(add, inv);
  add->callback([&inv, files] { inv.action = [&inv, files] { return RunAdminAdd(inv, *files); }; });

  auto name = std::make_shared<std::string>();
  CLI::App* rm = admin->add_subcommand("rm", "Remove an administrator from every selected unit");
  rm->add_option("NAME", *name, "Administrator name")->required();
  AddSignOption(rm, inv);
  AddUnitOptions(rm, inv);
  AddJsonOption(rm, inv);
  rm->callback([&inv, name] { inv.action = [&inv, name] { return RunAdminRm(inv, *name); }; });

  CLI::App* thresholds = app.add_subcommand("thresholds", "Signature and revocation thresholds");
  thresholds->require_subcommand(1);
  auto values = std::make_shared<std::pair<uint32_t, uint32_t>>(0, 0);
  CLI::App* set = thresholds->add_subcommand(
      "set", "Set both thresholds on every selected unit (leaves imprint mode)");
  set->add_option("--signature", values->first, "Signature threshold (1..8)")
      ->required()
      ->check(CLI::Range(1, 8));
  set->add_option("--revocation", values->second, "Revocation threshold (1..8)")
      ->required()
      ->check(CLI::Range(1, 8));
  AddSignOption(set, inv);
  AddUnitOptions(set, inv);
  AddJsonOption(set, inv);
  set->callback([&inv, values] {
    inv.action = [&inv, values] { return RunThresholdsSet(inv, values->first, values->second); };
  });
}

}  // namespace hsmsim::hsmctl

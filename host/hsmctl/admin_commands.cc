// hsmctl admin keygen | add | rm, and hsmctl thresholds set.
#include <filesystem>
#include <iostream>
#include <map>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/verification_pattern.h"
#include "host/admin_public_key.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/key_sources.h"
#include "host/hsmctl/keystore_support.h"
#include "host/hsmctl/register_change_support.h"
#include "host/password.h"
#include "host/signed_command.h"

namespace hsmsim::hsmctl {
namespace {

struct KeygenOptions {
  std::string name;
  std::string out;
  std::string public_out;  // --public-out: the public key file, if wanted
  int kdf_cost = host::kAdminKeyPbkdf2Iterations;
};

int RunKeygen(Invocation& inv, const KeygenOptions& o) {
  auto key = crypto::GenerateP521(crypto::OpenSslEntropyInstance());
  if (!key.ok()) return Fail(inv, key.status());
  auto admin = host::MakeAdminKey(o.name, std::move(*key));
  if (!admin.ok()) return Fail(inv, admin.status());
  auto password = NewFilePassword(inv, o.out, "Password for the new admin key: ");
  if (!password.ok()) return Fail(inv, password.status());
  if (!o.public_out.empty() && std::filesystem::exists(o.public_out)) {
    return Fail(inv, Error(absl::StatusCode::kAlreadyExists, reason::kFileExists,
                           StrCat(o.public_out, " exists; it is never overwritten")));
  }
  absl::Status written =
      host::WriteAdminKeyFile(o.out, *admin, AsStringView(*password), o.kdf_cost);
  if (!written.ok()) return Fail(inv, written);
  if (!o.public_out.empty()) {
    auto text = host::SerializeAdminPublicKey(*admin);
    if (!text.ok()) return Fail(inv, text.status());
    if (absl::Status s = host::WriteNewFile(o.public_out, *text, 0600); !s.ok()) {
      return Fail(inv, s);
    }
  }
  const std::string key_id = ToHex(admin->key_id);
  if (inv.json) {
    std::cout << json{{"command", "admin keygen"}, {"ok", true},    {"name", admin->name},
                      {"key_id", key_id},          {"file", o.out}, {"public_file", o.public_out}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "administrator '" << admin->name << "' key " << key_id << " written to " << o.out
              << (o.public_out.empty() ? std::string() : StrCat(", public key to ", o.public_out))
              << "\n";
  }
  return kExitOk;
}

// SendOp issues `op` on one unit and records the counter after it.
absl::Status SendOp(SignedUnit& u, const v1::Command& op) {
  HSMSIM_RETURN_IF_ERROR(u.Issue(op).status());
  u.outcome.details["transaction_counter"] = u.info.transaction_counter();
  return absl::OkStatus();
}

// ExpectedAdmins is the administrator set a ceremony intends: key id (raw
// bytes) to a name to show. In imprint mode anyone who reaches a unit can
// add an administrator without a signature, so before `admin add` and
// `thresholds set` build on what is installed, every installed key must be
// one of these.
using ExpectedAdmins = std::map<std::string, std::string>;

bool IsKeyIdHex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
}

// AddExpected adds the --expect-admins entries: a key id (64 hex digits, as
// `admin keygen` and `status --long` print it) when no file has that name,
// else an administrator key file opened with the invocation's password.
absl::Status AddExpected(Invocation& inv, const std::vector<std::string>& entries,
                         ExpectedAdmins& expected) {
  for (const std::string& entry : entries) {
    std::error_code ec;
    if (IsKeyIdHex(entry) && !std::filesystem::exists(entry, ec)) {
      HSMSIM_ASSIGN_OR_RETURN(std::string id, FromHex(entry));
      expected.emplace(std::move(id), StrCat("key ", entry.substr(0, 16)));
      continue;
    }
    HSMSIM_ASSIGN_OR_RETURN(host::AdminKey admin, OpenAdminPublicKey(inv, entry));
    expected.emplace(crypto::AsString(admin.key_id), admin.name);
  }
  return absl::OkStatus();
}

void AddKeys(const std::vector<host::AdminKey>& keys, ExpectedAdmins& expected) {
  for (const host::AdminKey& k : keys) expected.emplace(crypto::AsString(k.key_id), k.name);
}

// CheckInstalledAdmins returns FAILED_PRECONDITION (UNEXPECTED_ADMINISTRATOR)
// naming the unit and each installed administrator outside `expected` when
// the unit is in imprint mode; OK otherwise (in normal mode every change is
// signed under the thresholds already).
absl::Status CheckInstalledAdmins(const std::string& unit, const v1::GetInfoResponse& info,
                                  const ExpectedAdmins& expected) {
  if (info.mode() != v1::MODE_IMPRINT) return absl::OkStatus();
  std::string unexpected;
  int count = 0;
  for (const v1::AdministratorInfo& a : info.administrators()) {
    if (expected.contains(a.key_id())) continue;
    unexpected += StrCat(count++ == 0 ? "" : ", ", "'", a.name(), "' [",
                         ToHex(a.key_id()).substr(0, 16), "]");
  }
  if (count == 0) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kUnexpectedAdministrator,
               StrCat("unit ", unit, " is in imprint mode and holds ", count,
                      " administrator(s) outside the expected set: ", unexpected));
}

// CheckFleetAdmins checks every selected unit that answers before any is
// changed, so an unexpected administrator anywhere changes nothing anywhere.
// (A unit that does not answer here is checked, or reported, on its turn.)
absl::Status CheckFleetAdmins(std::vector<UnitConnection>& conns, const ExpectedAdmins& expected) {
  std::string problems;
  for (UnitConnection& c : conns) {
    auto info = c.client->GetInfo();
    if (!info.ok()) continue;
    absl::Status s = CheckInstalledAdmins(c.unit.name, *info, expected);
    if (!s.ok()) problems += StrCat(problems.empty() ? "" : "; ", s.message());
  }
  if (problems.empty()) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kUnexpectedAdministrator,
               StrCat(problems,
                      ". Nothing was changed. A unit in imprint mode accepts an unsigned admin add "
                      "from anyone who can reach it: remove them (hsmctl admin rm NAME) or "
                      "zeroize the unit, or name them with --expect-admins if they belong"));
}

// AddAdminsOnUnit installs each of `admins` the unit does not hold yet, one
// signed command each.
absl::Status AddAdminsOnUnit(SignedUnit& u, const std::vector<host::AdminKey>& admins,
                             const ExpectedAdmins& expected) {
  HSMSIM_RETURN_IF_ERROR(CheckInstalledAdmins(u.conn.unit.name, u.info, expected));
  json added = json::array();
  json present = json::array();
  for (const host::AdminKey& admin : admins) {
    const std::string key_id = crypto::AsString(admin.key_id);
    bool installed = false;
    for (const v1::AdministratorInfo& a : u.info.administrators())
      installed |= a.key_id() == key_id;
    if (installed) {
      present.push_back(admin.name);
      continue;
    }
    v1::Command op;
    op.mutable_add_admin()->set_name(admin.name);
    op.mutable_add_admin()->set_public_key(admin.public_key_der);
    if (auto result = u.Issue(op); !result.ok()) {
      return WithContext(result.status(), StrCat("adding '", admin.name, "'"));
    }
    added.push_back(admin.name);
  }
  u.outcome.details["added"] = added;
  u.outcome.details["already_installed"] = present;
  u.outcome.details["administrators"] = u.info.administrators_size();
  if (added.empty()) {
    return ReportAlready(u.outcome, StrCat("installed: all ", present.size(), "; ",
                                           u.info.administrators_size(), " administrator(s)"));
  }
  u.outcome.text = StrCat("added ", added.size(), ", already installed ", present.size(), "; ",
                          u.info.administrators_size(), " administrator(s)");
  return absl::OkStatus();
}

int RunAdminAdd(Invocation& inv, const std::vector<std::string>& files,
                const std::vector<std::string>& expect, const std::string& name) {
  if (!name.empty() && files.size() != 1) {
    return Fail(inv, Error(absl::StatusCode::kInvalidArgument, reason::kBadAdminName,
                           "--name names one administrator; give one key with it"));
  }
  std::vector<host::AdminKey> admins;
  ExpectedAdmins expected;
  SignedHooks hooks;
  hooks.prepare = [&](const std::vector<host::AdminKey>& signers, ReportHeader&) -> absl::Status {
    // Each new administrator: a public key or certificate file (no secret), a
    // key file that opens with its own secret, or a card.
    for (const std::string& file : files) {
      HSMSIM_ASSIGN_OR_RETURN(host::AdminKey admin, OpenAdminPublicKey(inv, file, name));
      admins.push_back(std::move(admin));
    }
    AddKeys(signers, expected);
    AddKeys(admins, expected);
    return AddExpected(inv, expect, expected);
  };
  hooks.precheck = [&](std::vector<UnitConnection>& conns, const host::FleetManifest&) {
    return CheckFleetAdmins(conns, expected);
  };
  return RunSignedPerUnit(
      inv, "admin add", [&](SignedUnit& u) { return AddAdminsOnUnit(u, admins, expected); }, hooks);
}

// CheckSomeUnitHolds returns NOT_FOUND (NO_SUCH_ADMIN) when no selected
// unit that answers holds an administrator called `name`: a misspelt name
// must not read as "already removed" everywhere.
absl::Status CheckSomeUnitHolds(const std::vector<host::UnitObservation>& observed,
                                const std::string& name) {
  bool answered = false;
  for (const host::UnitObservation& o : observed) {
    if (!o.info.ok()) continue;
    answered = true;
    for (const v1::AdministratorInfo& a : o.info->administrators()) {
      if (a.name() == name) return absl::OkStatus();
    }
  }
  if (!answered) return absl::OkStatus();  // each unit reports its own error
  return Error(absl::StatusCode::kNotFound, reason::kNoSuchAdmin,
               StrCat("no selected unit has an administrator '", name,
                      "' (check the name: hsmctl status --long lists them); nothing was changed"));
}

int RunAdminRm(Invocation& inv, const std::string& name) {
  SignedHooks hooks;
  hooks.precheck = [&](std::vector<UnitConnection>& conns,
                       const host::FleetManifest& manifest) -> absl::Status {
    std::vector<host::UnitObservation> observed = ObserveAll(conns);
    HSMSIM_RETURN_IF_ERROR(CheckSomeUnitHolds(observed, name));
    return GuardRegisterChange(
        inv, manifest, observed,
        host::RequestedChange::Of(host::OperatorCommand::kRemoveAdmin).WithAdminName(name));
  };
  return RunSignedPerUnit(
      inv, "admin rm",
      [&](SignedUnit& u) -> absl::Status {
        const v1::AdministratorInfo* found = nullptr;
        for (const v1::AdministratorInfo& a : u.info.administrators()) {
          if (a.name() == name) found = &a;
        }
        if (found == nullptr) {
          return ReportAlready(u.outcome, StrCat("removed: no administrator '", name, "'"));
        }
        v1::Command op;
        op.mutable_remove_admin()->set_key_id(found->key_id());
        u.outcome.text = StrCat("removed '", name, "'");
        return SendOp(u, op);
      },
      hooks);
}

int RunThresholdsSet(Invocation& inv, uint32_t signature, uint32_t revocation,
                     const std::vector<std::string>& expect) {
  ExpectedAdmins expected;
  SignedHooks hooks;
  hooks.prepare = [&](const std::vector<host::AdminKey>& signers, ReportHeader&) {
    AddKeys(signers, expected);
    return AddExpected(inv, expect, expected);
  };
  hooks.precheck = [&](std::vector<UnitConnection>& conns,
                       const host::FleetManifest& manifest) -> absl::Status {
    HSMSIM_RETURN_IF_ERROR(CheckFleetAdmins(conns, expected));
    return GuardRegisterChange(inv, manifest, ObserveAll(conns),
                               host::RequestedChange::Of(host::OperatorCommand::kSetThresholds)
                                   .WithSignatureThreshold(signature));
  };
  return RunSignedPerUnit(
      inv, "thresholds set",
      [&](SignedUnit& u) -> absl::Status {
        HSMSIM_RETURN_IF_ERROR(CheckInstalledAdmins(u.conn.unit.name, u.info, expected));
        if (u.info.mode() == v1::MODE_NORMAL && u.info.signature_threshold() == signature &&
            u.info.revocation_threshold() == revocation) {
          return ReportAlready(u.outcome, StrCat("set: signature threshold ", signature,
                                                 ", revocation threshold ", revocation));
        }
        v1::Command op;
        op.mutable_set_thresholds()->set_signature_threshold(signature);
        op.mutable_set_thresholds()->set_revocation_threshold(revocation);
        u.outcome.text =
            StrCat("signature threshold ", signature, ", revocation threshold ", revocation);
        return SendOp(u, op);
      },
      hooks);
}

void AddExpectAdminsOption(CLI::App* cmd, std::vector<std::string>& entries,
                           const std::string& help) {
  cmd->add_option("--expect-admins", entries,
                  StrCat(help,
                         ". Administrator public key, certificate or key files, or key ids "
                         "(64 hex digits), FILE|KEYID[,...]"))
      ->delimiter(',');
}

}  // namespace

void AddAdminCommands(CLI::App& app, Invocation& inv) {
  CLI::App* admin = app.add_subcommand("admin", "Administrator keys and their installation");
  admin->require_subcommand(1);

  auto keygen_opts = std::make_shared<KeygenOptions>();
  CLI::App* keygen = admin->add_subcommand(
      "keygen",
      "Create a P-521 administrator key in a password-protected file (encrypted PKCS#8: "
      "PBKDF2-HMAC-SHA-256 with 600,000 iterations, then AES-256-CBC)");
  keygen->add_option("--name", keygen_opts->name, "Administrator name (1..30 characters)")
      ->required();
  keygen->add_option("--out", keygen_opts->out, "File to create (never overwritten)")->required();
  keygen->add_option("--public-out", keygen_opts->public_out,
                     "Also write the public key (with the name) to this file, for hsmctl admin "
                     "add (never overwritten)");
  // For tests only: a cheaper PBKDF2 (>= 10000 iterations). Hidden from --help.
  keygen->add_option("--kdf-cost", keygen_opts->kdf_cost, "PBKDF2 iterations")->group("");
  AddPasswordOption(keygen, inv);
  AddJsonOption(keygen, inv);
  keygen->callback([&inv, keygen_opts] {
    inv.action = [&inv, keygen_opts] { return RunKeygen(inv, *keygen_opts); };
  });

  auto files = std::make_shared<std::vector<std::string>>();
  auto add_expect = std::make_shared<std::vector<std::string>>();
  CLI::App* add = admin->add_subcommand(
      "add",
      "Install administrators (from their public keys, certificates or key files) on every "
      "selected unit");
  add->add_option("FILE", *files,
                  "Administrators: PEM public key or X.509 certificate files (no secret "
                  "needed), admin key files, or pkcs11: URIs of keys on smart cards")
      ->required();
  auto add_name = std::make_shared<std::string>();
  add->add_option("--name", *add_name,
                  "Administrator name of a card key or of a public key or certificate file "
                  "(default: the key object's label; the file's '# name:' line, else the "
                  "certificate's subject CN)");
  AddExpectAdminsOption(add, *add_expect,
                        "In imprint mode, administrators a unit may already hold besides the "
                        "FILEs and the signers; refused (UNEXPECTED_ADMINISTRATOR) when a unit "
                        "holds anyone else");
  AddSignOption(add, inv);
  AddUnitOptions(add, inv);
  AddJsonOption(add, inv);
  add->callback([&inv, files, add_expect, add_name] {
    inv.action = [&inv, files, add_expect, add_name] {
      return RunAdminAdd(inv, *files, *add_expect, *add_name);
    };
  });

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
  auto set_expect = std::make_shared<std::vector<std::string>>();
  AddExpectAdminsOption(set, *set_expect,
                        "In imprint mode, the administrators the units may hold besides the "
                        "signers; refused (UNEXPECTED_ADMINISTRATOR) when a unit holds anyone "
                        "else");
  AddSignOption(set, inv);
  AddUnitOptions(set, inv);
  AddJsonOption(set, inv);
  set->callback([&inv, values, set_expect] {
    inv.action = [&inv, values, set_expect] {
      return RunThresholdsSet(inv, values->first, values->second, *set_expect);
    };
  });
}

}  // namespace hsmsim::hsmctl

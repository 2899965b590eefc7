// hsmctl mk load | commit | setimm | clrnew | clrcur | clrold.
#include <iostream>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "host/admin_key_file.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/keystore_support.h"
#include "host/interlock.h"
#include "host/key_part_loading.h"
#include "host/signed_command.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::hsmctl {
namespace {

int RunLoad(Invocation& inv, const std::vector<std::string>& files) {
  if (files.size() < 2 || files.size() > 3) {
    return Fail(inv, Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                           StrCat("--parts takes 2 or 3 key part files, got ", files.size())));
  }
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  auto password = GetPassword(inv, "Password: ");
  if (!password.ok()) return Fail(inv, password.status());
  std::vector<SecretBytes> parts;
  SecretBytes xored(crypto::kKeyPartSize, 0);
  for (const std::string& file : files) {
    auto bytes = host::ReadFileBytes(file);
    if (!bytes.ok()) return Fail(inv, bytes.status());
    auto part = crypto::OpenKeyPartFile(*bytes, *password);
    if (!part.ok()) return Fail(inv, WithContext(part.status(), file));
    for (size_t i = 0; i < crypto::kKeyPartSize; ++i) xored[i] ^= (*part)[i];
    parts.push_back(std::move(*part));
  }
  const std::string expected_vp = crypto::AsString(crypto::ComputeVerificationPattern(xored));
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  const auto signer_ptrs = SignerPointers(*signers);
  auto outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& first, UnitOutcome& o) -> absl::Status {
        if (first.importer_public_key().empty()) o.details["generated_importer"] = true;
        auto result = host::LoadKeyPartsOnUnit(*c.client, first, parts, signer_ptrs);
        if (!result.ok()) return result.status();
        const v1::MasterKeyRegisterInfo& reg = result->new_register();
        const bool matches =
            ConstantTimeEquals(AsBytes(reg.verification_pattern()), AsBytes(expected_vp));
        o.details["new_state"] = std::string(wire::RegisterStateName(reg.state()));
        o.details["new_verification_pattern"] = ToHex(reg.verification_pattern());
        o.details["matches_parts"] = matches;
        o.text = StrCat("NEW ", wire::RegisterStateName(reg.state()), " VP ",
                        ToHex(reg.verification_pattern()),
                        matches ? " (matches the parts)" : " (DIFFERS from the parts)");
        if (!matches) {
          return Error(absl::StatusCode::kDataLoss, reason::kVpMismatch,
                       StrCat("unit ", c.unit.name, " NEW VP ", ToHex(reg.verification_pattern()),
                              " differs from the parts' VP ", ToHex(expected_vp)));
        }
        return absl::OkStatus();
      });
  if (!inv.json) std::cout << "expected VP (XOR of the parts): " << ToHex(expected_vp) << "\n";
  return ReportOutcomes(inv, "mk load", outcomes,
                        json{{"expected_verification_pattern", ToHex(expected_vp)}});
}

int RunCommit(Invocation& inv, const std::string& vp_hex) {
  std::string vp_flag;
  if (!vp_hex.empty()) {
    auto vp = FromHex(vp_hex);
    if (!vp.ok() || vp->size() != crypto::kVerificationPatternSize) {
      return Fail(
          inv, Error(absl::StatusCode::kInvalidArgument, reason::kBadVp,
                     StrCat("--vp must be ", 2 * crypto::kVerificationPatternSize, " hex digits")));
    }
    vp_flag = *vp;
  }
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  auto conns = ConnectSelected(inv);
  if (!conns.ok()) return Fail(inv, conns.status());
  const auto signer_ptrs = SignerPointers(*signers);
  auto outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& info, UnitOutcome& o) -> absl::Status {
        std::string expected = vp_flag;
        if (expected.empty()) {
          expected = info.new_register().verification_pattern();
          if (expected.empty()) {
            return Error(absl::StatusCode::kFailedPrecondition, reason::kNewRegisterNotFull,
                         StrCat("unit ", c.unit.name, " NEW register is ",
                                wire::RegisterStateName(info.new_register().state()),
                                "; load all key parts first (hsmctl mk load)"));
          }
        }
        auto result = host::CommitNewOnUnit(*c.client, info, expected, signer_ptrs);
        if (!result.ok()) return result.status();
        const auto& reg = result->new_register();
        o.details["new_state"] = std::string(wire::RegisterStateName(reg.state()));
        o.details["new_verification_pattern"] = ToHex(reg.verification_pattern());
        o.text = StrCat("NEW ", wire::RegisterStateName(reg.state()), " VP ",
                        ToHex(reg.verification_pattern()));
        return absl::OkStatus();
      });
  return ReportOutcomes(inv, "mk commit", outcomes);
}

json RegistersJson(const v1::GetInfoResponse& info) {
  auto reg = [](const v1::MasterKeyRegisterInfo& r) {
    return json{{"state", std::string(wire::RegisterStateName(r.state()))},
                {"verification_pattern", ToHex(r.verification_pattern())}};
  };
  return {{"new", reg(info.new_register())},
          {"current", reg(info.current_register())},
          {"old", reg(info.old_register())}};
}

// RunSimple issues an op without arguments on every selected unit, after
// the interlock: the change must leave every stored key under a master key
// some unit holds, unless `force`.
int RunSimple(Invocation& inv, std::string_view command, void (*set_op)(v1::Command&),
              host::RegisterChange change, bool force) {
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  host::FleetManifest manifest;
  auto conns = ConnectSelected(inv, &manifest);
  if (!conns.ok()) return Fail(inv, conns.status());
  if (!force) {
    auto counts = KeyCounts(inv, manifest);
    if (!counts.ok()) return Fail(inv, counts.status());
    absl::Status lock = host::CheckInterlock(ObserveAll(*conns), change, *counts);
    if (!lock.ok()) return Fail(inv, lock);
  }
  const auto signer_ptrs = SignerPointers(*signers);
  auto outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& info, UnitOutcome& o) -> absl::Status {
        v1::Command op;
        set_op(op);
        auto result = host::IssueCommand(*c.client, info, op, signer_ptrs);
        if (!result.ok()) return result.status();
        const v1::GetInfoResponse& after = result->info();
        o.details["registers"] = RegistersJson(after);
        o.text = StrCat("NEW ", wire::RegisterStateName(after.new_register().state()), ", CURRENT ",
                        wire::RegisterStateName(after.current_register().state()), " ",
                        VpHex(after.current_register().verification_pattern(), false), ", OLD ",
                        wire::RegisterStateName(after.old_register().state()), " ",
                        VpHex(after.old_register().verification_pattern(), false));
        return absl::OkStatus();
      });
  return ReportOutcomes(inv, command, outcomes);
}

void AddSimple(CLI::App* parent, Invocation& inv, const char* name, const char* help,
               void (*set_op)(v1::Command&), host::RegisterChange change) {
  CLI::App* cmd = parent->add_subcommand(name, help);
  auto force = std::make_shared<bool>(false);
  cmd->add_flag("--force", *force,
                "Skip the interlock that refuses to strand stored keys under a master key no "
                "unit holds");
  AddSignOption(cmd, inv);
  AddUnitOptions(cmd, inv);
  AddJsonOption(cmd, inv);
  const std::string command =
      parent->get_parent() == nullptr ? std::string(name) : StrCat(parent->get_name(), " ", name);
  cmd->callback([&inv, command, set_op, change, force] {
    inv.action = [&inv, command, set_op, change, force] {
      return RunSimple(inv, command, set_op, change, *force);
    };
  });
}

}  // namespace

void AddMasterKeyCommands(CLI::App& app, Invocation& inv) {
  CLI::App* mk =
      app.add_subcommand("mk", "Master key registers: load, commit, set immediate, clear");
  mk->require_subcommand(1);

  auto parts = std::make_shared<std::vector<std::string>>();
  CLI::App* load = mk->add_subcommand(
      "load",
      "Load key parts into the NEW register of every selected unit (generates the "
      "importer key first where there is none)");
  load->add_option("--parts", *parts, "Key part files F1,F2[,F3]")->required()->delimiter(',');
  AddSignOption(load, inv);
  AddUnitOptions(load, inv);
  AddJsonOption(load, inv);
  load->callback([&inv, parts] { inv.action = [&inv, parts] { return RunLoad(inv, *parts); }; });

  auto vp = std::make_shared<std::string>();
  CLI::App* commit = mk->add_subcommand(
      "commit",
      "Commit the NEW register, quoting the VP it must hold (default: the VP the "
      "unit reports)");
  commit->add_option("--vp", *vp, "Expected NEW VP, 64 hex digits");
  AddSignOption(commit, inv);
  AddUnitOptions(commit, inv);
  AddJsonOption(commit, inv);
  commit->callback([&inv, vp] { inv.action = [&inv, vp] { return RunCommit(inv, *vp); }; });

  AddSimple(
      mk, inv, "setimm", "Set immediate: OLD := CURRENT, CURRENT := NEW, NEW := EMPTY",
      [](v1::Command& op) { op.mutable_set_immediate(); }, host::RegisterChange::kSetImmediate);
  AddSimple(
      mk, inv, "clrnew", "Clear the NEW register",
      [](v1::Command& op) { op.mutable_clear_new_master_key(); }, host::RegisterChange::kClearNew);
  AddSimple(
      mk, inv, "clrcur", "Clear the CURRENT register",
      [](v1::Command& op) { op.mutable_clear_current_master_key(); },
      host::RegisterChange::kClearCurrent);
  AddSimple(
      mk, inv, "clrold", "Clear the OLD register",
      [](v1::Command& op) { op.mutable_clear_old_master_key(); }, host::RegisterChange::kClearOld);
  AddSimple(
      &app, inv, "zeroize",
      "Zeroize every selected unit (back to imprint mode, all registers cleared); refused "
      "while stored keys need a master key only these units hold, unless --force",
      [](v1::Command& op) { op.mutable_zeroize(); }, host::RegisterChange::kZeroize);
}

}  // namespace hsmsim::hsmctl

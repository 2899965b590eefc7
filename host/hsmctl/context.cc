#include "host/hsmctl/context.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/hsmctl/audit_commands.h"
#include "host/hsmctl/key_sources.h"
#include "host/master_key_id.h"
#include "host/password.h"
#include "host/pinned_unit_channel.h"
#include "host/signed_command.h"
#include "host/unit_client.h"
#include "host/unit_tls.h"

namespace hsmsim::hsmctl {

void AddFleetOption(CLI::App* cmd, Invocation& inv) {
  cmd->add_option("--fleet", inv.fleet_flag,
                  "Fleet directory holding fleet.json (default: $HSMSIM_FLEET, else ./.hsmsim)");
}

void AddJsonOption(CLI::App* cmd, Invocation& inv) {
  cmd->add_flag("--json", inv.json, "Print the result as JSON on stdout");
}

void AddPasswordOption(CLI::App* cmd, Invocation& inv) {
  cmd->add_option_function<std::vector<std::string>>(
      "--password-file",
      [&inv](const std::vector<std::string>& values) {
        // PWFILE (one password for every file) at most once; FILE=PWFILE per
        // key file, as often as there are files (key_sources.h).
        for (const std::string& v : values) {
          std::error_code ec;
          const size_t eq = v.find('=');
          if (eq == std::string::npos || eq == 0 || std::filesystem::exists(v, ec)) {
            if (!inv.password_file.empty()) {
              throw CLI::ValidationError("--password-file",
                                         "one PWFILE for every file at most; give the others as "
                                         "FILE=PWFILE");
            }
            inv.password_file = v;
          } else {
            inv.file_password_files[v.substr(0, eq)] = v.substr(eq + 1);
          }
        }
      },
      "Read the password from the first line of PWFILE (default: $HSMSIM_PASSWORD, else a "
      "prompt when stdin is a terminal); FILE=PWFILE gives one key file its own password");
}

void AddSignOption(CLI::App* cmd, Invocation& inv) {
  cmd->add_option("--sign", inv.sign_files,
                  "Administrators that sign the command: key files or pkcs11: URIs of keys on "
                  "smart cards, SPEC[,SPEC...]")
      ->delimiter(',');
  AddPasswordOption(cmd, inv);
  AddPkcs11ModuleOption(cmd, inv);
}

void AddNamedUnitOptions(CLI::App* cmd, Invocation& inv) {
  AddFleetOption(cmd, inv);
  cmd->add_option("--timeout-ms", inv.timeout_ms, "Timeout of each request to a unit")
      ->capture_default_str()
      ->check(CLI::Range(1, 3'600'000));
}

void AddUnitOptions(CLI::App* cmd, Invocation& inv) {
  AddNamedUnitOptions(cmd, inv);
  cmd->add_option("--unit", inv.unit_names,
                  "Apply to these units of fleet.json, NAME[,NAME...], instead of its selection "
                  "(for this command only; fleet.json is not changed)")
      ->delimiter(',');
}

std::string FleetDir(const Invocation& inv) {
  if (!inv.fleet_flag.empty()) return inv.fleet_flag;
  if (const char* env = std::getenv(kFleetEnv); env != nullptr && *env != '\0') return env;
  return ".hsmsim";
}

static_assert(kExitRefused == static_cast<int>(reason::ExitClass::kRefused));
static_assert(kExitUnreachable == static_cast<int>(reason::ExitClass::kUnreachable));
static_assert(kExitBadInput == static_cast<int>(reason::ExitClass::kBadInput));

std::string ExitCodeHelp() {
  struct Row {
    int code;
    const char* meaning;
  };
  static constexpr Row kRows[] = {
      {kExitOk, "success (on every selected unit)"},
      {kExitRefused,
       "refused or failed on a unit, or refused before any unit was changed (a pre-check, "
       "the interlock, a confirmation); compare found differences; recover found something "
       "to do"},
      {kExitUsage, "usage error: unknown command or option, missing or out-of-range value"},
      {kExitUnreachable,
       "a unit was unreachable or did not answer in time (takes precedence over 1)"},
      {kExitBadInput,
       "bad input on the operator's side: fleet.json, keystore, key name, file, password "
       "or smart card"},
  };
  std::string out = "Exit codes:";
  for (const Row& row : kRows) out += StrCat("\n  ", row.code, "  ", row.meaning);
  return out;
}

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  // A reason this build does not declare (a newer unit's) is a refusal.
  return static_cast<int>(
      reason::ExitClassOf(ReasonOf(status)).value_or(reason::ExitClass::kRefused));
}

std::string UnitLineMessage(std::string_view unit, std::string_view message) {
  const std::string named = StrCat("unit ", unit, ": ");
  const std::string located = StrCat("unit ", unit, " at ");
  std::string out;
  size_t pos = 0;
  while (pos < message.size()) {
    const std::string_view rest = message.substr(pos);
    // Only at the start of the message or after a separator, so that
    // "unit unit1" inside another name is left alone.
    const bool boundary = pos == 0 || message[pos - 1] == ' ' || message[pos - 1] == '(';
    if (boundary && rest.starts_with(named)) {
      pos += named.size();
    } else if (boundary && rest.starts_with(located)) {
      out += "at ";
      pos += located.size();
    } else {
      out += message[pos++];
    }
  }
  return out;
}

json FailureJson(const absl::Status& status) {
  return json{{"ok", false}, {"error", StatusJson(status)}};
}

json StatusJson(const absl::Status& status) {
  return {{"code", static_cast<int>(status.code())},
          {"reason", ReasonOf(status)},
          {"message", std::string(status.message())}};
}

int Fail(const Invocation& inv, const absl::Status& status) {
  std::cerr << "hsmctl: " << ReasonOf(status) << ": " << std::string(status.message()) << "\n";
  // An error message may quote bytes that are not UTF-8: replaced, never a
  // throw in the middle of reporting a failure.
  if (inv.json) {
    std::cout << FailureJson(status).dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return ExitCodeFor(status);
}

absl::StatusOr<std::string_view> GetPassword(Invocation& inv, std::string_view prompt,
                                             bool confirm) {
  if (!inv.password.has_value()) {
    HSMSIM_ASSIGN_OR_RETURN(SecretBytes password,
                            host::ResolvePassword(inv.password_file, prompt, confirm));
    inv.password = std::move(password);
  }
  return AsStringView(*inv.password);
}

absl::StatusOr<std::vector<host::AdminKey>> LoadSigners(Invocation& inv) {
  std::vector<host::AdminKey> keys;
  for (const std::string& spec : inv.sign_files) {
    HSMSIM_ASSIGN_OR_RETURN(host::AdminKey key, OpenAdminKey(inv, spec));
    keys.push_back(std::move(key));
  }
  return keys;
}

std::vector<const host::AdminKey*> SignerPointers(const std::vector<host::AdminKey>& keys) {
  std::vector<const host::AdminKey*> out;
  for (const host::AdminKey& k : keys) out.push_back(&k);
  return out;
}

absl::StatusOr<host::UnitClientOptions> FleetClientOptions(const Invocation& inv,
                                                           const host::FleetManifest& manifest) {
  host::UnitClientOptions options;
  options.timeout = std::chrono::milliseconds(inv.timeout_ms);
  HSMSIM_ASSIGN_OR_RETURN(options.tls, host::LoadFleetTls(FleetDir(inv), manifest.tls));
  return options;
}

absl::StatusOr<host::UnitClientOptions> ForUnit(const host::FleetUnit& unit,
                                                host::UnitClientOptions options) {
  if (!unit.tls) {
    options.tls = nullptr;
    return options;
  }
  if (options.tls == nullptr) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadTlsFiles,
                 StrCat(unit.name, " speaks TLS but the fleet's TLS files were not loaded"));
  }
  options.tls_unit_id = unit.unit_id;
  return options;
}

absl::StatusOr<std::unique_ptr<host::UnitChannel>> ConnectPinned(
    const host::FleetUnit& unit, const host::UnitClientOptions& options) {
  HSMSIM_ASSIGN_OR_RETURN(host::UnitClientOptions unit_options, ForUnit(unit, options));
  HSMSIM_ASSIGN_OR_RETURN(auto client,
                          host::UnitClient::Create(unit.name, unit.endpoint, unit_options));
  return std::unique_ptr<host::UnitChannel>(
      std::make_unique<host::PinnedUnitChannel>(std::move(client), unit.unit_id));
}

absl::StatusOr<host::FleetManifest> LoadSelection(const Invocation& inv) {
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, host::LoadFleetManifest(FleetDir(inv)));
  if (!inv.unit_names.empty()) HSMSIM_RETURN_IF_ERROR(manifest.SelectOnly(inv.unit_names));
  return manifest;
}

absl::StatusOr<std::vector<UnitConnection>> ConnectSelected(const Invocation& inv,
                                                            host::FleetManifest* manifest_out) {
  HSMSIM_ASSIGN_OR_RETURN(host::FleetManifest manifest, LoadSelection(inv));
  InstallAuditLog(FleetDir(inv));
  std::vector<UnitConnection> out;
  HSMSIM_ASSIGN_OR_RETURN(host::UnitClientOptions options, FleetClientOptions(inv, manifest));
  for (const host::FleetUnit* unit : manifest.SelectedUnits()) {
    HSMSIM_ASSIGN_OR_RETURN(auto client, ConnectPinned(*unit, options));
    out.push_back(UnitConnection{*unit, std::move(client)});
  }
  if (out.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoUnitsSelected,
                 StrCat("the fleet ", FleetDir(inv), " has no selected units"));
  }
  if (manifest_out != nullptr) *manifest_out = std::move(manifest);
  return out;
}

std::vector<UnitOutcome> ForEachUnit(std::vector<UnitConnection>& conns, const UnitStep& step) {
  std::vector<UnitOutcome> outcomes;
  for (UnitConnection& c : conns) {
    UnitOutcome o{c.unit.name, c.unit.endpoint, absl::OkStatus(), "", json::object()};
    auto info = c.client->GetInfo();
    o.status = info.ok() ? step(c, *info, o) : info.status();
    outcomes.push_back(std::move(o));
  }
  return outcomes;
}

json OutcomesJson(std::string_view command, const std::vector<UnitOutcome>& outcomes, json extra) {
  json doc = std::move(extra);
  bool any_failed = false;
  doc["command"] = std::string(command);
  doc["units"] = json::array();
  for (const UnitOutcome& o : outcomes) {
    json u = o.details;
    u["unit"] = o.unit;
    u["endpoint"] = o.endpoint;
    u["ok"] = o.status.ok();
    if (!o.status.ok()) {
      u["error"] = StatusJson(o.status);
      any_failed = true;
    }
    doc["units"].push_back(std::move(u));
  }
  doc["ok"] = !any_failed;
  return doc;
}

int ReportOutcomes(const Invocation& inv, std::string_view command,
                   const std::vector<UnitOutcome>& outcomes, json extra,
                   std::string_view text_header) {
  bool any_unreachable = false;
  bool any_failed = false;
  for (const UnitOutcome& o : outcomes) {
    if (!o.status.ok()) {
      any_failed = true;
      if (ExitCodeFor(o.status) == kExitUnreachable) any_unreachable = true;
    }
  }
  const int code = any_unreachable ? kExitUnreachable : any_failed ? kExitRefused : kExitOk;
  if (inv.json) {
    std::cout << OutcomesJson(command, outcomes, std::move(extra))
                     .dump(2, ' ', false, json::error_handler_t::replace)
              << "\n";
    return code;
  }
  if (!text_header.empty()) std::cout << text_header << "\n";
  for (const UnitOutcome& o : outcomes) {
    if (o.status.ok()) {
      std::cout << o.unit << ": ok" << (o.text.empty() ? "" : ": ") << o.text << "\n";
    } else {
      std::cout << o.unit << ": FAILED: " << ReasonOf(o.status) << ": "
                << UnitLineMessage(o.unit, std::string(o.status.message())) << "\n";
    }
  }
  return code;
}

absl::StatusOr<v1::CommandResponse> SignedUnit::Issue(const v1::Command& op) {
  HSMSIM_ASSIGN_OR_RETURN(v1::CommandResponse response,
                          host::IssueCommand(*conn.client, info, op, signers));
  info = response.info();
  return response;
}

int RunSignedPerUnit(Invocation& inv, std::string_view command, const SignedStep& step,
                     const SignedHooks& hooks) {
  auto signers = LoadSigners(inv);
  if (!signers.ok()) return Fail(inv, signers.status());
  ReportHeader header;
  if (hooks.prepare) {
    if (absl::Status s = hooks.prepare(*signers, header); !s.ok()) return Fail(inv, s);
  }
  host::FleetManifest manifest;
  auto conns = ConnectSelected(inv, &manifest);
  if (!conns.ok()) return Fail(inv, conns.status());
  if (hooks.precheck) {
    if (absl::Status s = hooks.precheck(*conns, manifest); !s.ok()) return Fail(inv, s);
  }
  const std::vector<const host::AdminKey*> signer_ptrs = SignerPointers(*signers);
  const std::vector<UnitOutcome> outcomes = ForEachUnit(
      *conns,
      [&](UnitConnection& c, const v1::GetInfoResponse& info, UnitOutcome& o) -> absl::Status {
        SignedUnit unit{c, info, signer_ptrs, o};
        return step(unit);
      });
  if (hooks.finish) hooks.finish(header);
  return ReportOutcomes(inv, command, outcomes, std::move(header.fields), header.text);
}

std::string VpHex(std::string_view vp, bool full) {
  if (!full || vp.empty()) return host::ShortId(vp);
  return ToHex(vp);
}

}  // namespace hsmsim::hsmctl

// Shared plumbing of the hsmctl commands: the options every command takes,
// exit codes, the fleet and unit connections, and per-unit reporting.
#ifndef HSMSIM_HOST_HSMCTL_CONTEXT_H_
#define HSMSIM_HOST_HSMCTL_CONTEXT_H_

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "host/admin_key_file.h"
#include "host/fleet_manifest.h"
#include "host/unit_channel.h"
#include "host/unit_client.h"

namespace hsmsim::host::pkcs11 {
class CardSet;
}  // namespace hsmsim::host::pkcs11

namespace hsmsim::hsmctl {

using json = nlohmann::json;

// Exit codes (docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitBadInput = 4;

// ExitCodeHelp returns the exit codes as every command's --help ends with
// them ("Exit codes:" and a line per code; main() sets it as the footer of
// the whole command tree). docs/cli.md, "Exit codes", shows the same lines
// (tests/host/cli_doc_test.py compares them).
std::string ExitCodeHelp();

inline constexpr char kFleetEnv[] = "HSMSIM_FLEET";

// Invocation holds every flag value; only the chosen command's are set.
struct Invocation {
  std::string fleet_flag;
  bool json = false;
  std::string password_file;
  // --password-file FILE=PWFILE: the password file of one key file.
  std::map<std::string, std::string> file_password_files;
  // --pkcs11-module, and the smart cards opened (key_sources.h).
  std::string pkcs11_module;
  std::shared_ptr<host::pkcs11::CardSet> cards;
  std::vector<std::string> sign_files;
  int timeout_ms = 10'000;
  // --unit NAME[,NAME...]: the units this command applies to instead of
  // fleet.json's selection (empty: fleet.json's).
  std::vector<std::string> unit_names;
  // The password, once resolved (see GetPassword).
  std::optional<SecretBytes> password;
  // The chosen command's action, returning the exit code.
  std::function<int()> action;
};

// Option helpers: each adds one common option to a command.
void AddFleetOption(CLI::App* cmd, Invocation& inv);
void AddJsonOption(CLI::App* cmd, Invocation& inv);
void AddPasswordOption(CLI::App* cmd, Invocation& inv);
void AddSignOption(CLI::App* cmd, Invocation& inv);
// AddUnitOptions adds --fleet, --timeout-ms and --unit (commands that talk
// to the selected units).
void AddUnitOptions(CLI::App* cmd, Invocation& inv);
// AddNamedUnitOptions adds --fleet and --timeout-ms (commands that talk to
// the one unit they name, whatever the selection).
void AddNamedUnitOptions(CLI::App* cmd, Invocation& inv);

// FleetDir returns --fleet, else env HSMSIM_FLEET, else ./.hsmsim.
std::string FleetDir(const Invocation& inv);

// ExitCodeFor maps an error that stops a command to an exit code: its
// reason's class in common/reasons.inc (refused 1, a unit did not answer 3,
// bad input file, password or name 4); 1 for a reason not declared there.
int ExitCodeFor(const absl::Status& status);

// Fail prints `status` to stderr (and as JSON on stdout with --json) and
// returns its exit code.
int Fail(const Invocation& inv, const absl::Status& status);

// LoadSigners opens every --sign entry: a key file with its own secret, or a
// pkcs11: URI of a key on a smart card (key_sources.h).
absl::StatusOr<std::vector<host::AdminKey>> LoadSigners(Invocation& inv);

// GetPassword resolves the password once per invocation (--password-file,
// $HSMSIM_PASSWORD, or a prompt) and returns it.
absl::StatusOr<std::string_view> GetPassword(Invocation& inv, std::string_view prompt,
                                             bool confirm = false);
std::vector<const host::AdminKey*> SignerPointers(const std::vector<host::AdminKey>& keys);

// A selected unit and its connection.
struct UnitConnection {
  host::FleetUnit unit;
  std::unique_ptr<host::UnitChannel> client;
};

// ConnectPinned creates the channel to `unit`: a UnitClient with `options`
// behind a PinnedUnitChannel holding the unit id fleet.json pins, so a unit
// that answers with another id gets nothing but GetInfo and every call
// fails UNIT_ID_MISMATCH. INVALID_ARGUMENT (BAD_ENDPOINT) for a bad address.
// Over TLS (unit.tls) the unit's certificate must name the pinned id too;
// BAD_TLS_FILES when `options` carries no TLS files for a TLS unit.
absl::StatusOr<std::unique_ptr<host::UnitChannel>> ConnectPinned(
    const host::FleetUnit& unit, const host::UnitClientOptions& options);

// FleetClientOptions returns the options to reach the units of `manifest`
// (the fleet of `inv`): --timeout-ms, and the fleet's TLS files loaded when
// it has them (host/unit_tls.h LoadFleetTls; BAD_TLS_FILES naming the file).
absl::StatusOr<host::UnitClientOptions> FleetClientOptions(const Invocation& inv,
                                                           const host::FleetManifest& manifest);

// ForUnit returns `options` for one unit: TLS only when the unit speaks it,
// its certificate expected to name the pinned unit id. BAD_TLS_FILES when
// the unit speaks TLS and `options` has no TLS files.
absl::StatusOr<host::UnitClientOptions> ForUnit(const host::FleetUnit& unit,
                                                host::UnitClientOptions options);

// LoadSelection loads fleet.json with this command's selection: the units
// --unit names (FleetManifest::SelectOnly), else fleet.json's own. Returns
// LoadFleetManifest's errors and NOT_FOUND (NO_SUCH_UNIT) for a name
// fleet.json does not have. The result must not be saved.
absl::StatusOr<host::FleetManifest> LoadSelection(const Invocation& inv);

// ConnectSelected loads the manifest (LoadSelection) and creates a pinned
// channel per selected unit (ConnectPinned; connections open lazily).
absl::StatusOr<std::vector<UnitConnection>> ConnectSelected(
    const Invocation& inv, host::FleetManifest* manifest = nullptr);

// UnitOutcome is what one command did on one unit.
struct UnitOutcome {
  std::string unit;
  std::string endpoint;
  absl::Status status;
  std::string text;  // a line for people: what happened (on success)
  json details = json::object();
};

// UnitStep is one command's work on one unit, given its current state; it
// fills `outcome.text`/`details` and returns the unit's answer.
using UnitStep =
    std::function<absl::Status(UnitConnection&, const v1::GetInfoResponse&, UnitOutcome&)>;

// ForEachUnit reads each unit's state and runs `step` on it, unit by unit.
std::vector<UnitOutcome> ForEachUnit(std::vector<UnitConnection>& conns, const UnitStep& step);

// OutcomesJson returns the JSON document ReportOutcomes prints with --json:
// `extra`'s fields, then "command", "ok" (no unit failed) and "units" (per
// outcome its details, "unit", "endpoint", "ok" and, when it failed,
// "error" as StatusJson).
json OutcomesJson(std::string_view command, const std::vector<UnitOutcome>& outcomes,
                  json extra = json::object());

// ReportOutcomes prints one line per unit (after `text_header`, a line of
// its own when not empty) or a JSON document (`extra`'s fields, then
// command, ok and units), and returns 0 when all succeeded, 3 when any unit
// was unreachable, else 1.
int ReportOutcomes(const Invocation& inv, std::string_view command,
                   const std::vector<UnitOutcome>& outcomes, json extra = json::object(),
                   std::string_view text_header = {});

// SignedUnit is one unit during a signed per-unit command: its connection,
// its state (read before the step, moved on by every Issue), the signers
// and the outcome the step fills for the report.
struct SignedUnit {
  UnitConnection& conn;
  v1::GetInfoResponse info;
  const std::vector<const host::AdminKey*>& signers;
  UnitOutcome& outcome;

  // Issue fills `op` with this unit's id and counter, has every signer sign
  // it and sends it; on success `info` becomes the unit's state after it.
  // Returns the unit's response, or its refusal or transport error.
  absl::StatusOr<v1::CommandResponse> Issue(const v1::Command& op);
};

// SignedStep is a signed command's work on one unit: it builds the
// command(s) from `unit.info`, issues them, and fills `unit.outcome.text`
// and `details`. Returns the unit's error, or OK.
using SignedStep = std::function<absl::Status(SignedUnit& unit)>;

// What a signed per-unit command adds to the report besides the units.
struct ReportHeader {
  json fields = json::object();  // extra top-level JSON fields
  std::string text;              // a line printed before the units' lines
};

// The optional stages of a signed per-unit command around its step.
struct SignedHooks {
  // Runs once the signers are loaded, before any unit is contacted (read
  // files, build expectations); may fill the report's header.
  std::function<absl::Status(const std::vector<host::AdminKey>& signers, ReportHeader& header)>
      prepare;
  // Runs once the selected units are connected, before any is changed (a
  // check across the fleet, such as an interlock).
  std::function<absl::Status(std::vector<UnitConnection>& conns,
                             const host::FleetManifest& manifest)>
      precheck;
  // Runs after every unit's step, before the report: facts learned from
  // the units (such as the VP the first unit computed) for the header.
  std::function<void(ReportHeader& header)> finish;
};

// RunSignedPerUnit is the skeleton of every signed per-unit command: load
// the --sign keys (LoadSigners), hooks.prepare, connect the selected units,
// hooks.precheck, then for each unit read GetInfo and run `step`, and report
// the outcomes as ReportOutcomes does. An error before the first unit is
// reported with Fail. Returns the exit code.
int RunSignedPerUnit(Invocation& inv, std::string_view command, const SignedStep& step,
                     const SignedHooks& hooks = {});

// UnitLineMessage returns `message` for a line that already starts with the
// unit's name ("unit2: FAILED: REASON: ..."), so that the unit is named once
// per line: every "unit NAME: " in it is dropped and "unit NAME at
// ENDPOINT" becomes "at ENDPOINT". Other mentions (another unit, or NAME as
// the subject of a sentence) stay.
std::string UnitLineMessage(std::string_view unit, std::string_view message);

// StatusJson returns {"code", "reason", "message"} of a status.
json StatusJson(const absl::Status& status);

// FailureJson returns the document Fail prints with --json for an error
// that stops a command: {"ok": false, "error": StatusJson(status)}.
json FailureJson(const absl::Status& status);

// VpHex returns the hex of a VP as the wire carries it: its short form
// (host::ShortId) unless `full`; "-" when empty.
std::string VpHex(std::string_view vp, bool full);

// Command registration, one function per source file.
void AddFleetCommands(CLI::App& app, Invocation& inv);
// AddRemoteUnitCommands registers hsmctl fleet add | rm under `fleet`
// (remote_unit_commands.cc).
void AddRemoteUnitCommands(CLI::App* fleet, Invocation& inv);
void AddStatusCommands(CLI::App& app, Invocation& inv);
void AddAdminCommands(CLI::App& app, Invocation& inv);
void AddKeyPartCommands(CLI::App& app, Invocation& inv);
void AddMasterKeyCommands(CLI::App& app, Invocation& inv);
void AddFaultCommands(CLI::App& app, Invocation& inv);
// AddPkcs11Commands registers `hsmctl pkcs11 set-pin` (pkcs11_commands.cc).
void AddPkcs11Commands(CLI::App& app, Invocation& inv);
void AddConsoleCommand(CLI::App& app, Invocation& inv);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_CONTEXT_H_

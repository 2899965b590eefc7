// UnitOptions: the command line of hsmsim-unit, parsed with CLI11.
#ifndef HSMSIM_EMULATOR_UNIT_OPTIONS_H_
#define HSMSIM_EMULATOR_UNIT_OPTIONS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "emulator/frame_budget.h"
#include "hsmsim/v1/unit.pb.h"
#include "proto/wire/frame_codec.h"

namespace CLI {
class App;
}  // namespace CLI

namespace hsmsim::emulator {

// Exit codes of hsmsim-unit besides kExitPersistFailed (request_dispatcher.h)
// and kExitInjectedCrash (fault_injector.h); UnitExitCodeHelp lists them all.
inline constexpr int kExitStopped = 0;      // SIGTERM/SIGINT, --help, --version
inline constexpr int kExitCannotServe = 1;  // cannot listen or write the port file
inline constexpr int kExitBadSetup = 2;     // bad flags or an unusable state directory

// The largest --max-frame-bytes accepted: 256 MiB.
inline constexpr size_t kMaxMaxFrameBytes = size_t{256} << 20;

struct UnitOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT as given
  std::string listen_host;             // parsed from `listen`
  uint16_t listen_port = 0;            // parsed from `listen`
  std::string port_file;               // empty: none
  std::string state_dir;
  size_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  size_t memory_budget_bytes = kDefaultMemoryBudgetBytes;
  bool allow_fault_injection = false;
  // Create a new unit even where a unit's state is gone (--new-unit).
  bool new_unit = false;
  std::vector<std::string> fault_specs;  // --fault POINT:ACTION[:N], repeatable
  std::vector<v1::Fault> faults;         // parsed from fault_specs
  std::string log_level = "info";
  unsigned workers = 0;  // 0 before parsing: the number of cores
  std::chrono::milliseconds read_timeout{30000};
  // Mutual TLS (emulator/unit_tls.h): all three PEM files, or none.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  // Listen on an address that is not loopback without TLS (--insecure).
  bool insecure = false;
  // Print the unit id of --state-dir's unit and exit (--print-unit-id).
  bool print_unit_id = false;

  bool tls() const { return !tls_cert.empty(); }
};

// AddUnitOptions registers every flag of hsmsim-unit on `app`, bound to
// `options` (which must outlive the parse), and ends its --help with
// UnitExitCodeHelp(). Call FinishUnitOptions after app.parse().
void AddUnitOptions(CLI::App& app, UnitOptions& options);

// UnitExitCodeHelp returns hsmsim-unit's exit codes as its --help ends with
// them ("Exit codes:" and a line per code); docs/cli.md, section
// hsmsim-unit, shows the same lines.
std::string UnitExitCodeHelp();

// FinishUnitOptions splits --listen into host and port, parses --fault and
// fills defaults that depend on the machine. Returns INVALID_ARGUMENT
// (BAD_FLAG) naming the flag when a value is unusable, including --fault
// without --allow-fault-injection, --max-frame-bytes outside
// 1..kMaxMaxFrameBytes, and --memory-budget-bytes below twice
// --max-frame-bytes (the message names both numbers); INVALID_ARGUMENT
// (TLS_SETUP_FAILED) when only some of --tls-cert, --tls-key, --tls-ca are
// given; FAILED_PRECONDITION (INSECURE_LISTEN) when --listen's host is not
// loopback (127.0.0.0/8, ::1, localhost) and neither TLS nor --insecure is.
absl::Status FinishUnitOptions(UnitOptions& options);

// IsLoopbackHost is true for "localhost", an IPv4 address in 127.0.0.0/8
// and the IPv6 address ::1.
bool IsLoopbackHost(const std::string& host);

// ParseHostPort splits "HOST:PORT" or "[V6HOST]:PORT". INVALID_ARGUMENT
// (BAD_FLAG) on a missing or out-of-range port.
absl::Status ParseHostPort(const std::string& text, std::string* host, uint16_t* port);

}  // namespace hsmsim::emulator

#endif  // HSMSIM_EMULATOR_UNIT_OPTIONS_H_

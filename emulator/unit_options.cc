#include "emulator/unit_options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <thread>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "emulator/fault_injector.h"
#include "emulator/request_dispatcher.h"

namespace hsmsim::emulator {

std::string UnitExitCodeHelp() {
  struct Row {
    int code;
    const char* meaning;
  };
  static constexpr Row kRows[] = {
      {kExitStopped, "stopped by SIGTERM or SIGINT (also after --help, --version)"},
      {kExitCannotServe, "cannot listen on --listen or write --port-file"},
      {kExitBadSetup,
       "bad flags, or a state directory it cannot use (group or others can write it, a "
       "damaged state file, a device key without its state file and no --new-unit)"},
      {kExitPersistFailed,
       "a state change reached the disk but syncing its directory failed (restart it)"},
      {kExitInjectedCrash, "an injected crash fault fired (--allow-fault-injection)"},
  };
  std::string out = "Exit codes:";
  for (const Row& row : kRows) {
    std::string code = std::to_string(row.code);
    code.resize(3, ' ');  // the meanings in one column, up to 137
    out += StrCat("\n  ", code, "  ", row.meaning);
  }
  return out;
}

void AddUnitOptions(CLI::App& app, UnitOptions& options) {
  app.name("hsmsim-unit");
  app.description(
      "hsmsim-unit: one emulated crypto unit, serving the hsmsim.v1 protocol over TCP.");
  app.footer(UnitExitCodeHelp());
  app.add_option("--listen", options.listen,
                 "Address to listen on as HOST:PORT; port 0 lets the system choose a free port.")
      ->capture_default_str();
  app.add_option("--port-file", options.port_file,
                 "File the chosen port is written to (atomically) once the unit accepts "
                 "connections, so launchers can wait for it.");
  app.add_option("--state-dir", options.state_dir,
                 "Directory of the unit's nonvolatile state (device.key, unit.state); created "
                 "if missing.")
      ->required();
  app.add_option("--max-frame-bytes", options.max_frame_bytes,
                 "Largest request frame accepted, in bytes; a larger length prefix is refused "
                 "before its body is read. At most 268435456 (256 MiB).")
      ->capture_default_str();
  app.add_option("--memory-budget-bytes", options.memory_budget_bytes,
                 "Bytes of request frames being read or processed and of replies waiting to be "
                 "written, over all connections; past it the unit stops reading new frames, and "
                 "a frame that gets no memory within --read-timeout-ms is answered "
                 "RESOURCE_EXHAUSTED (MEMORY_BUDGET_EXHAUSTED). At least twice "
                 "--max-frame-bytes.")
      ->capture_default_str();
  app.add_flag("--new-unit", options.new_unit,
               "Create a new, blank unit (a new unit id, imprint mode, no administrators) even "
               "though the state directory shows that a unit was there (device.key without "
               "unit.state). Without it hsmsim-unit refuses to start there (exit 2). An existing "
               "unit.state is never replaced.");
  app.add_flag("--allow-fault-injection", options.allow_fault_injection,
               "Allow requests that inject faults (crash, hang, drop, fail at named points); "
               "off by default.");
  app.add_option("--fault", options.fault_specs,
                 "Arm a fault at start, POINT:ACTION[:N] (repeatable; needs "
                 "--allow-fault-injection). POINT: before-persist, after-persist, "
                 "reencrypt-after-blobs (N blobs since start), in-set-immediate. ACTION: crash, "
                 "hang, drop-connection, return-error. Each fires once. See docs/reliability.md.")
      ->allow_extra_args(false);
  app.add_option("--log-level", options.log_level,
                 "Log level on stderr: trace, debug, info, warn, error, critical or off.")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--workers", options.workers,
                 "Number of worker threads that run requests; default: the number of cores.")
      ->check(CLI::Range(1u, 1024u));
  app.add_option_function<int64_t>(
         "--read-timeout-ms",
         [&options](const int64_t& ms) { options.read_timeout = std::chrono::milliseconds(ms); },
         "Milliseconds a frame may take to arrive once its first byte came; a connection that "
         "is still inside a frame then is closed.")
      ->default_str(std::to_string(options.read_timeout.count()))
      ->check(CLI::Range(int64_t{1}, int64_t{86'400'000}));
  app.add_option("--tls-cert", options.tls_cert,
                 "The unit's TLS certificate (PEM; see docs/tls.md): with --tls-key and --tls-ca, "
                 "every connection is mutual TLS 1.3.");
  app.add_option("--tls-key", options.tls_key, "The private key of --tls-cert (PEM).");
  app.add_option("--tls-ca", options.tls_ca,
                 "The CA certificates (PEM) a client's certificate must chain to; a client "
                 "without one fails the handshake.");
  app.add_flag("--insecure", options.insecure,
               "Allow plaintext on an address that is not loopback; without it such a --listen "
               "needs TLS (exit 2).");
  app.add_flag("--print-unit-id", options.print_unit_id,
               "Print the unit id of the unit in --state-dir in hex (creating a new unit where "
               "there is none, as a start would) and exit without listening.");
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::Status ParseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                 StrCat("--listen ", text, ": expected HOST:PORT"));
  }
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                 StrCat("--listen ", text, ": empty host"));
  }
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || value > 65535) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                 StrCat("--listen ", text, ": port must be a number 0..65535"));
  }
  *host = std::move(h);
  *port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

absl::Status FinishUnitOptions(UnitOptions& options) {
  HSMSIM_RETURN_IF_ERROR(ParseHostPort(options.listen, &options.listen_host, &options.listen_port));
  if (options.max_frame_bytes < 1 || options.max_frame_bytes > kMaxMaxFrameBytes) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                 StrCat("--max-frame-bytes ", options.max_frame_bytes, " is outside 1..",
                        kMaxMaxFrameBytes, " (256 MiB)"));
  }
  if (options.memory_budget_bytes / 2 < options.max_frame_bytes) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                 StrCat("--memory-budget-bytes ", options.memory_budget_bytes,
                        " is less than twice --max-frame-bytes ", options.max_frame_bytes,
                        ": it must be at least ", 2 * options.max_frame_bytes,
                        " so that two frames of the largest size fit"));
  }
  if (!options.fault_specs.empty() && !options.allow_fault_injection) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                 "--fault needs --allow-fault-injection: fault injection is off by default");
  }
  options.faults.clear();
  for (const std::string& spec : options.fault_specs) {
    auto fault = ParseFaultSpec(spec);
    if (!fault.ok()) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kBadFlag,
                   StrCat("--fault: ", fault.status().message()));
    }
    options.faults.push_back(*std::move(fault));
  }
  const int tls_files =
      !options.tls_cert.empty() + !options.tls_key.empty() + !options.tls_ca.empty();
  if (tls_files != 0 && tls_files != 3) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kTlsSetupFailed,
                 "--tls-cert, --tls-key and --tls-ca go together: give all three or none");
  }
  if (!options.tls() && !options.insecure && !IsLoopbackHost(options.listen_host)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kInsecureListen,
                 StrCat("--listen ", options.listen,
                        " is not a loopback address: give --tls-cert, --tls-key and --tls-ca "
                        "(mutual TLS), or --insecure to serve plaintext there on purpose"));
  }
  if (options.workers == 0) {
    options.workers = std::max(1u, std::thread::hardware_concurrency());
  }
  return absl::OkStatus();
}

}  // namespace hsmsim::emulator

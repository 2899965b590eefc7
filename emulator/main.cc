// hsmsim-unit: one emulated crypto unit as a process. See docs/architecture.md
// and `hsmsim-unit --help`.
//
// Exit codes: UnitExitCodeHelp (unit_options.h), which --help prints. Every failure to start is
// one line on stderr, "hsmsim-unit: REASON: message", which launchers show as is.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <cstdio>
#include <string>

#include "common/hex.h"
#include "common/status.h"
#include "crypto/entropy.h"
#include "emulator/fault_injector.h"
#include "emulator/frame_budget.h"
#include "emulator/port_file.h"
#include "emulator/process_hardening.h"
#include "emulator/request_dispatcher.h"
#include "emulator/state_file_system.h"
#include "emulator/state_store.h"
#include "emulator/unit_options.h"
#include "emulator/unit_server.h"
#include "emulator/unit_tls.h"
#include "firmware/limits.h"
#include "proto/wire/build_version.h"

namespace {

int Fail(int code, const absl::Status& status) {
  const std::string reason = hsmsim::ReasonOf(status);
  std::fprintf(stderr, "hsmsim-unit: %s: %.*s\n", reason.c_str(),
               static_cast<int>(status.message().size()), status.message().data());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  namespace asio = boost::asio;
  using namespace hsmsim::emulator;  // NOLINT
  namespace v1 = hsmsim::v1;

  CLI::App app;
  UnitOptions options;
  AddUnitOptions(app, options);
  app.set_version_flag(
      "--version",
      hsmsim::wire::VersionText("hsmsim-unit") + "\nfirmware " + hsmsim::firmware::kFirmwareVersion,
      "Print hsmsim-unit's version, the git commit it was built from, the wire "
      "protocol version and the firmware version, and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitStopped : kExitBadSetup;
  }
  if (absl::Status s = FinishUnitOptions(options); !s.ok()) return Fail(kExitBadSetup, s);

  auto logger = spdlog::stderr_logger_mt("hsmsim-unit");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n %P] %v");
  spdlog::set_level(spdlog::level::from_str(options.log_level));

  // Before any key material exists: SecretBytes go to the secure heap.
  const HardeningResult hardening = HardenProcess();
  for (const std::string& warning : hardening.warnings) spdlog::warn("{}", warning);
  spdlog::info("{}", hardening.Summary());

  if (absl::Status s = CheckStateDirectoryMode(options.state_dir); !s.ok()) {
    return Fail(kExitBadSetup, s);
  }
  hsmsim::crypto::Entropy& entropy = hsmsim::crypto::OpenSslEntropyInstance();
  auto store = StateStore::Open(options.state_dir, PosixStateFileSystemInstance(), entropy);
  if (!store.ok()) return Fail(kExitBadSetup, store.status());
  auto unit = LoadOrCreateUnit(
      **store, entropy,
      options.new_unit ? NewUnitPolicy::kAllowed : NewUnitPolicy::kOnlyWhereNoUnitWas);
  if (!unit.ok()) return Fail(kExitBadSetup, unit.status());
  const std::string unit_id = hsmsim::ToHex((*unit)->unit_id());
  if (options.print_unit_id) {
    std::printf("%s\n", unit_id.c_str());
    return kExitStopped;
  }
  std::shared_ptr<ServerTls> tls;
  if (options.tls()) {
    auto loaded = LoadServerTls(options.tls_cert, options.tls_key, options.tls_ca);
    if (!loaded.ok()) return Fail(kExitBadSetup, loaded.status());
    tls = *std::move(loaded);
  }
  RequestDispatcher dispatcher(std::move(unit).value(), **store);
  FaultInjector faults;
  if (options.allow_fault_injection) {
    dispatcher.EnableFaultInjection(faults, entropy);
    for (const v1::Fault& fault : options.faults) {
      if (absl::Status s = faults.Arm(fault); !s.ok()) {
        return Fail(kExitBadSetup, s);
      }
      spdlog::warn("fault {} armed", FaultSpec(fault));
    }
  }

  asio::io_context io(1);
  asio::thread_pool pool(options.workers);
  FrameBudget budget(options.memory_budget_bytes);
  UnitServer server(io, pool, dispatcher, budget,
                    SessionConfig{options.max_frame_bytes, options.read_timeout}, tls);
  auto endpoint = server.Listen(options.listen_host, options.listen_port);
  if (!endpoint.ok()) return Fail(kExitCannotServe, endpoint.status());

  // Installed before the port file appears, so a launcher may signal as
  // soon as it sees the port.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&server](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    spdlog::info("signal {} received, shutting down", signal_number);
    server.Stop();
  });
  server.Start();

  if (!options.port_file.empty()) {
    if (absl::Status s = WritePortFile(options.port_file, endpoint->port()); !s.ok()) {
      return Fail(kExitCannotServe, s);
    }
  }
  spdlog::info(
      "unit {} listening on {}:{} (state {}, {} workers, frames up to {} bytes, memory budget {} "
      "bytes{}{})",
      unit_id, endpoint->address().to_string(), endpoint->port(), (*store)->dir(), options.workers,
      options.max_frame_bytes, budget.limit(), tls ? ", mutual TLS" : ", plaintext",
      options.allow_fault_injection ? ", fault injection allowed" : "");

  io.run();
  pool.join();
  spdlog::info("unit {} stopped ({} bytes of the memory budget still held)", unit_id,
               budget.used());
  return 0;
}

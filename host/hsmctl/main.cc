// hsmctl: the operator's command line for a fleet of hsmsim crypto units.
// docs/cli.md documents every command, flag and exit code.
#include <google/protobuf/stubs/logging.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "host/hsmctl/audit_commands.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/key_sources.h"
#include "host/hsmctl/keystore_support.h"
#include "proto/wire/build_version.h"

namespace {

// QuietProtobufLog keeps the protobuf library's own log lines ("[libprotobuf
// ERROR ...] String field ... contains invalid UTF-8 data", once per
// message) off the operator's terminal: every bad input already fails with
// hsmctl's own error naming the file, key or unit. Only a fatal error (a bug,
// after which the library aborts) is said, in one line.
void QuietProtobufLog(google::protobuf::LogLevel level, const char* /*filename*/, int /*line*/,
                      const std::string& message) {
  if (level == google::protobuf::LOGLEVEL_FATAL) {
    std::cerr << "hsmctl: internal error in the protobuf library: " << message << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hsmsim::hsmctl;
  // Every line is written when printed, also to a file or a pipe: an
  // interrupted or killed rotation leaves its last line in the output (the
  // seed page's method is reading that output). std::cout is synchronized
  // with stdio, so this applies to it too.
  std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
  google::protobuf::SetLogHandler(&QuietProtobufLog);
  CLI::App app{"hsmctl: manage a fleet of hsmsim crypto units (see docs/cli.md)", "hsmctl"};
  app.require_subcommand(1);
  // Set before any command is added: each command copies its parent's footer
  // when it is created, so every --help ends with the exit codes.
  app.footer(ExitCodeHelp());
  app.set_version_flag("--version", hsmsim::wire::VersionText("hsmctl"),
                       "Print hsmctl's version, the git commit it was built from and the wire "
                       "protocol version, and exit");
  Invocation inv;
  AddFleetCommands(app, inv);
  AddStatusCommands(app, inv);
  AddAdminCommands(app, inv);
  AddKeyPartCommands(app, inv);
  AddMasterKeyCommands(app, inv);
  AddRotationCommands(app, inv);
  AddKeysCommands(app, inv);
  AddBenchCommands(app, inv);
  AddFaultCommands(app, inv);
  AddCardCommands(app, inv);
  AddAuditCommands(app, inv);
  AddPkcs11Commands(app, inv);
  AddConsoleCommand(app, inv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (!inv.action) {
    std::cerr << "hsmctl: choose a command; see hsmctl --help\n";
    return kExitUsage;
  }
  return inv.action();
}

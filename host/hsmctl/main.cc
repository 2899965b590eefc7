// hsmctl: the operator's command line for a fleet of hsmsim crypto units.
// docs/cli.md documents every command, flag and exit code.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "host/hsmctl/audit_commands.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/key_sources.h"
#include "host/hsmctl/keystore_support.h"

int main(int argc, char** argv) {
  using namespace hsmsim::hsmctl;
  // Every line is written when printed, also to a file or a pipe: an
  // interrupted or killed rotation leaves its last line in the output (the
  // seed page's method is reading that output). std::cout is synchronized
  // with stdio, so this applies to it too.
  std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
  CLI::App app{"hsmctl: manage a fleet of hsmsim crypto units (see docs/cli.md)", "hsmctl"};
  app.require_subcommand(1);
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
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

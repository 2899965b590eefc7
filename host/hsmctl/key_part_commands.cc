// hsmctl keypart generate | show: master key parts in workstation files.
#include <iostream>

#include "common/hex.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "host/admin_key_file.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/key_sources.h"

namespace hsmsim::hsmctl {
namespace {

struct GenerateOptions {
  std::string out;
  std::string description;
  uint32_t kdf_cost = 600'000;
};

std::string KdfName(v1::PasswordKdf kdf) {
  switch (kdf) {
    case v1::PASSWORD_KDF_PBKDF2_HMAC_SHA256:
      return "PBKDF2-HMAC-SHA256";
    case v1::PASSWORD_KDF_SCRYPT:
      return "scrypt";
    default:
      return "unspecified";
  }
}

int RunGenerate(Invocation& inv, const GenerateOptions& o) {
  auto password = NewFilePassword(inv, o.out, "Password for the new key part: ");
  if (!password.ok()) return Fail(inv, password.status());
  crypto::Entropy& entropy = crypto::OpenSslEntropyInstance();
  SecretBytes part(crypto::kKeyPartSize);
  if (absl::Status s = entropy.Generate(absl::MakeSpan(part)); !s.ok()) return Fail(inv, s);
  crypto::PartFileOptions options;
  options.cost = o.kdf_cost;
  options.description = o.description;
  auto sealed = crypto::SealKeyPartFile(part, AsStringView(*password), options, entropy);
  if (!sealed.ok()) return Fail(inv, sealed.status());
  absl::Status written = host::WriteNewFile(o.out, *sealed, 0600);
  if (!written.ok()) return Fail(inv, written);
  const std::string vp = ToHex(crypto::ComputeVerificationPattern(part));
  if (inv.json) {
    std::cout << json{{"command", "keypart generate"},
                      {"ok", true},
                      {"file", o.out},
                      {"verification_pattern", vp},
                      {"description", o.description}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "key part written to " << o.out << "\nVP " << vp << "\n";
  }
  return kExitOk;
}

int RunShow(Invocation& inv, const std::string& file) {
  auto bytes = host::ReadFileBytes(file);
  if (!bytes.ok()) return Fail(inv, bytes.status());
  auto parsed = crypto::ParseKeyPartFile(*bytes);
  if (!parsed.ok()) return Fail(inv, WithContext(parsed.status(), file));
  const std::string vp = ToHex(parsed->part_verification_pattern());
  if (inv.json) {
    std::cout << json{{"command", "keypart show"},
                      {"ok", true},
                      {"file", file},
                      {"format_version", parsed->format_version()},
                      {"verification_pattern", vp},
                      {"kdf", KdfName(parsed->kdf())},
                      {"kdf_cost", parsed->kdf_cost()},
                      {"description", parsed->description()}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << file << "\n  VP          " << vp << "\n  KDF         " << KdfName(parsed->kdf())
              << " (cost " << parsed->kdf_cost() << ")\n  description "
              << (parsed->description().empty() ? "(none)" : parsed->description()) << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddKeyPartCommands(CLI::App& app, Invocation& inv) {
  CLI::App* keypart = app.add_subcommand("keypart", "Master key parts in password-protected files");
  keypart->require_subcommand(1);

  auto gen = std::make_shared<GenerateOptions>();
  CLI::App* generate = keypart->add_subcommand(
      "generate", "Create a random 32-byte key part in a password-protected file; print its VP");
  generate->add_option("--out", gen->out, "File to create (never overwritten)")->required();
  generate->add_option("--description", gen->description, "Free text stored with the part");
  // For tests only: a cheaper PBKDF2 (>= 10000 iterations). Hidden from --help.
  generate->add_option("--kdf-cost", gen->kdf_cost, "PBKDF2 iterations")->group("");
  AddPasswordOption(generate, inv);
  AddJsonOption(generate, inv);
  generate->callback([&inv, gen] { inv.action = [&inv, gen] { return RunGenerate(inv, *gen); }; });

  auto file = std::make_shared<std::string>();
  CLI::App* show = keypart->add_subcommand(
      "show", "Print a key part file's VP, KDF and description (no password needed)");
  show->add_option("FILE", *file, "Key part file")->required();
  AddJsonOption(show, inv);
  show->callback([&inv, file] { inv.action = [&inv, file] { return RunShow(inv, *file); }; });
}

}  // namespace hsmsim::hsmctl

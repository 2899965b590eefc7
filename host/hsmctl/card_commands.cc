// hsmctl card admin-keygen | part-generate | list: administrator keys and
// master key parts on smart cards (PKCS#11 tokens), docs/smart-cards.md.
#include <iostream>

#include "common/hex.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/key_sources.h"
#include "host/pkcs11/card_admin_key.h"
#include "host/pkcs11/card_key_part.h"

namespace hsmsim::hsmctl {
namespace {

struct CardFlags {
  std::string uri;
  std::string name;   // admin-keygen
  std::string label;  // part-generate
};

int RunAdminKeygen(Invocation& inv, const CardFlags& f) {
  auto admin = host::pkcs11::GenerateCardAdminKey(Cards(inv), f.uri, f.name);
  if (!admin.ok()) return Fail(inv, admin.status());
  const std::string key_id = ToHex(crypto::AsString(admin->key_id));
  if (inv.json) {
    std::cout << json{{"command", "card admin-keygen"},
                      {"ok", true},
                      {"name", admin->name},
                      {"key_id", key_id}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "administrator '" << admin->name << "' generated on the card\nkey id " << key_id
              << "\n";
  }
  return kExitOk;
}

int RunPartGenerate(Invocation& inv, const CardFlags& f) {
  auto part = host::pkcs11::CardKeyPart::Generate(Cards(inv), f.uri, f.label);
  if (!part.ok()) return Fail(inv, part.status());
  const std::string vp = ToHex(crypto::AsString(part->vp()));
  if (inv.json) {
    std::cout << json{{"command", "card part-generate"},
                      {"ok", true},
                      {"label", part->label()},
                      {"verification_pattern", vp}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << part->Describe() << " generated\nVP " << vp << "\n";
  }
  return kExitOk;
}

int RunList(Invocation& inv, const CardFlags& f) {
  std::string token;
  auto objects = host::pkcs11::ListCardObjects(Cards(inv), f.uri, &token);
  if (!objects.ok()) return Fail(inv, objects.status());
  if (inv.json) {
    json list = json::array();
    for (const auto& o : *objects) {
      json j = {{"kind", o.kind}, {"label", o.label}, {"id", o.id_hex}};
      if (!o.admin_key_id_hex.empty()) j["admin_key_id"] = o.admin_key_id_hex;
      if (!o.vp_hex.empty()) j["verification_pattern"] = o.vp_hex;
      if (o.kind == "secret-key") {
        j["usable_as_part"] = o.part_problem.empty();
        if (!o.part_problem.empty()) j["part_problem"] = o.part_problem;
      }
      list.push_back(std::move(j));
    }
    std::cout
        << json{{"command", "card list"}, {"ok", true}, {"token", token}, {"objects", list}}.dump(2)
        << "\n";
    return kExitOk;
  }
  std::cout << token << ": " << objects->size() << " object(s)\n";
  for (const auto& o : *objects) {
    std::cout << "  " << o.kind << " '" << o.label << "' id "
              << (o.id_hex.empty() ? "-" : o.id_hex);
    if (!o.admin_key_id_hex.empty()) std::cout << " admin key id " << o.admin_key_id_hex;
    if (!o.vp_hex.empty()) std::cout << " VP " << o.vp_hex;
    if (o.kind == "secret-key" && !o.part_problem.empty()) std::cout << " (not a safe part)";
    std::cout << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddCardCommands(CLI::App& app, Invocation& inv) {
  CLI::App* card = app.add_subcommand(
      "card", "Administrator keys and key parts on smart cards (PKCS#11 tokens, pkcs11: URIs)");
  card->require_subcommand(1);
  auto flags = std::make_shared<CardFlags>();

  CLI::App* keygen = card->add_subcommand(
      "admin-keygen",
      "Generate a P-521 administrator key on the card (private part sensitive, not extractable)");
  keygen->add_option("URI", flags->uri, "pkcs11: URI of the token")->required();
  keygen->add_option("--name", flags->name, "Administrator name, the key objects' label")
      ->required();
  keygen->callback(
      [&inv, flags] { inv.action = [&inv, flags] { return RunAdminKeygen(inv, *flags); }; });

  CLI::App* part = card->add_subcommand(
      "part-generate",
      "Generate a 32-byte master key part on the card (sensitive, only wrappable); print its VP");
  part->add_option("URI", flags->uri, "pkcs11: URI of the token")->required();
  part->add_option("--label", flags->label, "Label of the part object")->required();
  part->callback(
      [&inv, flags] { inv.action = [&inv, flags] { return RunPartGenerate(inv, *flags); }; });

  CLI::App* list = card->add_subcommand(
      "list", "List the card's objects: labels, ids, administrator key ids, part VPs (no keys)");
  list->add_option("URI", flags->uri, "pkcs11: URI of the token")->required();
  list->callback([&inv, flags] { inv.action = [&inv, flags] { return RunList(inv, *flags); }; });

  for (CLI::App* cmd : {keygen, part, list}) {
    AddPkcs11ModuleOption(cmd, inv);
    AddJsonOption(cmd, inv);
  }
}

}  // namespace hsmsim::hsmctl

#include "host/pkcs11/card_set.h"

#include <cstdlib>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/admin_key_file.h"
#include "host/password.h"

namespace hsmsim::host::pkcs11 {
namespace {

// TokenAttributes describes what a URI asks of a token, for "not found".
std::string Wanted(const TokenUri& uri) { return StrCat("'", uri.Printable(), "'"); }

}  // namespace

absl::StatusOr<SecretBytes> TerminalPinPrompt(const std::string& token) {
  auto pin = PromptSecret(StrCat("PIN for ", token, ": "));
  if (!pin.ok() || pin->empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kNoPin,
                 StrCat(token,
                        " needs a PIN: give pin-source=FILE in the pkcs11: URI, or run "
                        "hsmctl on a terminal to be asked"));
  }
  return pin;
}

CardSet::CardSet(std::string module, PinPrompt prompt)
    : module_(std::move(module)), prompt_(std::move(prompt)) {
  if (module_.empty()) {
    if (const char* env = std::getenv(kPkcs11ModuleEnv); env != nullptr) module_ = env;
  }
}

absl::StatusOr<std::vector<std::shared_ptr<LoadedModule>>> CardSet::Modules(const TokenUri& uri) {
  // The URI's module-path wins, then --pkcs11-module, then the URI's
  // module-name among the registered modules, then every registered module.
  std::string key;
  if (!uri.module_path().empty()) {
    key = uri.module_path();
  } else if (!module_.empty()) {
    key = module_;
  } else if (!uri.module_name().empty()) {
    key = StrCat("name:", uri.module_name());
  } else {
    key = "registered:";
  }
  if (auto it = modules_.find(key); it != modules_.end()) return it->second;
  std::vector<std::shared_ptr<LoadedModule>> loaded;
  if (key.find('/') != std::string::npos) {
    HSMSIM_ASSIGN_OR_RETURN(auto one, LoadedModule::LoadPath(key));
    loaded.push_back(std::move(one));
  } else if (key.rfind("name:", 0) == 0) {
    HSMSIM_ASSIGN_OR_RETURN(loaded, LoadedModule::LoadRegistered(key.substr(5)));
  } else if (key == "registered:") {
    HSMSIM_ASSIGN_OR_RETURN(loaded, LoadedModule::LoadRegistered(""));
  } else {
    HSMSIM_ASSIGN_OR_RETURN(loaded, LoadedModule::LoadRegistered(key));
  }
  modules_[key] = loaded;
  return loaded;
}

absl::StatusOr<SecretBytes> CardSet::Pin(const TokenUri& uri, const std::string& token) {
  if (!uri.pin_value().empty()) return uri.pin_value();
  if (!uri.pin_source().empty()) {
    std::string path = uri.pin_source();
    if (path.rfind("file:", 0) == 0) path = path.substr(5);
    auto text = ReadFileBytes(path);
    if (!text.ok()) {
      return Error(
          absl::StatusCode::kNotFound, reason::kPinSourceUnreadable,
          StrCat("the pin-source of ", token, " cannot be read: ", text.status().message()));
    }
    std::string_view line = *text;
    line = line.substr(0, line.find_first_of("\r\n"));
    SecretBytes pin = MakeSecret(line);
    WipeString(&*text);
    return pin;
  }
  return prompt_(token);
}

absl::StatusOr<std::shared_ptr<Token>> CardSet::OpenToken(const TokenUri& uri) {
  HSMSIM_ASSIGN_OR_RETURN(auto modules, Modules(uri));
  struct Match {
    std::shared_ptr<LoadedModule> module;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
  };
  std::vector<Match> matches;
  std::string seen;
  for (const auto& module : modules) {
    CK_FUNCTION_LIST* f = module->functions();
    CK_ULONG count = 0;
    if (f->C_GetSlotList(CK_TRUE, nullptr, &count) != CKR_OK || count == 0) continue;
    std::vector<CK_SLOT_ID> slots(count);
    if (f->C_GetSlotList(CK_TRUE, slots.data(), &count) != CKR_OK) continue;
    slots.resize(count);
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      if (f->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
      seen +=
          StrCat(seen.empty() ? "" : ", ", "'", TrimPadded(info.label, sizeof(info.label)), "'");
      if (uri.MatchesToken(info)) matches.push_back(Match{module, slot, info});
    }
  }
  if (matches.empty()) {
    return Error(absl::StatusCode::kNotFound, reason::kTokenNotFound,
                 StrCat("no token present matches ", Wanted(uri),
                        " (tokens present: ", seen.empty() ? "none" : seen, ")"));
  }
  if (matches.size() > 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kAmbiguousToken,
                 StrCat(matches.size(), " tokens match ", Wanted(uri), " (", seen,
                        "); name one with token= or serial="));
  }
  Match& m = matches.front();
  const auto key = std::make_pair(m.module->functions(), m.slot);
  if (auto it = tokens_.find(key); it != tokens_.end()) return it->second;
  const std::string description =
      StrCat("token '", TrimPadded(m.info.label, sizeof(m.info.label)), "' (serial ",
             TrimPadded(m.info.serialNumber, sizeof(m.info.serialNumber)), ")");
  std::optional<SecretBytes> pin;
  if ((m.info.flags & CKF_LOGIN_REQUIRED) != 0 &&
      (m.info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) == 0) {
    HSMSIM_ASSIGN_OR_RETURN(pin, Pin(uri, description));
  }
  HSMSIM_ASSIGN_OR_RETURN(auto token, Token::Open(m.module, m.slot, m.info, pin ? &*pin : nullptr));
  tokens_[key] = token;
  return token;
}

}  // namespace hsmsim::host::pkcs11

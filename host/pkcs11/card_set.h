// CardSet: the smart cards (PKCS#11 tokens) one hsmctl invocation uses. It
// loads the PKCS#11 modules through p11-kit once, finds the token a
// `pkcs11:` URI names, asks for that token's PIN once and keeps one logged-in
// session per token, so a ceremony with two keys on one card logs in once.
#ifndef HSMSIM_HOST_PKCS11_CARD_SET_H_
#define HSMSIM_HOST_PKCS11_CARD_SET_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/secret_bytes.h"
#include "host/pkcs11/token.h"
#include "host/pkcs11/token_uri.h"

namespace hsmsim::host::pkcs11 {

inline constexpr char kPkcs11ModuleEnv[] = "HSMSIM_PKCS11_MODULE";

// PinPrompt reads a PIN for the token described by its argument (tests
// replace the terminal prompt).
using PinPrompt = std::function<absl::StatusOr<SecretBytes>(const std::string& token)>;

// TerminalPinPrompt asks on the terminal, echo off: "PIN for token 'L'
// (serial S): ". INVALID_ARGUMENT (NO_PIN) naming the token when stdin is not
// a terminal.
absl::StatusOr<SecretBytes> TerminalPinPrompt(const std::string& token);

// CardSet owns the modules and token sessions of one invocation. Not
// thread-safe. Tokens it hands out stay usable after it is gone.
class CardSet {
 public:
  // `module` is --pkcs11-module: a module path (contains '/'), the name of a
  // module registered with p11-kit, or empty for $HSMSIM_PKCS11_MODULE, else
  // every registered module.
  explicit CardSet(std::string module, PinPrompt prompt = TerminalPinPrompt);

  // OpenToken returns the logged-in session on the one token `uri` names
  // (its token, serial, manufacturer and model attributes; a URI without
  // them names the only token there is). The PIN comes from the URI's
  // pin-value, else pin-source (a file path or file: URI, first line), else
  // the prompt; a token without CKF_LOGIN_REQUIRED gets none. Errors name
  // the token: NOT_FOUND (TOKEN_NOT_FOUND) when no present token matches,
  // FAILED_PRECONDITION (AMBIGUOUS_TOKEN) when several do, the login errors
  // of Token::Open, NOT_FOUND (PKCS11_MODULE_UNAVAILABLE) and
  // (PIN_SOURCE_UNREADABLE).
  absl::StatusOr<std::shared_ptr<Token>> OpenToken(const TokenUri& uri);

 private:
  absl::StatusOr<std::vector<std::shared_ptr<LoadedModule>>> Modules(const TokenUri& uri);
  absl::StatusOr<SecretBytes> Pin(const TokenUri& uri, const std::string& token);

  std::string module_;
  PinPrompt prompt_;
  std::map<std::string, std::vector<std::shared_ptr<LoadedModule>>> modules_;
  std::map<std::pair<CK_FUNCTION_LIST*, CK_SLOT_ID>, std::shared_ptr<Token>> tokens_;
};

}  // namespace hsmsim::host::pkcs11

#endif  // HSMSIM_HOST_PKCS11_CARD_SET_H_

// AccessToken: the console's random access token, which every HTTP request
// must present (docs/console.md, "Security model").
#ifndef HSMSIM_HOST_CONSOLE_ACCESS_TOKEN_H_
#define HSMSIM_HOST_CONSOLE_ACCESS_TOKEN_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace hsmsim::console {

// AccessToken holds the token as 64 lowercase hex digits (32 random bytes
// from OpenSSL's RAND_bytes). It is a secret: never logged; only the URL
// hsmctl console prints carries it. Immutable, so thread-safe.
class AccessToken {
 public:
  // Generate returns a new random token, or INTERNAL when OpenSSL's random
  // generator fails.
  static absl::StatusOr<AccessToken> Generate();
  // FromText returns the token `text` (for tests).
  static AccessToken FromText(std::string text);

  // text returns the token as it goes into the URL.
  const std::string& text() const { return text_; }

  // Matches compares `presented` with the token in constant time
  // (CRYPTO_memcmp; only the length is learned from the time taken).
  bool Matches(std::string_view presented) const;

  // MatchesBearer is Matches on the credentials of an Authorization header
  // value "Bearer TOKEN" (scheme case-insensitive); false for any other form.
  bool MatchesBearer(std::string_view authorization) const;

 private:
  explicit AccessToken(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

}  // namespace hsmsim::console

#endif  // HSMSIM_HOST_CONSOLE_ACCESS_TOKEN_H_

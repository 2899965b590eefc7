#include "host/console/access_token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <strings.h>

#include <array>
#include <cstdint>

#include "common/hex.h"

namespace hsmsim::console {

absl::StatusOr<AccessToken> AccessToken::Generate() {
  std::array<uint8_t, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return absl::InternalError("OpenSSL's random generator failed to make the access token");
  }
  AccessToken token(ToHex(absl::Span<const uint8_t>(bytes.data(), bytes.size())));
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return token;
}

AccessToken AccessToken::FromText(std::string text) { return AccessToken(std::move(text)); }

bool AccessToken::Matches(std::string_view presented) const {
  if (text_.empty() || presented.size() != text_.size()) return false;
  return CRYPTO_memcmp(presented.data(), text_.data(), text_.size()) == 0;
}

bool AccessToken::MatchesBearer(std::string_view authorization) const {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      strncasecmp(authorization.data(), kScheme.data(), kScheme.size()) != 0) {
    return false;
  }
  std::string_view credentials = authorization.substr(kScheme.size());
  while (!credentials.empty() && credentials.front() == ' ') credentials.remove_prefix(1);
  while (!credentials.empty() && credentials.back() == ' ') credentials.remove_suffix(1);
  return Matches(credentials);
}

}  // namespace hsmsim::console

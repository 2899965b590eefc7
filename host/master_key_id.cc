#include "host/master_key_id.h"

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host {

std::string ShortId(std::string_view id) {
  if (id.empty()) return "-";
  return ToHex(id.substr(0, kShortIdHexDigits / 2));
}

bool SameId(std::string_view a, std::string_view b) {
  return ConstantTimeEquals(AsBytes(a), AsBytes(b));
}

absl::StatusOr<VerificationPattern> VerificationPattern::FromBytes(std::string_view bytes) {
  if (bytes.size() != kSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadVp,
                 StrCat("a verification pattern is ", kSize, " bytes, got ", bytes.size()));
  }
  return VerificationPattern(std::string(bytes));
}

absl::StatusOr<VerificationPattern> VerificationPattern::FromHex(std::string_view hex) {
  auto bytes = hsmsim::FromHex(hex);
  if (!bytes.ok() || bytes->size() != kSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadVp,
                 StrCat("a verification pattern is ", 2 * kSize, " hex digits"));
  }
  return VerificationPattern(std::move(*bytes));
}

std::string VerificationPattern::Hex() const { return ToHex(bytes_); }

Wkid VerificationPattern::wkid() const { return Wkid(bytes_.substr(0, Wkid::kSize)); }

absl::StatusOr<Wkid> Wkid::FromBytes(std::string_view bytes) {
  if (bytes.size() != kSize) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadWkid,
                 StrCat("a WKID is ", kSize, " bytes, got ", bytes.size()));
  }
  return Wkid(std::string(bytes));
}

std::string Wkid::Hex() const { return ToHex(bytes_); }

}  // namespace hsmsim::host

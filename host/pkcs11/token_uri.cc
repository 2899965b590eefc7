#include "host/pkcs11/token_uri.h"

#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host::pkcs11 {
namespace {

constexpr std::string_view kScheme = "pkcs11:";

// WithoutPinValue returns `text` with the value of a pin-value query
// attribute replaced by "***" so that it can be printed.
std::string WithoutPinValue(std::string_view text) {
  std::string out(text);
  size_t pos = out.find("pin-value=");
  if (pos == std::string::npos) return out;
  const size_t start = pos + std::string_view("pin-value=").size();
  size_t end = out.find('&', start);
  if (end == std::string::npos) end = out.size();
  out.replace(start, end - start, "***");
  return out;
}

std::string AttributeString(P11KitUri* uri, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE* attr = p11_kit_uri_get_attribute(uri, type);
  if (attr == nullptr || attr->pValue == nullptr) return "";
  return std::string(static_cast<const char*>(attr->pValue), attr->ulValueLen);
}

}  // namespace

bool IsPkcs11Uri(std::string_view spec) { return spec.substr(0, kScheme.size()) == kScheme; }

absl::StatusOr<TokenUri> TokenUri::Parse(std::string_view text) {
  TokenUri out;
  out.printable_ = WithoutPinValue(text);
  if (!IsPkcs11Uri(text)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPkcs11Uri,
                 StrCat("'", out.printable_, "' is not a pkcs11: URI (RFC 7512)"));
  }
  out.uri_.reset(p11_kit_uri_new());
  const std::string copy(text);
  const int rc = p11_kit_uri_parse(copy.c_str(), P11_KIT_URI_FOR_ANY, out.uri_.get());
  if (rc != P11_KIT_URI_OK) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kBadPkcs11Uri,
        StrCat("'", out.printable_, "' is not a valid pkcs11: URI: ", p11_kit_uri_message(rc)));
  }
  P11KitUri* uri = out.uri_.get();
  out.object_label_ = AttributeString(uri, CKA_LABEL);
  out.object_id_ = AttributeString(uri, CKA_ID);
  if (CK_ATTRIBUTE* cls = p11_kit_uri_get_attribute(uri, CKA_CLASS);
      cls != nullptr && cls->ulValueLen == sizeof(CK_OBJECT_CLASS)) {
    out.object_class_ = *static_cast<const CK_OBJECT_CLASS*>(cls->pValue);
  }
  if (const char* v = p11_kit_uri_get_module_name(uri)) out.module_name_ = v;
  if (const char* v = p11_kit_uri_get_module_path(uri)) out.module_path_ = v;
  if (const char* v = p11_kit_uri_get_pin_source(uri)) out.pin_source_ = v;
  if (const char* v = p11_kit_uri_get_pin_value(uri))
    out.pin_value_ = MakeSecret(std::string_view(v));
  if (!out.pin_source_.empty() && !out.pin_value_.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPkcs11Uri,
                 StrCat("'", out.printable_,
                        "' has both pin-source and pin-value; give one (RFC 7512 section 2.4)"));
  }
  return out;
}

bool TokenUri::MatchesToken(const CK_TOKEN_INFO& info) const {
  return p11_kit_uri_match_token_info(uri_.get(), &info) == 1;
}

}  // namespace hsmsim::host::pkcs11

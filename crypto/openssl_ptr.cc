#include "crypto/openssl_ptr.h"

#include <openssl/err.h>

#include <string>

#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::crypto {

absl::Status OpenSslError(std::string_view reason, std::string_view what) {
  unsigned long code = ERR_get_error();
  std::string detail = "no OpenSSL error queued";
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    detail = buf;
  }
  ERR_clear_error();
  return Error(absl::StatusCode::kInternal, reason, StrCat(what, " (", detail, ")"));
}

void ClearOpenSslErrors() { ERR_clear_error(); }

}  // namespace hsmsim::crypto

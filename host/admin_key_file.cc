#include "host/admin_key_file.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/openssl_ptr.h"

namespace hsmsim::host {
namespace {

constexpr std::string_view kNamePrefix = "# name: ";
constexpr std::string_view kPemBegin = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

absl::Status BadFile(std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, "BAD_ADMIN_KEY_FILE",
               StrCat("not an hsmsim admin key file: ", what));
}

struct PasswordRef {
  std::string_view password;
};

int PasswordCallback(char* buf, int size, int /*rwflag*/, void* u) {
  const auto* ref = static_cast<const PasswordRef*>(u);
  if (ref->password.size() > static_cast<size_t>(size)) return -1;
  std::memcpy(buf, ref->password.data(), ref->password.size());
  return static_cast<int>(ref->password.size());
}

}  // namespace

absl::StatusOr<AdminKey> MakeAdminKey(std::string name, crypto::EvpPkeyPtr key) {
  if (name.empty() || name.size() > 30 || name.find_first_of("\r\n") != std::string::npos) {
    return Error(absl::StatusCode::kInvalidArgument, "BAD_ADMIN_NAME",
                 StrCat("administrator name must be 1..30 characters on one line, got ",
                        name.size(), " characters"));
  }
  AdminKey admin;
  admin.name = std::move(name);
  HSMSIM_ASSIGN_OR_RETURN(admin.public_key_der, crypto::PublicKeyDer(*key));
  // Only P-521 keys are administrators' keys.
  HSMSIM_RETURN_IF_ERROR(crypto::ParseP521PublicKeyDer(AsBytes(admin.public_key_der)).status());
  admin.key_id = crypto::KeyIdOfPublicKeyDer(AsBytes(admin.public_key_der));
  admin.key = std::move(key);
  return admin;
}

absl::StatusOr<std::string> SerializeAdminKeyFile(const AdminKey& admin,
                                                  std::string_view password) {
  if (password.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, "EMPTY_PASSWORD",
                 "the password must not be empty");
  }
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return crypto::OpenSslError("CRYPTO_FAILED", "BIO_new");
  PasswordRef ref{password};
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), admin.key.get(), EVP_aes_256_cbc(), nullptr, 0,
                                    PasswordCallback, &ref) != 1) {
    return crypto::OpenSslError("CRYPTO_FAILED", "PEM_write_bio_PKCS8PrivateKey");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string text = StrCat(kAdminKeyFileHeader, "\n", kNamePrefix, admin.name, "\n");
  text.append(data, static_cast<size_t>(len));
  return text;
}

absl::StatusOr<AdminKey> ParseAdminKeyFile(std::string_view text, std::string_view password) {
  std::string name;
  bool header_seen = false;
  size_t pos = 0;
  size_t pem_start = std::string_view::npos;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == kAdminKeyFileHeader) {
      header_seen = true;
    } else if (line.starts_with(kNamePrefix)) {
      name = std::string(line.substr(kNamePrefix.size()));
    } else if (line == kPemBegin) {
      pem_start = pos;
      break;
    } else if (!line.empty() && !line.starts_with("#")) {
      return BadFile(StrCat("unexpected line ", line.size() > 40 ? "(long)" : std::string(line)));
    }
    pos = end + 1;
  }
  if (!header_seen) return BadFile(StrCat("the first line must be '", kAdminKeyFileHeader, "'"));
  if (name.empty()) return BadFile("no '# name: ' line");
  if (pem_start == std::string_view::npos) return BadFile(StrCat("no '", kPemBegin, "' block"));
  std::string_view pem = text.substr(pem_start);
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return crypto::OpenSslError("CRYPTO_FAILED", "BIO_new_mem_buf");
  PasswordRef ref{password};
  crypto::EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, PasswordCallback, &ref));
  if (key == nullptr) {
    crypto::ClearOpenSslErrors();
    return Error(absl::StatusCode::kPermissionDenied, "WRONG_PASSWORD",
                 StrCat("the password does not open the key of administrator '", name,
                        "' (or the key block is damaged)"));
  }
  auto admin = MakeAdminKey(std::move(name), std::move(key));
  if (!admin.ok()) return BadFile(std::string(admin.status().message()));
  return admin;
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(absl::StatusCode::kNotFound, "FILE_UNREADABLE",
                 StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    return Error(absl::StatusCode::kNotFound, "FILE_UNREADABLE", StrCat("error reading ", path));
  }
  return out.str();
}

absl::Status WriteNewFile(const std::string& path, std::string_view bytes, int mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return Error(absl::StatusCode::kAlreadyExists, "FILE_EXISTS",
                   StrCat(path, " already exists; refusing to overwrite it"));
    }
    return Error(absl::StatusCode::kInternal, "FILE_WRITE_FAILED",
                 StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Error(absl::StatusCode::kInternal, "FILE_WRITE_FAILED",
                   StrCat("cannot write ", path, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Error(absl::StatusCode::kInternal, "FILE_WRITE_FAILED",
                 StrCat("cannot sync ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<AdminKey> ReadAdminKeyFile(const std::string& path, std::string_view password) {
  HSMSIM_ASSIGN_OR_RETURN(std::string text, ReadFileBytes(path));
  auto admin = ParseAdminKeyFile(text, password);
  if (!admin.ok()) return WithContext(admin.status(), path);
  return admin;
}

absl::Status WriteAdminKeyFile(const std::string& path, const AdminKey& admin,
                               std::string_view password) {
  HSMSIM_ASSIGN_OR_RETURN(std::string text, SerializeAdminKeyFile(admin, password));
  return WriteNewFile(path, text, 0600);
}

}  // namespace hsmsim::host

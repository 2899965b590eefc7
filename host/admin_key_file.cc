#include "host/admin_key_file.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "common/utf8.h"
#include "crypto/entropy.h"
#include "crypto/openssl_ptr.h"

namespace hsmsim::host {
namespace {

constexpr std::string_view kNamePrefix = "# name: ";
constexpr std::string_view kPemBegin = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

// Owners of the PKCS#8 objects; PKCS8_PRIV_KEY_INFO_free wipes the key bytes.
using Pkcs8InfoPtr =
    std::unique_ptr<PKCS8_PRIV_KEY_INFO, crypto::OpenSslDeleter<PKCS8_PRIV_KEY_INFO_free>>;
using X509SigPtr = std::unique_ptr<X509_SIG, crypto::OpenSslDeleter<X509_SIG_free>>;
using Pbe2ParamPtr = std::unique_ptr<PBE2PARAM, crypto::OpenSslDeleter<PBE2PARAM_free>>;
using Pbkdf2ParamPtr = std::unique_ptr<PBKDF2PARAM, crypto::OpenSslDeleter<PBKDF2PARAM_free>>;

absl::Status BadFile(std::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kBadAdminKeyFile,
               StrCat("not an hsmsim admin key file: ", what));
}

// CheckPbkdf2Cost refuses an encrypted key whose PBKDF2 iteration count is
// above the maximum, before the password is tried: a planted file must not
// stall hsmctl for hours. Other schemes (scrypt, whose memory OpenSSL bounds)
// pass; OpenSSL judges them when decrypting.
absl::Status CheckPbkdf2Cost(const X509_SIG& sig) {
  const X509_ALGOR* alg = nullptr;
  X509_SIG_get0(&sig, &alg, nullptr);
  const ASN1_OBJECT* oid = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&oid, &ptype, &pval, alg);
  if (OBJ_obj2nid(oid) != NID_pbes2) return absl::OkStatus();
  if (ptype != V_ASN1_SEQUENCE) return BadFile("PBES2 parameters are not a sequence");
  Pbe2ParamPtr pbe2(static_cast<PBE2PARAM*>(
      ASN1_item_unpack(static_cast<const ASN1_STRING*>(pval), ASN1_ITEM_rptr(PBE2PARAM))));
  if (pbe2 == nullptr) {
    crypto::ClearOpenSslErrors();
    return BadFile("PBES2 parameters do not parse");
  }
  X509_ALGOR_get0(&oid, &ptype, &pval, pbe2->keyfunc);
  if (OBJ_obj2nid(oid) != NID_id_pbkdf2) return absl::OkStatus();
  if (ptype != V_ASN1_SEQUENCE) return BadFile("PBKDF2 parameters are not a sequence");
  Pbkdf2ParamPtr kdf(static_cast<PBKDF2PARAM*>(
      ASN1_item_unpack(static_cast<const ASN1_STRING*>(pval), ASN1_ITEM_rptr(PBKDF2PARAM))));
  if (kdf == nullptr) {
    crypto::ClearOpenSslErrors();
    return BadFile("PBKDF2 parameters do not parse");
  }
  const long iterations = ASN1_INTEGER_get(kdf->iter);
  if (iterations < 1 || iterations > kMaxAdminKeyPbkdf2Iterations) {
    return BadFile(StrCat("PBKDF2 iterations must be 1..", kMaxAdminKeyPbkdf2Iterations, ", got ",
                          iterations));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AdminKey> MakeAdminKey(std::string name, crypto::EvpPkeyPtr key) {
  if (name.empty() || name.size() > 30 || name.find_first_of("\r\n") != std::string::npos) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadAdminName,
                 StrCat("administrator name must be 1..30 characters on one line, got ",
                        name.size(), " characters"));
  }
  // The name goes to the units in a proto string field: a unit refuses the
  // whole frame when it is not UTF-8.
  if (!IsValidUtf8(name)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadAdminName,
                 "administrator name is not valid UTF-8");
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

absl::StatusOr<std::string> SerializeAdminKeyFile(const AdminKey& admin, std::string_view password,
                                                  int pbkdf2_iterations) {
  if (password.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kEmptyPassword,
                 "the password must not be empty");
  }
  if (pbkdf2_iterations < kMinAdminKeyPbkdf2Iterations ||
      pbkdf2_iterations > kMaxAdminKeyPbkdf2Iterations) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKdfCost,
                 StrCat("PBKDF2 iterations must be ", kMinAdminKeyPbkdf2Iterations, "..",
                        kMaxAdminKeyPbkdf2Iterations, ", got ", pbkdf2_iterations));
  }
  if (password.size() > INT32_MAX) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadPassword,
                 "the password is too long");
  }
  // PEM_write_bio_PKCS8PrivateKey would use OpenSSL's default of 2,048
  // iterations; PKCS8_encrypt takes the count. pbe_nid -1 selects PBES2 with
  // the cipher, PBKDF2-HMAC-SHA-256 and a random salt.
  Pkcs8InfoPtr info(EVP_PKEY2PKCS8(admin.key.get()));
  if (info == nullptr) return crypto::OpenSslError(reason::kCryptoFailed, "EVP_PKEY2PKCS8");
  X509SigPtr sig(PKCS8_encrypt(-1, EVP_aes_256_cbc(), password.data(),
                               static_cast<int>(password.size()), nullptr, 0, pbkdf2_iterations,
                               info.get()));
  if (sig == nullptr) return crypto::OpenSslError(reason::kCryptoFailed, "PKCS8_encrypt");
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return crypto::OpenSslError(reason::kCryptoFailed, "BIO_new");
  if (PEM_write_bio_PKCS8(bio.get(), sig.get()) != 1) {
    return crypto::OpenSslError(reason::kCryptoFailed, "PEM_write_bio_PKCS8");
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
  int line_number = 0;
  while (pos < text.size()) {
    ++line_number;
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
      // Not quoted: the file may be something else that holds a secret
      // (a PIN file given by mistake).
      return BadFile(StrCat("line ", line_number,
                            " is neither a comment, the name line nor the start of the key"));
    }
    pos = end + 1;
  }
  if (!header_seen) return BadFile(StrCat("the first line must be '", kAdminKeyFileHeader, "'"));
  if (name.empty()) return BadFile("no '# name: ' line");
  if (pem_start == std::string_view::npos) return BadFile(StrCat("no '", kPemBegin, "' block"));
  std::string_view pem = text.substr(pem_start);
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return crypto::OpenSslError(reason::kCryptoFailed, "BIO_new_mem_buf");
  X509SigPtr sig(PEM_read_bio_PKCS8(bio.get(), nullptr, nullptr, nullptr));
  if (sig == nullptr) {
    crypto::ClearOpenSslErrors();
    return BadFile(StrCat("the key block of administrator '", name, "' is damaged"));
  }
  HSMSIM_RETURN_IF_ERROR(CheckPbkdf2Cost(*sig));
  Pkcs8InfoPtr info(password.size() > INT32_MAX ? nullptr
                                                : PKCS8_decrypt(sig.get(), password.data(),
                                                                static_cast<int>(password.size())));
  crypto::EvpPkeyPtr key(info == nullptr ? nullptr : EVP_PKCS82PKEY(info.get()));
  if (key == nullptr) {
    crypto::ClearOpenSslErrors();
    return Error(absl::StatusCode::kPermissionDenied, reason::kWrongPassword,
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
    return Error(absl::StatusCode::kNotFound, reason::kFileUnreadable,
                 StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    return Error(absl::StatusCode::kNotFound, reason::kFileUnreadable,
                 StrCat("error reading ", path));
  }
  return out.str();
}

absl::Status WriteNewFile(const std::string& path, std::string_view bytes, int mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kFileExists,
                   StrCat(path, " already exists; refusing to overwrite it"));
    }
    return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
                 StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  // The umask can only have narrowed `mode`; set it exactly, so the mode a
  // file gets never depends on the caller's shell.
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    int err = errno;
    ::close(fd);
    return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
                 StrCat("cannot set the mode of ", path, ": ", std::strerror(err)));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
                   StrCat("cannot write ", path, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
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
                               std::string_view password, int pbkdf2_iterations) {
  HSMSIM_ASSIGN_OR_RETURN(std::string text,
                          SerializeAdminKeyFile(admin, password, pbkdf2_iterations));
  return WriteNewFile(path, text, 0600);
}

}  // namespace hsmsim::host

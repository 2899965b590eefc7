// Smart card test support: SoftHSM2 tokens made per test in a temporary
// directory (SOFTHSM2_CONF), the test's own look inside them (a part
// extracted the way only a test would, a private key imported from known
// bytes), a TCP relay that records every frame between hsmctl and a unit,
// and a search for secrets in files and frames.
#ifndef HSMSIM_TESTS_HOST_CARD_TEST_SUPPORT_H_
#define HSMSIM_TESTS_HOST_CARD_TEST_SUPPORT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include "hsmctl_harness.h"

namespace hsmsim::host {

inline constexpr char kSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";
// A PIN no other byte string in the test would contain by chance.
inline constexpr char kCardPin[] = "card-pin-5f3a91";

inline int Shell(const std::string& command) {
  int rc = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// SoftHsm is a SoftHSM2 token directory of one test. It points
// SOFTHSM2_CONF and HSMSIM_PKCS11_MODULE of this process (and so of every
// hsmctl it starts) at it.
class SoftHsm {
 public:
  explicit SoftHsm(const TempDir& tmp) : dir_(tmp.Join("softhsm")) {
    fs::create_directories(dir_ + "/tokens");
    const std::string conf = dir_ + "/softhsm2.conf";
    std::ofstream(conf) << "directories.tokendir = " << dir_ << "/tokens\n"
                        << "objectstore.backend = file\nlog.level = ERROR\n";
    std::ofstream(pin_file()) << kCardPin << "\n";
    setenv("SOFTHSM2_CONF", conf.c_str(), 1);
    setenv("HSMSIM_PKCS11_MODULE", kSoftHsmModule, 1);
  }

  std::string pin_file() const { return dir_ + "/pin"; }
  const std::string& dir() const { return dir_; }

  void InitToken(const std::string& label) {
    ASSERT_EQ(Shell(StrCat("softhsm2-util --init-token --free --label ", label, " --pin ", kCardPin,
                           " --so-pin so-pin-1")),
              0)
        << "softhsm2-util --init-token " << label;
  }

  // Uri names `object` (may be empty) on token `label`, PIN from the pin file.
  std::string Uri(const std::string& label, const std::string& object = "") const {
    return StrCat("pkcs11:token=", label, object.empty() ? "" : ";object=", object,
                  "?pin-source=", pin_file());
  }

  // Tool runs pkcs11-tool on token `label`, logged in.
  int Tool(const std::string& label, const std::string& args) const {
    return Shell(StrCat("pkcs11-tool --module ", kSoftHsmModule, " --token-label ", label,
                        " --login --pin ", kCardPin, " ", args));
  }

 private:
  std::string dir_;
};

// P11 is a direct PKCS#11 session for the test's own look at a token.
class P11 {
 public:
  explicit P11(const std::string& token_label) {
    f_ = p11_kit_module_load(kSoftHsmModule, 0);
    EXPECT_NE(f_, nullptr);
    EXPECT_EQ(p11_kit_module_initialize(f_), CKR_OK);
    CK_SLOT_ID slots[32];
    CK_ULONG n = 32;
    EXPECT_EQ(f_->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n; ++i) {
      CK_TOKEN_INFO info{};
      f_->C_GetTokenInfo(slots[i], &info);
      std::string label(reinterpret_cast<char*>(info.label), sizeof(info.label));
      label.erase(label.find_last_not_of(' ') + 1);
      if (label == token_label) {
        EXPECT_EQ(f_->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                    &session_),
                  CKR_OK);
        const CK_RV rv = f_->C_Login(session_, CKU_USER,
                                     reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(kCardPin)),
                                     std::strlen(kCardPin));
        // In process, hsmsim's own session may have logged the token in.
        EXPECT_TRUE(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) << rv;
      }
    }
    EXPECT_NE(session_, CK_INVALID_HANDLE) << token_label;
  }
  ~P11() {
    if (session_ != CK_INVALID_HANDLE) f_->C_CloseSession(session_);
    p11_kit_module_finalize(f_);
    p11_kit_module_release(f_);
  }

  CK_OBJECT_HANDLE FindSecretKey(const std::string& label) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE match[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    f_->C_FindObjectsInit(session_, match, 2);
    f_->C_FindObjects(session_, &h, 1, &n);
    f_->C_FindObjectsFinal(session_);
    EXPECT_EQ(n, 1u) << label;
    return h;
  }

  // CreateAesKey creates a 32-byte token secret key from known bytes with
  // the given flags (objects a careless tool could make).
  void CreateAesKey(const std::string& label, const std::string& value, bool sensitive, bool derive,
                    bool wrap) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, s = sensitive ? CK_TRUE : CK_FALSE, d = derive ? CK_TRUE : CK_FALSE,
             w = wrap ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_KEY_TYPE, &type, sizeof(type)},
                           {CKA_TOKEN, &yes, 1},
                           {CKA_PRIVATE, &yes, 1},
                           {CKA_SENSITIVE, &s, 1},
                           {CKA_EXTRACTABLE, &yes, 1},
                           {CKA_DERIVE, &d, 1},
                           {CKA_WRAP, &w, 1},
                           {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                           {CKA_VALUE, const_cast<char*>(value.data()), value.size()}};
    CK_OBJECT_HANDLE h;
    ASSERT_EQ(f_->C_CreateObject(session_, tmpl, 10, &h), CKR_OK) << label;
  }

  // GenerateAesKey generates a 32-byte sensitive part-like key with CKA_DERIVE.
  void GenerateDerivableKey(const std::string& label) {
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                           {CKA_TOKEN, &yes, 1},
                           {CKA_SENSITIVE, &yes, 1},
                           {CKA_EXTRACTABLE, &yes, 1},
                           {CKA_DERIVE, &yes, 1},
                           {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE h;
    ASSERT_EQ(f_->C_GenerateKey(session_, &mech, tmpl, 6, &h), CKR_OK) << label;
  }

  // ExtractPart learns a part's clear value the way only a test would: it
  // wraps the (extractable) part under a key of known bytes and unwraps it
  // here. The test needs the value to search for it.
  std::string ExtractPart(const std::string& label) {
    const std::string known(32, '\x5a');
    CreateAesKey("test-extractor-" + label, known, false, false, true);
    CK_OBJECT_HANDLE wrapping = FindSecretKey("test-extractor-" + label);
    CK_OBJECT_HANDLE part = FindSecretKey(label);
    CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    unsigned char wrapped[64];
    CK_ULONG wrapped_len = sizeof(wrapped);
    EXPECT_EQ(f_->C_WrapKey(session_, &mech, wrapping, part, wrapped, &wrapped_len), CKR_OK);
    f_->C_DestroyObject(session_, wrapping);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    unsigned char clear[64];
    int clear_len = 0;
    EVP_DecryptInit_ex(ctx, EVP_aes_256_wrap_pad(), nullptr,
                       reinterpret_cast<const unsigned char*>(known.data()), nullptr);
    EXPECT_EQ(EVP_DecryptUpdate(ctx, clear, &clear_len, wrapped, static_cast<int>(wrapped_len)), 1);
    EVP_CIPHER_CTX_free(ctx);
    EXPECT_EQ(clear_len, 32);
    return std::string(reinterpret_cast<char*>(clear), clear_len);
  }

 private:
  CK_FUNCTION_LIST* f_ = nullptr;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

// ImportP521Key makes a P-521 key in OpenSSL, imports the private and public
// halves into token `label` with pkcs11-tool (label `name`, CKA_ID `id_hex`)
// and returns the 66-byte private scalar, so a test can look for it.
inline std::string ImportP521Key(const SoftHsm& hsm, const TempDir& tmp, const std::string& label,
                                 const std::string& name, const std::string& id_hex) {
  EVP_PKEY* key = EVP_EC_gen("P-521");
  EXPECT_NE(key, nullptr);
  const std::string priv = tmp.Join(name + "-import.pem");
  const std::string pub = tmp.Join(name + "-import.pub.pem");
  {
    FILE* f = fopen(priv.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    f = fopen(pub.c_str(), "w");
    PEM_write_PUBKEY(f, key);
    fclose(f);
  }
  BIGNUM* d = nullptr;
  EVP_PKEY_get_bn_param(key, "priv", &d);
  std::string scalar(66, '\0');
  BN_bn2binpad(d, reinterpret_cast<unsigned char*>(scalar.data()), 66);
  BN_clear_free(d);
  EVP_PKEY_free(key);
  EXPECT_EQ(hsm.Tool(label, StrCat("--write-object ", priv, " --type privkey --label ", name,
                                   " --id ", id_hex)),
            0);
  EXPECT_EQ(hsm.Tool(label, StrCat("--write-object ", pub, " --type pubkey --label ", name,
                                   " --id ", id_hex)),
            0);
  fs::remove(priv);
  fs::remove(pub);
  return scalar;
}

// FrameRecorder relays 127.0.0.1 connections to `target` ("host:port") and
// records every byte both ways. Point a unit's endpoint at Endpoint().
class FrameRecorder {
 public:
  explicit FrameRecorder(const std::string& target) {
    const size_t colon = target.rfind(':');
    target_port_ = static_cast<uint16_t>(std::stoi(target.substr(colon + 1)));
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listener_, 16);
    thread_ = std::thread([this] { Run(); });
  }
  ~FrameRecorder() {
    stop_ = true;
    thread_.join();
    close(listener_);
  }
  std::string Endpoint() const { return StrCat("127.0.0.1:", port_); }
  std::string Recorded() {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

 private:
  void Run() {
    std::vector<std::pair<int, int>> pairs;  // client, server
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (auto& [c, s] : pairs) {
        fds.push_back({c, POLLIN, 0});
        fds.push_back({s, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 50) <= 0) continue;
      std::vector<std::pair<int, int>> accepted;  // polled from the next round on
      if (fds[0].revents & POLLIN) {
        int client = accept(listener_, nullptr, nullptr);
        int server = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(target_port_);
        if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
          accepted.emplace_back(client, server);
        } else {
          close(client);
          close(server);
        }
      }
      std::vector<std::pair<int, int>> alive;
      for (size_t i = 0; i < pairs.size(); ++i) {
        auto [c, s] = pairs[i];
        bool open = true;
        for (int k = 0; k < 2 && open; ++k) {
          const pollfd& p = fds[1 + 2 * i + k];
          if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          char buf[65536];
          ssize_t n = read(p.fd, buf, sizeof(buf));
          if (n <= 0) {
            open = false;
            break;
          }
          {
            std::lock_guard<std::mutex> lock(mu_);
            bytes_.append(buf, n);
          }
          const int to = (p.fd == c) ? s : c;
          for (ssize_t off = 0; off < n;) {
            ssize_t w = write(to, buf + off, n - off);
            if (w <= 0) {
              open = false;
              break;
            }
            off += w;
          }
        }
        if (open) {
          alive.emplace_back(c, s);
        } else {
          close(c);
          close(s);
        }
      }
      alive.insert(alive.end(), accepted.begin(), accepted.end());
      pairs = std::move(alive);
    }
    for (auto& [c, s] : pairs) {
      close(c);
      close(s);
    }
  }

  int listener_ = -1;
  uint16_t port_ = 0;
  uint16_t target_port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::string bytes_;
};

// Forms returns a secret as raw bytes and as lower- and upper-case hex.
inline std::vector<std::string> Forms(const std::string& secret) {
  std::string lower = ToHex(secret);
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return {secret, lower, upper};
}

// FindSecrets returns "WHERE: NAME" for every secret (any form) found in a
// file under `dir` or in `extra` (named blobs such as recorded frames).
inline std::vector<std::string> FindSecrets(const std::string& dir,
                                            const std::map<std::string, std::string>& secrets,
                                            const std::map<std::string, std::string>& extra = {}) {
  std::vector<std::string> hits;
  auto search = [&](const std::string& where, const std::string& data) {
    for (const auto& [name, secret] : secrets) {
      for (const std::string& form : Forms(secret)) {
        if (data.find(form) != std::string::npos) hits.push_back(StrCat(where, ": ", name));
      }
    }
  };
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    search(entry.path().string(), ReadFileBytes(entry.path().string()).value_or(""));
  }
  for (const auto& [where, data] : extra) search(where, data);
  return hits;
}

}  // namespace hsmsim::host

#endif  // HSMSIM_TESTS_HOST_CARD_TEST_SUPPORT_H_

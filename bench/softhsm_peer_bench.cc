// softhsm_peer_bench: the same re-wrap as the re-encryption kernel, done by a
// peer: SoftHSMv2 through PKCS#11. For each of K keys: C_UnwrapKey under the
// old AES-256 wrapping key, then C_WrapKey under the new one, then
// C_DestroyObject of the unwrapped session key. The mechanism is
// CKM_AES_KEY_WRAP_PAD (RFC 5649): SoftHSM 2.6 does not offer CKM_AES_GCM for
// C_WrapKey / C_UnwrapKey (the benchmark probes it at start and says so).
//
// The token lives in a temporary directory (SOFTHSM2_CONF points to a config
// written there) and is removed at the end. Without libsofthsm2 the
// benchmark is skipped with the reason.
//
//   build/bench/softhsm_peer_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/str_cat.h"

namespace hsmsim::bench {
namespace {

constexpr char kSoftHsmLibrary[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr char kSoPin[] = "12345678";
constexpr char kUserPin[] = "87654321";

// SoftHsmPeer: a loaded SoftHSM with one logged-in session and the two
// wrapping keys. `error` is set when any step failed.
struct SoftHsmPeer {
  void* library = nullptr;
  CK_FUNCTION_LIST_PTR p11 = nullptr;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE old_kek = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE new_kek = CK_INVALID_HANDLE;
  std::vector<std::vector<CK_BYTE>> wrapped;  // data keys under old_kek
  std::string dir;
  std::string error;
  std::string gcm_wrap;  // what the GCM probe found
};

std::string Rv(const char* what, CK_RV rv) {
  char hex[32];
  std::snprintf(hex, sizeof(hex), "0x%lx", static_cast<unsigned long>(rv));
  return StrCat(what, " failed: CKR ", std::string(hex));
}

CK_RV GenerateAesKey(SoftHsmPeer& p, bool wrapping, CK_OBJECT_HANDLE* key) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_ULONG len = 32;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_BBOOL wrap = wrapping ? CK_TRUE : CK_FALSE;
  CK_BBOOL extractable = wrapping ? CK_FALSE : CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},
      {CKA_KEY_TYPE, &type, sizeof(type)},
      {CKA_VALUE_LEN, &len, sizeof(len)},
      {CKA_TOKEN, &no, sizeof(no)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_WRAP, &wrap, sizeof(wrap)},
      {CKA_UNWRAP, &wrap, sizeof(wrap)},
      {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
  };
  CK_MECHANISM mech = {CKM_AES_KEY_GEN, nullptr, 0};
  return p.p11->C_GenerateKey(p.session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), key);
}

CK_RV Wrap(SoftHsmPeer& p, CK_OBJECT_HANDLE kek, CK_OBJECT_HANDLE key, std::vector<CK_BYTE>* out) {
  CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  out->resize(64);
  CK_ULONG len = out->size();
  CK_RV rv = p.p11->C_WrapKey(p.session, &mech, kek, key, out->data(), &len);
  out->resize(rv == CKR_OK ? len : 0);
  return rv;
}

CK_RV Unwrap(SoftHsmPeer& p, CK_OBJECT_HANDLE kek, const std::vector<CK_BYTE>& wrapped,
             CK_OBJECT_HANDLE* key) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
      {CKA_TOKEN, &no, sizeof(no)},       {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)},
  };
  CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  return p.p11->C_UnwrapKey(p.session, &mech, kek, const_cast<CK_BYTE*>(wrapped.data()),
                            wrapped.size(), tmpl, sizeof(tmpl) / sizeof(tmpl[0]), key);
}

// Setup loads SoftHSM, initialises a token in a temp dir, logs in, makes the
// two wrapping keys and `keys` data keys wrapped under the old one.
void Setup(SoftHsmPeer& p, size_t keys) {
  p.library = dlopen(kSoftHsmLibrary, RTLD_NOW | RTLD_LOCAL);
  if (p.library == nullptr) {
    p.error = StrCat("SoftHSMv2 is not installed (", kSoftHsmLibrary,
                     " not found; Debian package softhsm2)");
    return;
  }
  char tmpl[] = "/tmp/hsmsim-softhsm-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    p.error = "cannot create a temp directory";
    return;
  }
  p.dir = tmpl;
  std::filesystem::create_directory(p.dir + "/tokens");
  {
    std::ofstream conf(p.dir + "/softhsm2.conf");
    conf << "directories.tokendir = " << p.dir << "/tokens\n"
         << "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n";
  }
  setenv("SOFTHSM2_CONF", (p.dir + "/softhsm2.conf").c_str(), 1);
  auto get_list =
      reinterpret_cast<CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR)>(dlsym(p.library, "C_GetFunctionList"));
  if (get_list == nullptr || get_list(&p.p11) != CKR_OK) {
    p.error = "C_GetFunctionList not found in libsofthsm2";
    return;
  }
  CK_RV rv = p.p11->C_Initialize(nullptr);
  if (rv != CKR_OK) return void(p.error = Rv("C_Initialize", rv));
  CK_SLOT_ID slots[8];
  CK_ULONG count = 8;
  rv = p.p11->C_GetSlotList(CK_FALSE, slots, &count);
  if (rv != CKR_OK || count == 0) return void(p.error = Rv("C_GetSlotList", rv));
  CK_UTF8CHAR label[32];
  std::memset(label, ' ', sizeof(label));
  std::memcpy(label, "hsmsim-bench", 12);
  rv = p.p11->C_InitToken(slots[0], reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(kSoPin)),
                          std::strlen(kSoPin), label);
  if (rv != CKR_OK) return void(p.error = Rv("C_InitToken", rv));
  // SoftHSM renumbers the slot of an initialised token.
  count = 8;
  rv = p.p11->C_GetSlotList(CK_TRUE, slots, &count);
  CK_SLOT_ID slot = 0;
  bool found = false;
  for (CK_ULONG i = 0; rv == CKR_OK && i < count && !found; ++i) {
    CK_TOKEN_INFO info;
    if (p.p11->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
        (info.flags & CKF_TOKEN_INITIALIZED) != 0 &&
        std::memcmp(info.label, label, sizeof(label)) == 0) {
      slot = slots[i];
      found = true;
    }
  }
  if (!found) return void(p.error = "the initialised token was not found");
  rv =
      p.p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &p.session);
  if (rv != CKR_OK) return void(p.error = Rv("C_OpenSession", rv));
  auto pin = [](const char* s) { return reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(s)); };
  if ((rv = p.p11->C_Login(p.session, CKU_SO, pin(kSoPin), std::strlen(kSoPin))) != CKR_OK ||
      (rv = p.p11->C_InitPIN(p.session, pin(kUserPin), std::strlen(kUserPin))) != CKR_OK ||
      (rv = p.p11->C_Logout(p.session)) != CKR_OK ||
      (rv = p.p11->C_Login(p.session, CKU_USER, pin(kUserPin), std::strlen(kUserPin))) != CKR_OK) {
    return void(p.error = Rv("login / PIN setup", rv));
  }
  if ((rv = GenerateAesKey(p, true, &p.old_kek)) != CKR_OK ||
      (rv = GenerateAesKey(p, true, &p.new_kek)) != CKR_OK) {
    return void(p.error = Rv("C_GenerateKey (wrapping key)", rv));
  }
  for (size_t i = 0; i < keys; ++i) {
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    std::vector<CK_BYTE> wrapped;
    if ((rv = GenerateAesKey(p, false, &key)) != CKR_OK) {
      return void(p.error = Rv("C_GenerateKey (data key)", rv));
    }
    if (i == 0) {
      // Probe: can SoftHSM wrap with AES-GCM?
      CK_BYTE iv[12] = {};
      CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, nullptr, 0, 128};
      CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof(gcm)};
      CK_BYTE out[128];
      CK_ULONG len = sizeof(out);
      CK_RV g = p.p11->C_WrapKey(p.session, &mech, p.old_kek, key, out, &len);
      p.gcm_wrap = g == CKR_OK                  ? "CKM_AES_GCM wrap is supported too"
                   : g == CKR_MECHANISM_INVALID ? "CKM_AES_GCM is not offered for C_WrapKey"
                                                : Rv("CKM_AES_GCM C_WrapKey", g);
    }
    if ((rv = Wrap(p, p.old_kek, key, &wrapped)) != CKR_OK) {
      return void(p.error = Rv("C_WrapKey", rv));
    }
    p.p11->C_DestroyObject(p.session, key);
    p.wrapped.push_back(std::move(wrapped));
  }
}

void Teardown(SoftHsmPeer& p) {
  if (p.p11 != nullptr) {
    if (p.session != CK_INVALID_HANDLE) p.p11->C_CloseSession(p.session);
    p.p11->C_Finalize(nullptr);
  }
  if (p.library != nullptr) dlclose(p.library);
  if (!p.dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(p.dir, ignored);
  }
}

void BM_SoftHsmRewrap(benchmark::State& state) {
  const size_t keys = static_cast<size_t>(state.range(0));
  SoftHsmPeer p;
  Setup(p, keys);
  if (!p.error.empty()) {
    state.SkipWithError(p.error.c_str());
    Teardown(p);
    return;
  }
  std::vector<CK_BYTE> rewrapped;
  size_t done = 0;
  auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    for (const std::vector<CK_BYTE>& wrapped : p.wrapped) {
      CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
      CK_RV rv = Unwrap(p, p.old_kek, wrapped, &key);
      if (rv == CKR_OK) rv = Wrap(p, p.new_kek, key, &rewrapped);
      if (key != CK_INVALID_HANDLE) p.p11->C_DestroyObject(p.session, key);
      if (rv != CKR_OK) {
        state.SkipWithError(Rv("unwrap / wrap", rv).c_str());
        Teardown(p);
        return;
      }
    }
    done += keys;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  state.SetItemsProcessed(static_cast<int64_t>(done));
  state.counters["keys_per_s"] = static_cast<double>(done) / seconds;
  state.SetLabel(StrCat("CKM_AES_KEY_WRAP_PAD; ", p.gcm_wrap));
  Teardown(p);
}

BENCHMARK(BM_SoftHsmRewrap)
    ->Arg(256)
    ->Arg(4096)
    ->ArgName("keys")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace hsmsim::bench

BENCHMARK_MAIN();

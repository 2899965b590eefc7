#include "pkcs11/object_attributes.h"

#include <cstring>
#include <set>
#include <utility>

namespace hsmsim::pkcs11 {
namespace {

enum class Kind { kBool, kUlong, kBytes, kUnknown };

Kind KindOf(CK_ATTRIBUTE_TYPE type) {
  static const std::set<CK_ATTRIBUTE_TYPE> kBools = {CKA_TOKEN,
                                                     CKA_PRIVATE,
                                                     CKA_MODIFIABLE,
                                                     CKA_COPYABLE,
                                                     CKA_DESTROYABLE,
                                                     CKA_SENSITIVE,
                                                     CKA_EXTRACTABLE,
                                                     CKA_ALWAYS_SENSITIVE,
                                                     CKA_NEVER_EXTRACTABLE,
                                                     CKA_LOCAL,
                                                     CKA_ENCRYPT,
                                                     CKA_DECRYPT,
                                                     CKA_WRAP,
                                                     CKA_UNWRAP,
                                                     CKA_SIGN,
                                                     CKA_VERIFY,
                                                     CKA_DERIVE,
                                                     CKA_TRUSTED,
                                                     CKA_WRAP_WITH_TRUSTED,
                                                     CKA_ALWAYS_AUTHENTICATE};
  static const std::set<CK_ATTRIBUTE_TYPE> kUlongs = {CKA_CLASS, CKA_KEY_TYPE, CKA_VALUE_LEN,
                                                      CKA_KEY_GEN_MECHANISM};
  static const std::set<CK_ATTRIBUTE_TYPE> kBytes = {CKA_LABEL, CKA_ID, CKA_START_DATE,
                                                     CKA_END_DATE};
  if (kBools.count(type) != 0) return Kind::kBool;
  if (kUlongs.count(type) != 0) return Kind::kUlong;
  if (kBytes.count(type) != 0) return Kind::kBytes;
  return Kind::kUnknown;
}

std::string BoolValue(bool b) { return std::string(1, static_cast<char>(b ? CK_TRUE : CK_FALSE)); }
std::string UlongValue(CK_ULONG v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

// Attributes an application may not give when it makes a key: the token
// sets them (PKCS#11 2.40 section 4.4, table 25 footnotes).
bool TokenSetOnly(CK_ATTRIBUTE_TYPE type) {
  return type == CKA_ALWAYS_SENSITIVE || type == CKA_NEVER_EXTRACTABLE || type == CKA_LOCAL ||
         type == CKA_KEY_GEN_MECHANISM || type == CKA_TRUSTED;
}

// CheckValue returns CKR_OK when `a` is a well-formed value of its kind.
CK_RV CheckValue(const CK_ATTRIBUTE& a) {
  switch (KindOf(a.type)) {
    case Kind::kBool:
      return a.ulValueLen == sizeof(CK_BBOOL) && a.pValue != nullptr ? CKR_OK
                                                                     : CKR_ATTRIBUTE_VALUE_INVALID;
    case Kind::kUlong:
      return a.ulValueLen == sizeof(CK_ULONG) && a.pValue != nullptr ? CKR_OK
                                                                     : CKR_ATTRIBUTE_VALUE_INVALID;
    case Kind::kBytes:
      return a.ulValueLen <= 4096 && (a.pValue != nullptr || a.ulValueLen == 0)
                 ? CKR_OK
                 : CKR_ATTRIBUTE_VALUE_INVALID;
    case Kind::kUnknown:
      return CKR_ATTRIBUTE_TYPE_INVALID;
  }
  return CKR_ATTRIBUTE_TYPE_INVALID;
}

std::string ValueOf(const CK_ATTRIBUTE& a) {
  if (a.ulValueLen == 0) return std::string();
  return std::string(static_cast<const char*>(a.pValue), a.ulValueLen);
}

}  // namespace

CK_RV ObjectAttributes::ForNewAesKey(CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_ULONG key_bytes,
                                     CK_MECHANISM_TYPE mechanism, ObjectAttributes* out) {
  auto& v = out->values_;
  v.clear();
  v[CKA_CLASS] = UlongValue(CKO_SECRET_KEY);
  v[CKA_KEY_TYPE] = UlongValue(CKK_AES);
  v[CKA_VALUE_LEN] = UlongValue(key_bytes);
  v[CKA_KEY_GEN_MECHANISM] = UlongValue(mechanism);
  for (CK_ATTRIBUTE_TYPE t : {CKA_PRIVATE, CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE,
                              CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT}) {
    v[t] = BoolValue(true);
  }
  for (CK_ATTRIBUTE_TYPE t :
       {CKA_TOKEN, CKA_EXTRACTABLE, CKA_WRAP, CKA_UNWRAP, CKA_SIGN, CKA_VERIFY, CKA_DERIVE,
        CKA_TRUSTED, CKA_WRAP_WITH_TRUSTED, CKA_ALWAYS_AUTHENTICATE}) {
    v[t] = BoolValue(false);
  }
  v[CKA_LABEL] = "";
  v[CKA_ID] = "";
  v[CKA_START_DATE] = "";
  v[CKA_END_DATE] = "";
  for (CK_ULONG i = 0; i < count; ++i) {
    const CK_ATTRIBUTE& a = templ[i];
    if (a.type == CKA_VALUE || a.type == CKA_VALUE_LEN) continue;
    if (TokenSetOnly(a.type)) return CKR_ATTRIBUTE_READ_ONLY;
    if (CK_RV rv = CheckValue(a); rv != CKR_OK) return rv;
    if ((a.type == CKA_CLASS && ValueOf(a) != v[CKA_CLASS]) ||
        (a.type == CKA_KEY_TYPE && ValueOf(a) != v[CKA_KEY_TYPE])) {
      return CKR_TEMPLATE_INCONSISTENT;
    }
    v[a.type] = ValueOf(a);
  }
  const bool generated = mechanism == CKM_AES_KEY_GEN;
  v[CKA_LOCAL] = BoolValue(generated);
  v[CKA_ALWAYS_SENSITIVE] = BoolValue(generated && out->Bool(CKA_SENSITIVE));
  v[CKA_NEVER_EXTRACTABLE] = BoolValue(generated && !out->Bool(CKA_EXTRACTABLE));
  return CKR_OK;
}

bool ObjectAttributes::Bool(CK_ATTRIBUTE_TYPE type) const {
  auto it = values_.find(type);
  return it != values_.end() && it->second.size() == 1 && it->second[0] != 0;
}

CK_ULONG ObjectAttributes::Ulong(CK_ATTRIBUTE_TYPE type) const {
  auto it = values_.find(type);
  CK_ULONG v = 0;
  if (it != values_.end() && it->second.size() == sizeof(v)) {
    std::memcpy(&v, it->second.data(), sizeof(v));
  }
  return v;
}

CK_RV ObjectAttributes::Get(CK_ATTRIBUTE_PTR templ, CK_ULONG count) const {
  CK_RV rv = CKR_OK;
  for (CK_ULONG i = 0; i < count; ++i) {
    CK_ATTRIBUTE& a = templ[i];
    auto it = values_.find(a.type);
    if (a.type == CKA_VALUE) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_SENSITIVE;
    } else if (it == values_.end()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_TYPE_INVALID;
    } else if (a.pValue == nullptr) {
      a.ulValueLen = it->second.size();
    } else if (a.ulValueLen < it->second.size()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_BUFFER_TOO_SMALL;
    } else {
      if (!it->second.empty()) std::memcpy(a.pValue, it->second.data(), it->second.size());
      a.ulValueLen = it->second.size();
    }
  }
  return rv;
}

CK_RV ObjectAttributes::Set(CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  if (!Bool(CKA_MODIFIABLE)) return CKR_ACTION_PROHIBITED;
  ObjectAttributes next = *this;
  for (CK_ULONG i = 0; i < count; ++i) {
    const CK_ATTRIBUTE& a = templ[i];
    if (CK_RV rv = CheckValue(a); rv != CKR_OK) return rv;
    const std::string value = ValueOf(a);
    const bool on = KindOf(a.type) == Kind::kBool && value[0] != 0;
    switch (a.type) {
      case CKA_LABEL:
      case CKA_ID:
      case CKA_START_DATE:
      case CKA_END_DATE:
      case CKA_ENCRYPT:
      case CKA_DECRYPT:
      case CKA_WRAP:
      case CKA_UNWRAP:
      case CKA_SIGN:
      case CKA_VERIFY:
      case CKA_DERIVE:
        break;
      case CKA_SENSITIVE:  // may only become TRUE
        if (!on && Bool(CKA_SENSITIVE)) return CKR_ATTRIBUTE_READ_ONLY;
        break;
      case CKA_EXTRACTABLE:  // may only become FALSE
        if (on && !Bool(CKA_EXTRACTABLE)) return CKR_ATTRIBUTE_READ_ONLY;
        break;
      case CKA_WRAP_WITH_TRUSTED:  // may only become TRUE
        if (!on && Bool(CKA_WRAP_WITH_TRUSTED)) return CKR_ATTRIBUTE_READ_ONLY;
        break;
      default:
        if (auto it = values_.find(a.type); it != values_.end() && it->second == value) {
          continue;  // no change asked
        }
        return CKR_ATTRIBUTE_READ_ONLY;
    }
    next.values_[a.type] = value;
  }
  *this = std::move(next);
  return CKR_OK;
}

bool ObjectAttributes::Matches(CK_ATTRIBUTE_PTR templ, CK_ULONG count) const {
  for (CK_ULONG i = 0; i < count; ++i) {
    auto it = values_.find(templ[i].type);
    if (it == values_.end()) return false;
    if (it->second.size() != templ[i].ulValueLen) return false;
    if (templ[i].ulValueLen > 0 &&
        std::memcmp(it->second.data(), templ[i].pValue, templ[i].ulValueLen) != 0) {
      return false;
    }
  }
  return true;
}

std::string ObjectAttributes::Encode() const {
  std::string out(1, '\x01');  // format version
  for (const auto& [type, value] : values_) {
    const uint64_t t = type;
    const uint32_t n = static_cast<uint32_t>(value.size());
    out.append(reinterpret_cast<const char*>(&t), sizeof(t));
    out.append(reinterpret_cast<const char*>(&n), sizeof(n));
    out.append(value);
  }
  return out;
}

bool ObjectAttributes::Decode(std::string_view bytes, ObjectAttributes* out) {
  if (bytes.empty() || bytes[0] != '\x01') return false;
  out->values_.clear();
  size_t pos = 1;
  while (pos < bytes.size()) {
    uint64_t t = 0;
    uint32_t n = 0;
    if (bytes.size() - pos < sizeof(t) + sizeof(n)) return false;
    std::memcpy(&t, bytes.data() + pos, sizeof(t));
    std::memcpy(&n, bytes.data() + pos + sizeof(t), sizeof(n));
    pos += sizeof(t) + sizeof(n);
    if (bytes.size() - pos < n) return false;
    out->values_[static_cast<CK_ATTRIBUTE_TYPE>(t)] = std::string(bytes.substr(pos, n));
    pos += n;
  }
  return true;
}

}  // namespace hsmsim::pkcs11

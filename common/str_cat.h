// StrCat: concatenates strings and numbers into a std::string.
//
// Debian 12's abseil is built with its own absl::string_view (not an alias of
// std::string_view), so absl::StrCat does not take std::string_view. This is
// the small replacement used across hsmsim; it takes both.
#ifndef HSMSIM_COMMON_STR_CAT_H_
#define HSMSIM_COMMON_STR_CAT_H_

#include <charconv>
#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/string_view.h"

namespace hsmsim {
namespace str_cat_internal {

inline void Append(std::string& out, std::string_view s) { out.append(s); }
inline void Append(std::string& out, const char* s) { out.append(s); }
inline void Append(std::string& out, const std::string& s) { out.append(s); }
inline void Append(std::string& out, absl::string_view s) { out.append(s.data(), s.size()); }
inline void Append(std::string& out, char c) = delete;  // ambiguous: a digit or a character?
inline void Append(std::string& out, bool b) { out.append(b ? "true" : "false"); }

template <typename T>
requires(std::integral<T> && !std::same_as<T, bool> &&
         !std::same_as<T, char>) void Append(std::string& out, T value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, end);
}

template <typename T>
requires std::is_enum_v<T>
void Append(std::string& out, T value) {
  Append(out, static_cast<std::underlying_type_t<T>>(value));
}

inline void Append(std::string& out, double value) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, end);
}

}  // namespace str_cat_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (str_cat_internal::Append(out, args), ...);
  return out;
}

}  // namespace hsmsim

#endif  // HSMSIM_COMMON_STR_CAT_H_

#include "common/reasons.h"

#include <algorithm>
#include <array>

namespace hsmsim::reason {
namespace {

// CamelCaseOf checks at compile time that `constant` is `name` in kCamelCase:
// BAD_PUBLIC_KEY and kBadPublicKey.
constexpr bool CamelCaseOf(std::string_view name, std::string_view constant) {
  if (constant.empty() || constant[0] != 'k') return false;
  size_t c = 1;
  bool word_start = true;
  for (char ch : name) {
    if (ch == '_') {
      word_start = true;
      continue;
    }
    const char want =
        word_start || (ch >= '0' && ch <= '9') ? ch : static_cast<char>(ch - 'A' + 'a');
    if (c >= constant.size() || constant[c] != want) return false;
    ++c;
    word_start = false;
  }
  return c == constant.size();
}

#define HSMSIM_REASON(name, constant, exit_class, side, meaning) \
  static_assert(CamelCaseOf(#name, #constant), #constant " must be " #name " in kCamelCase");
#include "common/reasons.inc"
#undef HSMSIM_REASON

constexpr std::array kReasons = {
#define HSMSIM_REASON(name, constant, exit_class, side, meaning) \
  Info{constant, ExitClass::exit_class, Side::side, meaning},
#include "common/reasons.inc"
#undef HSMSIM_REASON
};

static_assert(std::is_sorted(kReasons.begin(), kReasons.end(),
                             [](const Info& a, const Info& b) { return a.name < b.name; }),
              "common/reasons.inc must be sorted by name");
static_assert(std::adjacent_find(kReasons.begin(), kReasons.end(),
                                 [](const Info& a, const Info& b) { return a.name == b.name; }) ==
                  kReasons.end(),
              "a reason is declared twice in common/reasons.inc");

}  // namespace

std::span<const Info> AllReasons() { return kReasons; }

const Info* Find(std::string_view reason) {
  auto it = std::lower_bound(kReasons.begin(), kReasons.end(), reason,
                             [](const Info& info, std::string_view r) { return info.name < r; });
  return it != kReasons.end() && it->name == reason ? &*it : nullptr;
}

std::optional<ExitClass> ExitClassOf(std::string_view reason) {
  const Info* info = Find(reason);
  if (info == nullptr) return std::nullopt;
  return info->exit_class;
}

}  // namespace hsmsim::reason

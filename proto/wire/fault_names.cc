#include "proto/wire/fault_names.h"

#include <cctype>

#include "common/str_cat.h"

namespace hsmsim::wire {
namespace {

// KebabName turns "FAULT_BEFORE_PERSIST" into "before-persist".
std::string KebabName(std::string_view enum_name) {
  if (enum_name.substr(0, 6) == "FAULT_") enum_name.remove_prefix(6);
  std::string out;
  for (char c : enum_name) {
    out += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::string FaultEnumName(std::string_view text) {
  std::string name;
  for (char c : text) {
    name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  if (name.rfind("FAULT_", 0) != 0) name = "FAULT_" + name;
  return name;
}

std::string FaultSpec(const v1::Fault& fault) {
  std::string spec = StrCat(KebabName(v1::FaultPoint_Name(fault.point())), ":",
                            KebabName(v1::FaultAction_Name(fault.action())));
  if (fault.point() == v1::FAULT_REENCRYPT_AFTER_BLOBS) spec += StrCat(":", fault.after_blobs());
  return spec;
}

}  // namespace hsmsim::wire

#include "proto/wire/enum_names.h"

#include <string>

namespace hsmsim::wire {
namespace {

// WithoutPrefix returns the generated name of a valid enum value without
// `prefix`, or "UNSPECIFIED" for a value the schema does not define (the
// generated _Name() returns "" then) or for the zero value.
std::string_view WithoutPrefix(const std::string& name, std::string_view prefix) {
  std::string_view view(name);
  if (!view.starts_with(prefix) || view.ends_with("UNSPECIFIED")) return "UNSPECIFIED";
  return view.substr(prefix.size());
}

}  // namespace

std::string_view RegisterStateName(v1::RegisterState state) {
  // _Name() returns a reference to a static string that lives for the
  // program's life, so the view stays valid.
  return WithoutPrefix(v1::RegisterState_Name(state), "REGISTER_");
}

std::string_view ModeName(v1::Mode mode) { return WithoutPrefix(v1::Mode_Name(mode), "MODE_"); }

}  // namespace hsmsim::wire

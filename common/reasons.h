// Reasons: the stable UPPER_SNAKE_CASE strings a Status carries (see
// common/status.h), each declared once in common/reasons.inc with the exit
// code class hsmctl gives it and the side that raises it.
//
// Code names a reason by its constant, never by a string literal:
//
//   return Error(absl::StatusCode::kNotFound, reason::kNoSuchKey, "...");
//   if (ReasonOf(status) == reason::kKeyExists) ...
//
// A reason received from a unit may be one this build does not declare (a
// newer unit): ExitClassOf returns nullopt for it, and callers treat it as
// refused. Everything here is constant and thread-safe.
#ifndef HSMSIM_COMMON_REASONS_H_
#define HSMSIM_COMMON_REASONS_H_

#include <optional>
#include <span>
#include <string_view>

namespace hsmsim::reason {

// ExitClass is what the operator must do about a reason, as hsmctl's exit
// code (docs/cli.md, "Exit codes").
enum class ExitClass {
  kRefused = 1,      // refused or failed: fix the situation the message names
  kUnreachable = 3,  // a unit did not answer: make it answer, then try again
  kBadInput = 4,     // a file, password or name the operator gave is wrong
};

// Side says who raises a reason and so which document lists it.
enum class Side {
  kUnit,         // a unit sends it (docs/protocol.md section 17, wire "yes")
  kUnitAndHost,  // a unit sends it and the host raises it too (both documents)
  kInternal,     // unit-side code only, never on the wire (protocol.md, wire "no")
  kHost,         // the host library or hsmctl (docs/cli.md, "Reasons")
};

// Info describes one declared reason.
struct Info {
  std::string_view name;
  ExitClass exit_class;
  Side side;
  std::string_view meaning;
};

#define HSMSIM_REASON(name, constant, exit_class, side, meaning) \
  inline constexpr std::string_view constant = #name;
#include "common/reasons.inc"
#undef HSMSIM_REASON

// AllReasons returns every declared reason, sorted by name.
std::span<const Info> AllReasons();

// Find returns the declaration of `reason`, or nullptr when it is not declared.
const Info* Find(std::string_view reason);

// ExitClassOf returns the exit class of `reason`, or nullopt when it is not
// declared (e.g. a reason from a newer unit; treat it as kRefused).
std::optional<ExitClass> ExitClassOf(std::string_view reason);

// SentByUnit is true when a unit can send `side`'s reasons to a host.
constexpr bool SentByUnit(Side side) { return side == Side::kUnit || side == Side::kUnitAndHost; }

// RaisedByHost is true when the host library or hsmctl raise `side`'s reasons.
constexpr bool RaisedByHost(Side side) { return side == Side::kHost || side == Side::kUnitAndHost; }

}  // namespace hsmsim::reason

#endif  // HSMSIM_COMMON_REASONS_H_

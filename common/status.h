// Error values used everywhere in hsmsim.
//
// An error is an absl::Status whose code is a google.rpc.Code number, whose
// message a person can act on, and which carries a stable machine-readable
// reason (UPPER_SNAKE_CASE) as a payload. The wire carries all three.
// Messages never contain key material.
#ifndef HSMSIM_COMMON_STATUS_H_
#define HSMSIM_COMMON_STATUS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hsmsim {

// Error returns a non-OK status with `code`, `reason` and `message`.
// REQUIRES: code != absl::StatusCode::kOk.
absl::Status Error(absl::StatusCode code, std::string_view reason, std::string_view message);

// ReasonOf returns the reason attached by Error(), "" for OK, and
// "UNSPECIFIED" for a non-OK status that carries none.
std::string ReasonOf(const absl::Status& status);

// WithContext returns `status` with `context + ": "` put before its message,
// keeping its code and reason. OK stays OK.
absl::Status WithContext(const absl::Status& status, std::string_view context);

}  // namespace hsmsim

// HSMSIM_RETURN_IF_ERROR(expr) returns the status of `expr` when it is not OK.
#define HSMSIM_RETURN_IF_ERROR(expr)                                  \
  do {                                                                \
    if (absl::Status hsmsim_status_ = (expr); !hsmsim_status_.ok()) { \
      return hsmsim_status_;                                          \
    }                                                                 \
  } while (0)

#define HSMSIM_CONCAT_INNER_(a, b) a##b
#define HSMSIM_CONCAT_(a, b) HSMSIM_CONCAT_INNER_(a, b)

// HSMSIM_ASSIGN_OR_RETURN(lhs, expr) evaluates the StatusOr `expr`, returns
// its status when not OK, else moves its value into `lhs`.
#define HSMSIM_ASSIGN_OR_RETURN(lhs, expr) \
  HSMSIM_ASSIGN_OR_RETURN_IMPL_(HSMSIM_CONCAT_(hsmsim_statusor_, __LINE__), lhs, expr)
#define HSMSIM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

#endif  // HSMSIM_COMMON_STATUS_H_

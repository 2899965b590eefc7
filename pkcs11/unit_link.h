// UnitLink: a blocking connection from the PKCS#11 module to one crypto unit.
// The module may not start threads in the application's process, so it does
// not use host::UnitClient (which runs its socket on a thread of its own):
// a UnitLink writes one request frame and reads frames until the response
// with the same id arrives, on the caller's thread, with a timeout on every
// read and write. The connection opens lazily and is dropped after any error
// (the next call reconnects), and by Forget() after fork (the child must not
// share the parent's socket).
//
// Thread-safety: not thread-safe; the module calls it under its lock.
#ifndef HSMSIM_PKCS11_UNIT_LINK_H_
#define HSMSIM_PKCS11_UNIT_LINK_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "hsmsim/v1/unit.pb.h"

namespace hsmsim::pkcs11 {

class UnitLink {
 public:
  // `endpoint` is HOST:PORT as in fleet.json; `name` names the unit in errors.
  UnitLink(std::string name, std::string endpoint, int timeout_ms = 10'000)
      : name_(std::move(name)), endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms) {}
  ~UnitLink();
  UnitLink(const UnitLink&) = delete;
  UnitLink& operator=(const UnitLink&) = delete;

  // Call sends `request` (its id is set here) and returns the unit's
  // response, whatever its status. Returns UNAVAILABLE (UNIT_UNREACHABLE)
  // when the unit cannot be reached or the connection breaks,
  // DEADLINE_EXCEEDED (UNIT_TIMEOUT) after the timeout, both naming the unit
  // and endpoint; INVALID_ARGUMENT (MALFORMED_FRAME) for a response that does
  // not parse. The clear key of an ImportKey request is wiped (in the
  // request and its encoded frame) before they are freed.
  absl::StatusOr<v1::Response> Call(v1::Request request);

  // Forget drops the connection without closing the socket's peer state
  // shared with a parent process: the child of a fork calls it (closing our
  // copy of the descriptor does not disturb the parent's).
  void Forget();

  const std::string& name() const { return name_; }

 private:
  absl::Status Connect();
  absl::Status WriteAll(const std::string& bytes);
  absl::Status ReadExact(uint8_t* out, size_t size);
  absl::Status Fail(absl::Status status);

  std::string name_;
  std::string endpoint_;
  int timeout_ms_;
  int fd_ = -1;
  uint64_t next_id_ = 1;
};

}  // namespace hsmsim::pkcs11

#endif  // HSMSIM_PKCS11_UNIT_LINK_H_

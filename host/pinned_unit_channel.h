// PinnedUnitChannel: a UnitChannel that talks only to the unit whose id the
// fleet pinned for its name (fleet.json's "unit_id", learned at fleet up).
//
// A unit is known by its unit id, not by its address: a unit that started
// blank where another's state was, or another unit listening on the same
// port, answers with another id and must never be treated as the one the
// fleet knows. Before the first request that is not a GetInfo, and again
// after every transport error (the connection may come back to another
// process), the channel reads GetInfo and compares the id; every GetInfo
// answer that passes through is compared too. A unit that answers with
// another id gets nothing else: the caller's request fails with
// FAILED_PRECONDITION (UNIT_ID_MISMATCH) naming both ids and the way out.
//
// Ownership: owns the wrapped channel. Thread-safety: thread-safe, as the
// wrapped channel is.
#ifndef HSMSIM_HOST_PINNED_UNIT_CHANNEL_H_
#define HSMSIM_HOST_PINNED_UNIT_CHANNEL_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "host/unit_channel.h"

namespace hsmsim::host {

class PinnedUnitChannel final : public UnitChannel {
 public:
  // `expected_unit_id` holds the unit id's bytes; empty means not pinned
  // (a manifest written before ids were pinned): every call is forwarded
  // unchecked.
  PinnedUnitChannel(std::unique_ptr<UnitChannel> inner, std::string expected_unit_id);

  const std::string& name() const override { return inner_->name(); }

  // CallAsync forwards `request` once the unit's id is known to be the
  // pinned one; otherwise calls `done` with UNIT_ID_MISMATCH, or with the
  // transport error of the GetInfo that checks the id.
  void CallAsync(v1::Request request, Callback done) override;

 private:
  // Checked wraps `done`: a GetInfo answer with another unit id becomes
  // UNIT_ID_MISMATCH, a transport error makes the next call check again.
  Callback Checked(Callback done);

  const std::string expected_;
  std::atomic<bool> verified_{false};
  // Last, so it is destroyed first: its last callbacks (a closing client
  // fails what is still in flight) may still read the members above.
  std::unique_ptr<UnitChannel> inner_;
};

// UnitIdMismatch returns the FAILED_PRECONDITION (UNIT_ID_MISMATCH) status
// for unit `name` pinned to `expected` (bytes) that answered with `actual`:
// both ids in hex, and what the operator can do.
absl::Status UnitIdMismatch(std::string_view name, std::string_view expected,
                            std::string_view actual);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_PINNED_UNIT_CHANNEL_H_

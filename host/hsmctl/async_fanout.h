// AsyncFanout: requests spread over several unit clients with a bounded
// number in flight per unit, completions handed to the caller's thread. Used
// by `hsmctl keys create`, `keys verify` and `bench rotate`.
//
// Not thread-safe: one caller thread sends and takes completions; the
// clients' threads only queue completions (under the mutex).
#ifndef HSMSIM_HOST_HSMCTL_ASYNC_FANOUT_H_
#define HSMSIM_HOST_HSMCTL_ASYNC_FANOUT_H_

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/hsmctl/context.h"
#include "host/keystore.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::hsmctl {

// AsyncFanout runs requests over several unit clients with a bounded number
// in flight per unit and hands each completion to the caller's thread.
class AsyncFanout {
 public:
  struct Done {
    size_t unit;
    uint64_t tag;
    absl::StatusOr<v1::Response> result;
  };
  explicit AsyncFanout(std::vector<UnitConnection>& conns) : conns_(conns) {
    in_flight_.assign(conns.size(), 0);
  }
  ~AsyncFanout() { Drain(); }

  // FreeUnit returns a unit with fewer than `limit` requests in flight, or -1.
  int FreeUnit(int limit) const {
    int best = -1;
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (in_flight_[i] >= limit) continue;
      if (best < 0 || in_flight_[i] < in_flight_[static_cast<size_t>(best)]) {
        best = static_cast<int>(i);
      }
    }
    return best;
  }
  void Send(size_t unit, uint64_t tag, v1::Request request) {
    ++in_flight_[unit];
    ++total_;
    conns_[unit].client->CallAsync(std::move(request),
                                   [this, unit, tag](absl::StatusOr<v1::Response> r) {
                                     std::lock_guard<std::mutex> lock(mu_);
                                     done_.push_back(Done{unit, tag, std::move(r)});
                                     cv_.notify_one();
                                   });
  }
  int in_flight() const { return total_; }
  // Next waits for one completion. REQUIRES: in_flight() > 0.
  Done Next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !done_.empty(); });
    Done d = std::move(done_.front());
    done_.pop_front();
    --in_flight_[d.unit];
    --total_;
    return d;
  }
  void Drain() {
    while (total_ > 0) Next();
  }

 private:
  std::vector<UnitConnection>& conns_;
  std::vector<int> in_flight_;
  int total_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Done> done_;  // guarded by mu_
};

inline absl::Status ResponseStatus(const absl::StatusOr<v1::Response>& r, const std::string& unit) {
  if (!r.ok()) return r.status();
  absl::Status s = wire::FromWireStatus(r->status());
  return s.ok() ? s : WithContext(s, StrCat("unit ", unit));
}

// NewKeyFromBlob returns the keystore row for a blob a unit generated: its
// key id and WKID read from the blob header. Returns the header's error
// (MALFORMED_BLOB, UNSUPPORTED_BLOB_VERSION) for a blob that does not parse.
inline absl::StatusOr<host::NewKey> NewKeyFromBlob(const std::string& blob) {
  HSMSIM_ASSIGN_OR_RETURN(wire::ParsedBlob parsed, wire::ParseBlob(AsBytes(blob)));
  return host::NewKey{std::string(parsed.key_id), blob, crypto::AsString(parsed.wkid)};
}

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_ASYNC_FANOUT_H_

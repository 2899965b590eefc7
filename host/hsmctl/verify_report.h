// The report of hsmctl keys verify, and the one place that renders it as
// text or as JSON (docs/cli.md; the JSON fields do not change).
#ifndef HSMSIM_HOST_HSMCTL_VERIFY_REPORT_H_
#define HSMSIM_HOST_HSMCTL_VERIFY_REPORT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "host/hsmctl/context.h"

namespace hsmsim::hsmctl {

// What keys verify found, page after page.
struct VerifyReport {
  struct PerWkid {
    int64_t keys = 0;
    int64_t usable_everywhere = 0;
    int64_t under_old_somewhere = 0;
  };
  std::map<std::string, PerWkid> per_wkid;  // by WKID, full hex
  std::vector<std::string> failures;        // the first kMaxListedFailures
  int64_t failed_keys = 0;
  // Quarantined keys (hsmctl keys quarantine): not checked as failures, and
  // not counted per WKID; the first kMaxListedFailures named.
  int64_t quarantined = 0;
  std::vector<std::string> quarantined_keys;
  int64_t checked = 0;
  absl::Status unit_error = absl::OkStatus();  // the first unit error
  size_t units = 0;
  double seconds = 0;

  static constexpr size_t kMaxListedFailures = 20;
};

// RenderVerify prints the report and returns the exit code: 0 when every
// key that is not quarantined is usable on every unit, 3 when a unit was
// unreachable, else 1.
int RenderVerify(const Invocation& inv, const VerifyReport& report);

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_VERIFY_REPORT_H_

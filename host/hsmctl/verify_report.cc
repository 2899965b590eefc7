#include "host/hsmctl/verify_report.h"

#include <iostream>

#include "common/status.h"
#include "common/str_cat.h"
#include "host/unit_channel.h"

namespace hsmsim::hsmctl {

int RenderVerify(const Invocation& inv, const VerifyReport& t) {
  const bool ok = t.failed_keys == 0 && t.unit_error.ok();
  if (inv.json) {
    json w = json::array();
    for (const auto& [wkid, p] : t.per_wkid) {
      w.push_back({{"wkid", wkid},
                   {"keys", p.keys},
                   {"usable_on_every_unit", p.usable_everywhere},
                   {"under_old", p.under_old_somewhere}});
    }
    json doc{{"command", "keys verify"},
             {"ok", ok},
             {"keys", t.checked},
             {"failed", t.failed_keys},
             {"per_wkid", w},
             {"failures", t.failures},
             {"quarantined", t.quarantined},
             {"quarantined_keys", t.quarantined_keys},
             {"units", t.units},
             {"seconds", t.seconds}};
    if (!t.unit_error.ok()) doc["unit_error"] = StatusJson(t.unit_error);
    std::cout << doc.dump(2) << "\n";
  } else {
    std::cout << "keys verify: " << t.checked << " key(s) on " << t.units << " unit(s) in "
              << t.seconds << " s\n";
    for (const auto& [wkid, p] : t.per_wkid) {
      std::cout << "  WKID " << wkid << ": " << p.keys << " key(s), " << p.usable_everywhere
                << " usable on every unit"
                << (p.under_old_somewhere > 0 ? StrCat(", ", p.under_old_somewhere, " under OLD")
                                              : std::string())
                << "\n";
    }
    for (const auto& f : t.failures) std::cout << "  FAILED: " << f << "\n";
    if (t.quarantined > 0) {
      std::cout << "  " << t.quarantined
                << " quarantined key(s), set aside and not checked as failures:\n";
      for (const auto& q : t.quarantined_keys) std::cout << "  QUARANTINED: " << q << "\n";
    }
    if (!t.unit_error.ok()) {
      std::cout << "  UNIT ERROR: " << ReasonOf(t.unit_error) << ": " << t.unit_error.message()
                << "\n";
    }
    std::cout << (ok ? (t.quarantined > 0
                            ? "OK: every key not quarantined is usable on every unit\n"
                            : "OK: every key is usable on every unit\n")
                     : StrCat("FAILED: ", t.failed_keys, " key(s) not usable on every unit\n"));
  }
  if (!t.unit_error.ok() && host::IsUnreachable(t.unit_error)) return kExitUnreachable;
  return ok ? kExitOk : kExitRefused;
}

}  // namespace hsmsim::hsmctl

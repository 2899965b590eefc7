// The ceremony audit log: one JSON line per administrative command hsmctl
// sends and the unit's answer, appended to FLEET/audit.jsonl and chained by
// SHA-256 so that `hsmctl audit verify` finds a removed, reordered or edited
// line. FLEET/audit.head holds the count and hash of the last line, so a
// removed last line is found too.
//
// A line: {"seq":N,"prev":HEX,"time":ISO-8601 UTC,"unit":NAME,"unit_id":HEX,
//          "command":OP,"signers":[{"name","key_id"}],"before":{REGISTERS},
//          "after":{REGISTERS},"ok":BOOL,"reason":R,"message":M,"hash":HEX}
// where REGISTERS is {"new","current","old"} of {state, vp}, prev is the
// previous line's hash (64 zeros for the first) and hash is SHA-256 of the
// line without its "hash" member (nlohmann::json dump, keys sorted). The log
// holds no key material, PIN or password: only names, key ids, VPs, states
// and the unit's reason and message.
//
// Without a key, the chain finds edits by tools and mistakes; someone who
// can rewrite the files can rewrite the chain from the edit on. Keep a copy
// of the head elsewhere (docs/smart-cards.md).
#ifndef HSMSIM_HOST_AUDIT_LOG_H_
#define HSMSIM_HOST_AUDIT_LOG_H_

#include <deque>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "host/signed_command.h"

namespace hsmsim::host {

inline constexpr char kAuditLogFile[] = "audit.jsonl";
inline constexpr char kAuditHeadFile[] = "audit.head";

// AuditLog appends command events to a fleet directory's log. Thread-safe.
class AuditLog : public CommandObserver {
 public:
  explicit AuditLog(std::string fleet_dir) : fleet_dir_(std::move(fleet_dir)) {}

  // OnCommand appends one line; a failure to write is reported on stderr
  // (AUDIT_LOG_FAILED naming the file) and does not undo the command.
  void OnCommand(const std::string& unit, const v1::GetInfoResponse& before,
                 const v1::Command& command, const std::vector<const AdminKey*>& signers,
                 const absl::StatusOr<v1::CommandResponse>& result) override;

 private:
  std::string fleet_dir_;
  std::mutex mu_;
};

// AuditSummary is what VerifyAuditLog found.
struct AuditSummary {
  int64_t events = 0;
  std::string head_hash;  // hex of the last line's hash
  // The last events (at most the `keep_last` asked for), oldest first, each
  // the line's JSON text as stored (the fields listed at the top of this
  // file: no key material, PIN or password).
  std::deque<std::string> last_lines;
};

// VerifyAuditLog checks FLEET/audit.jsonl against its chain and head, and
// keeps the text of its last `keep_last` lines (0: none) in `last_lines`.
// Returns DATA_LOSS (AUDIT_LOG_TAMPERED) naming the first bad line and why
// (not JSON, sequence gap or reorder, prev not the previous hash, hash not
// the content's, head not the last line), NOT_FOUND (NO_AUDIT_LOG) when there
// is none.
absl::StatusOr<AuditSummary> VerifyAuditLog(const std::string& fleet_dir, size_t keep_last = 0);

}  // namespace hsmsim::host

#endif  // HSMSIM_HOST_AUDIT_LOG_H_

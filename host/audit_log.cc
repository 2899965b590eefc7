#include "host/audit_log.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/verification_pattern.h"
#include "host/admin_key_file.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::host {
namespace {

using json = nlohmann::json;

const std::string kZeroHash(64, '0');

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return ToHex(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string NowUtc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

json Registers(const v1::GetInfoResponse& info) {
  auto reg = [](const v1::MasterKeyRegisterInfo& r) {
    return json{{"state", std::string(wire::RegisterStateName(r.state()))},
                {"vp", ToHex(r.verification_pattern())}};
  };
  return {{"new", reg(info.new_register())},
          {"current", reg(info.current_register())},
          {"old", reg(info.old_register())}};
}

std::string CommandName(const v1::Command& command) {
  const auto* field = command.GetDescriptor()->FindFieldByNumber(command.op_case());
  return field != nullptr ? field->name() : "none";
}

// LineHash is SHA-256 of the line's JSON without "hash" (keys sorted: the
// nlohmann default).
std::string LineHash(json line) {
  line.erase("hash");
  return Sha256Hex(line.dump());
}

absl::Status Tampered(int64_t line, std::string_view why) {
  return Error(absl::StatusCode::kDataLoss, reason::kAuditLogTampered,
               StrCat("audit log line ", line, ": ", why));
}

// LastLine returns the last non-empty line of `text`.
std::string_view LastLine(std::string_view text) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  const size_t start = text.rfind('\n');
  return start == std::string_view::npos ? text : text.substr(start + 1);
}

}  // namespace

void AuditLog::OnCommand(const std::string& unit, const v1::GetInfoResponse& before,
                         const v1::Command& command, const std::vector<const AdminKey*>& signers,
                         const absl::StatusOr<v1::CommandResponse>& result) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string path = StrCat(fleet_dir_, "/", kAuditLogFile);
  auto fail = [&](std::string_view what) {
    std::cerr << "hsmctl: AUDIT_LOG_FAILED: " << what << " (" << path
              << "); the command was sent\n";
  };
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot open the audit log");
  ::flock(fd, LOCK_EX);  // one writer at a time across hsmctl processes
  std::string existing;
  char buf[65536];
  ssize_t n;
  ::lseek(fd, 0, SEEK_SET);
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) existing.append(buf, n);
  int64_t seq = 1;
  std::string prev = kZeroHash;
  if (std::string_view last = LastLine(existing); !last.empty()) {
    json parsed = json::parse(last, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.contains("seq") && parsed.contains("hash")) {
      seq = parsed["seq"].get<int64_t>() + 1;
      prev = parsed["hash"].get<std::string>();
    }
  }
  json line = {{"seq", seq},
               {"prev", prev},
               {"time", NowUtc()},
               {"unit", unit},
               {"unit_id", ToHex(before.unit_id())},
               {"transaction_counter", before.transaction_counter()},
               {"command", CommandName(command)},
               {"before", Registers(before)},
               {"ok", result.ok()}};
  json signer_list = json::array();
  for (const AdminKey* s : signers) {
    signer_list.push_back({{"name", s->name}, {"key_id", ToHex(crypto::AsString(s->key_id))}});
  }
  line["signers"] = std::move(signer_list);
  if (result.ok()) {
    line["after"] = Registers(result->info());
  } else {
    line["reason"] = ReasonOf(result.status());
    line["message"] = std::string(result.status().message());
  }
  line["hash"] = LineHash(line);
  const std::string text = line.dump() + "\n";
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd) != 0) {
    ::close(fd);
    return fail("cannot append to the audit log");
  }
  const std::string head = StrCat(seq, " ", line["hash"].get<std::string>(), "\n");
  const std::string head_path = StrCat(fleet_dir_, "/", kAuditHeadFile);
  const std::string tmp = head_path + ".tmp";
  const int hfd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool head_ok = hfd >= 0 &&
                 ::write(hfd, head.data(), head.size()) == static_cast<ssize_t>(head.size()) &&
                 ::fsync(hfd) == 0;
  if (hfd >= 0) ::close(hfd);
  head_ok = head_ok && ::rename(tmp.c_str(), head_path.c_str()) == 0;
  ::close(fd);
  if (!head_ok) fail("cannot write the audit head");
}

absl::StatusOr<AuditSummary> VerifyAuditLog(const std::string& fleet_dir, size_t keep_last) {
  const std::string path = StrCat(fleet_dir, "/", kAuditLogFile);
  auto text = ReadFileBytes(path);
  if (!text.ok()) {
    return Error(absl::StatusCode::kNotFound, reason::kNoAuditLog,
                 StrCat("no audit log at ", path, " (no command was sent to this fleet yet)"));
  }
  AuditSummary summary;
  std::string prev = kZeroHash;
  int64_t line_number = 0;
  size_t start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    const std::string_view raw = std::string_view(*text).substr(start, end - start);
    start = end + 1;
    ++line_number;
    json line = json::parse(raw, nullptr, /*allow_exceptions=*/false);
    if (!line.is_object() || !line.contains("seq") || !line["seq"].is_number_integer() ||
        !line.contains("prev") || !line["prev"].is_string() || !line.contains("hash") ||
        !line["hash"].is_string()) {
      return Tampered(line_number, "not an audit event (edited or damaged)");
    }
    if (line["seq"].get<int64_t>() != line_number) {
      return Tampered(line_number,
                      StrCat("sequence number ", line["seq"].get<int64_t>(), " where ", line_number,
                             " belongs (a line was removed, added or moved)"));
    }
    if (line["prev"].get<std::string>() != prev) {
      return Tampered(line_number,
                      "does not chain to the line before it (a line was removed or moved)");
    }
    if (LineHash(line) != line["hash"].get<std::string>()) {
      return Tampered(line_number, "its content does not match its hash (the line was edited)");
    }
    prev = line["hash"].get<std::string>();
    if (keep_last > 0) {
      if (summary.last_lines.size() == keep_last) summary.last_lines.pop_front();
      summary.last_lines.emplace_back(raw);
    }
  }
  summary.events = line_number;
  summary.head_hash = prev;
  auto head = ReadFileBytes(StrCat(fleet_dir, "/", kAuditHeadFile));
  const std::string expected_head = StrCat(line_number, " ", prev, "\n");
  if (!head.ok() || *head != expected_head) {
    return Tampered(line_number, StrCat("the log ends at event ", line_number,
                                        " but audit.head names another last event (lines were "
                                        "removed from the end, or the head was changed)"));
  }
  return summary;
}

}  // namespace hsmsim::host

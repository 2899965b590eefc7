// hsmctl mk load | commit | setimm | clrnew | clrcur | clrold.
#include <unistd.h>

#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "host/admin_key_file.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/key_sources.h"
#include "host/hsmctl/keystore_support.h"
#include "host/hsmctl/register_change_support.h"
#include "host/interlock.h"
#include "host/key_part_loading.h"
#include "host/master_key_id.h"
#include "host/signed_command.h"
#include "proto/wire/enum_names.h"

namespace hsmsim::hsmctl {
namespace {

// What mk load is told: the parts this invocation brings (all of a key, or
// one custodian's share), and --total, the number of parts of the whole
// load (0: as many as --parts gives, or the load in progress on the unit).
struct LoadOptions {
  std::vector<std::string> parts;
  int total = 0;
};

// TotalParts is the number of parts of the whole load on a unit whose NEW
// is `reg`: --total, else the load in progress, else the parts given.
uint32_t TotalParts(const LoadOptions& o, const v1::MasterKeyRegisterInfo& reg) {
  if (o.total > 0) return static_cast<uint32_t>(o.total);
  if (reg.state() == v1::REGISTER_PARTIALLY_LOADED) return reg.parts_total();
  return static_cast<uint32_t>(o.parts.size());
}

// CheckTotal refuses (BAD_PART_COUNT), before any unit is changed, a load
// of fewer parts than a key has: one part without --total, where no unit has
// a load in progress. (More parts than --total are refused before the parts
// are opened.)
absl::Status CheckTotal(const LoadOptions& o, const std::vector<host::UnitObservation>& observed) {
  for (const host::UnitObservation& u : observed) {
    if (!u.info.ok()) continue;
    if (TotalParts(o, u.info->new_register()) < 2) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                   StrCat("one key part and no load in progress on unit ", u.unit.name,
                          ": a master key has 2 to ", kMaxKeyParts,
                          " parts; give --total N (the parts of the whole load) so that each "
                          "custodian loads their own part. Nothing was loaded"));
    }
  }
  return absl::OkStatus();
}

// LoadOnUnit loads `parts` into the unit's NEW register as part of a load of
// `total` parts. When that completes the load, NEW must then hold
// `expected_vp`; an empty `expected_vp` (a part on a card, or a load in
// parts: the host never sees the whole key) becomes this unit's VP, the
// reference every later unit must match. A load still partial reports the
// parts loaded of the total.
absl::Status LoadOnUnit(SignedUnit& u, const KeyParts& parts, uint32_t total,
                        std::string& expected_vp) {
  // A VP known before any unit computed it is the parts' own.
  const bool vp_from_parts = !expected_vp.empty() && parts.expected_vp.has_value() &&
                             host::SameId(expected_vp, *parts.expected_vp);
  if (u.info.importer_public_key().empty()) u.outcome.details["generated_importer"] = true;
  HSMSIM_ASSIGN_OR_RETURN(u.info, host::LoadEncryptedKeyPartsOnUnit(
                                      *u.conn.client, u.info, parts.encryptors, u.signers, total));
  const v1::MasterKeyRegisterInfo& reg = u.info.new_register();
  u.outcome.details["new_state"] = std::string(wire::RegisterStateName(reg.state()));
  if (reg.state() == v1::REGISTER_PARTIALLY_LOADED) {
    u.outcome.details["parts_loaded"] = reg.parts_loaded();
    u.outcome.details["parts_total"] = reg.parts_total();
    u.outcome.text = StrCat("NEW PARTIALLY_LOADED, ", reg.parts_loaded(), " of ", reg.parts_total(),
                            " parts loaded");
    return absl::OkStatus();
  }
  u.outcome.details["parts_loaded"] = total;
  u.outcome.details["parts_total"] = total;
  if (expected_vp.empty()) expected_vp = reg.verification_pattern();
  const bool matches = host::SameId(reg.verification_pattern(), expected_vp);
  u.outcome.details["new_verification_pattern"] = ToHex(reg.verification_pattern());
  u.outcome.details["matches_parts"] = matches;
  u.outcome.text = StrCat(
      "NEW ", wire::RegisterStateName(reg.state()), " VP ", ToHex(reg.verification_pattern()),
      matches ? (vp_from_parts ? " (matches the parts)" : " (same on every unit so far)")
              : (vp_from_parts ? " (DIFFERS from the parts)" : " (DIFFERS from the first unit)"));
  if (!matches) {
    return Error(absl::StatusCode::kDataLoss, reason::kVpMismatch,
                 StrCat("unit ", u.conn.unit.name, " NEW VP ", ToHex(reg.verification_pattern()),
                        " differs from the ", vp_from_parts ? "parts'" : "first unit's", " VP ",
                        ToHex(expected_vp)));
  }
  return absl::OkStatus();
}

// LoadHeader fills mk load's report header: the expected VP (known from the
// parts when this invocation brings every part of the key as files, else
// from the first unit that completed the load) and each part's VP.
void LoadHeader(const KeyParts& parts, const LoadOptions& o, bool whole_key,
                const std::string& expected_vp, ReportHeader& header) {
  const bool vp_from_parts = whole_key && parts.expected_vp.has_value();
  json part_vps = json::array();
  for (size_t i = 0; i < parts.sources.size(); ++i) {
    part_vps.push_back(
        {{"source", parts.sources[i]}, {"verification_pattern", ToHex(parts.part_vps[i])}});
  }
  header.fields = json{{"expected_verification_pattern", ToHex(expected_vp)},
                       {"verification_pattern_from", vp_from_parts ? "parts" : "first unit"},
                       {"parts", std::move(part_vps)},
                       {"parts_given", o.parts.size()},
                       {"whole_key", whole_key}};
  if (o.total > 0) header.fields["total_parts"] = o.total;
  if (vp_from_parts) {
    header.text = StrCat("expected VP (XOR of the parts): ", ToHex(expected_vp));
  } else if (whole_key) {
    header.text = StrCat("VP of the parts (computed by the first unit; a part is on a card): ",
                         ToHex(expected_vp));
  } else {
    header.text = StrCat("loading ", o.parts.size(), " part(s) of a load in parts",
                         expected_vp.empty()
                             ? std::string(" (the VP is known once the last part is in)")
                             : StrCat("; VP of the completed key (computed by the first unit): ",
                                      ToHex(expected_vp)));
  }
}

int RunLoad(Invocation& inv, const LoadOptions& o) {
  KeyParts parts;
  std::string expected_vp;
  // Whether this invocation brings every part of the key (so that, from
  // files, their XOR is the key and its VP the one to expect): not when
  // --total says there are more, nor when a unit has a load in progress.
  bool whole_key = o.total == 0 || static_cast<size_t>(o.total) == o.parts.size();
  SignedHooks hooks;
  hooks.prepare = [&](const std::vector<host::AdminKey>&, ReportHeader&) -> absl::Status {
    if (o.total > 0 && o.parts.size() > static_cast<size_t>(o.total)) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
                   StrCat("--parts gives ", o.parts.size(),
                          " key parts but --total says the key has ", o.total));
    }
    HSMSIM_ASSIGN_OR_RETURN(parts, OpenKeyParts(inv, o.parts));
    return absl::OkStatus();
  };
  hooks.finish = [&](ReportHeader& header) {
    LoadHeader(parts, o, whole_key, expected_vp, header);
  };
  hooks.precheck = [&](std::vector<UnitConnection>& conns,
                       const host::FleetManifest& manifest) -> absl::Status {
    std::vector<host::UnitObservation> observed = ObserveAll(conns);
    HSMSIM_RETURN_IF_ERROR(CheckTotal(o, observed));
    for (const host::UnitObservation& u : observed) {
      if (o.total == 0 && u.info.ok() &&
          u.info->new_register().state() == v1::REGISTER_PARTIALLY_LOADED) {
        whole_key = false;
      }
    }
    if (whole_key) expected_vp = parts.expected_vp.value_or("");
    return GuardRegisterChange(
        inv, manifest, observed,
        host::RequestedChange::Of(host::OperatorCommand::kLoadNew).WithNewVp(expected_vp));
  };
  return RunSignedPerUnit(
      inv, "mk load",
      [&](SignedUnit& u) -> absl::Status {
        const v1::MasterKeyRegisterInfo& reg = u.info.new_register();
        if ((reg.state() == v1::REGISTER_FULL_UNCOMMITTED ||
             reg.state() == v1::REGISTER_FULL_COMMITTED) &&
            !expected_vp.empty() && host::SameId(reg.verification_pattern(), expected_vp)) {
          u.outcome.details["new_state"] = std::string(wire::RegisterStateName(reg.state()));
          u.outcome.details["new_verification_pattern"] = ToHex(reg.verification_pattern());
          u.outcome.details["matches_parts"] = true;
          return ReportAlready(u.outcome,
                               StrCat("loaded: NEW ", wire::RegisterStateName(reg.state()), " VP ",
                                      ToHex(reg.verification_pattern())));
        }
        return LoadOnUnit(u, parts, TotalParts(o, reg), expected_vp);
      },
      hooks);
}

// What mk commit is told: the VP the custodians' parts give (--vp, or the
// part files themselves), or --yes to commit what the units hold.
struct CommitOptions {
  std::string vp_hex;
  std::vector<std::string> parts;
  bool yes = false;
};

// QuotedVp sets `quoted` to the VP mk commit quotes: the XOR of --parts,
// else --vp; leaves it empty when neither is given.
absl::Status QuotedVp(Invocation& inv, const CommitOptions& o, std::string& quoted,
                      ReportHeader& header) {
  if (!o.parts.empty()) {
    if (o.parts.size() < 2) {
      return Error(
          absl::StatusCode::kInvalidArgument, reason::kBadPartCount,
          StrCat("mk commit --parts takes every part of the key (2 to ", kMaxKeyParts,
                 ") to check their VP, got ", o.parts.size(), "; or quote the VP with --vp HEX"));
    }
    HSMSIM_ASSIGN_OR_RETURN(KeyParts parts, OpenKeyParts(inv, o.parts));
    if (!parts.expected_vp.has_value()) {
      // A part on a card never shows its value to the host: the VP of the
      // parts is what the units computed, so it is confirmed like an
      // unquoted commit (--yes or the terminal).
      header.text = "a part is on a card: the VP of NEW needs confirmation";
      return absl::OkStatus();
    }
    quoted = *parts.expected_vp;
    header.text = StrCat("expected VP (XOR of the parts): ", ToHex(quoted));
  } else if (!o.vp_hex.empty()) {
    auto vp = host::VerificationPattern::FromHex(o.vp_hex);
    if (!vp.ok()) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kBadVp,
                   StrCat("--vp must be ", 2 * crypto::kVerificationPatternSize, " hex digits"));
    }
    quoted = vp->bytes();
    header.text = StrCat("expected VP (--vp): ", ToHex(quoted));
  }
  if (!quoted.empty()) header.fields = json{{"expected_verification_pattern", ToHex(quoted)}};
  return absl::OkStatus();
}

// ConfirmUnitsNew shows the VP of NEW on the units (which the guard found
// to agree), sets `agreed` to it, and asks the operator to confirm it: on
// the terminal, or --yes. Returns FAILED_PRECONDITION
// (CONFIRMATION_REQUIRED) when not confirmed; OK, leaving `agreed` empty,
// when no unit holds a whole key in NEW (each unit then says why).
absl::Status ConfirmUnitsNew(const CommitOptions& o,
                             const std::vector<host::UnitObservation>& observed,
                             std::string& agreed) {
  std::string units;
  for (const host::UnitObservation& u : observed) {
    if (!u.info.ok()) continue;
    const auto& nw = u.info->new_register();
    if (nw.state() != v1::REGISTER_FULL_UNCOMMITTED && nw.state() != v1::REGISTER_FULL_COMMITTED) {
      continue;
    }
    agreed = nw.verification_pattern();
    units += StrCat(units.empty() ? "" : ", ", u.unit.name);
  }
  if (agreed.empty() || o.yes) return absl::OkStatus();
  std::cerr << "NEW on " << units << " holds the key with VP\n  " << ToHex(agreed)
            << "\nCompare it with the VP of the custodians' key parts (printed by hsmctl mk "
               "load; hsmctl keypart show gives each part's).\n";
  if (isatty(STDIN_FILENO) == 1) {
    std::cerr << "Commit this key on every selected unit? Type yes to commit: " << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    if (answer == "yes") return absl::OkStatus();
    return Error(absl::StatusCode::kFailedPrecondition, reason::kConfirmationRequired,
                 "not confirmed; nothing was committed");
  }
  return Error(absl::StatusCode::kFailedPrecondition, reason::kConfirmationRequired,
               StrCat("mk commit would commit NEW VP ", ToHex(agreed), " on ", units,
                      " without a VP from the custodians' parts and with no terminal to confirm "
                      "on. Quote it: --vp HEX or --parts F1,F2[,F3], or pass --yes. Nothing was "
                      "committed"));
}

int RunCommit(Invocation& inv, const CommitOptions& o) {
  std::string quoted;  // from the parts or --vp
  std::string agreed;  // the VP each unit's commit quotes
  SignedHooks hooks;
  hooks.prepare = [&](const std::vector<host::AdminKey>&, ReportHeader& header) {
    return QuotedVp(inv, o, quoted, header);
  };
  hooks.precheck = [&](std::vector<UnitConnection>& conns,
                       const host::FleetManifest& manifest) -> absl::Status {
    std::vector<host::UnitObservation> observed = ObserveAll(conns);
    HSMSIM_RETURN_IF_ERROR(GuardRegisterChange(
        inv, manifest, observed,
        host::RequestedChange::Of(host::OperatorCommand::kCommitNew).WithNewVp(quoted)));
    agreed = quoted;
    return agreed.empty() ? ConfirmUnitsNew(o, observed, agreed) : absl::OkStatus();
  };
  return RunSignedPerUnit(
      inv, "mk commit",
      [&](SignedUnit& u) -> absl::Status {
        const auto& reg = u.info.new_register();
        u.outcome.details["new_state"] = std::string(wire::RegisterStateName(reg.state()));
        u.outcome.details["new_verification_pattern"] = ToHex(reg.verification_pattern());
        if (reg.state() == v1::REGISTER_FULL_COMMITTED && !agreed.empty() &&
            host::SameId(reg.verification_pattern(), agreed)) {
          return ReportAlready(u.outcome,
                               StrCat("committed: NEW FULL_COMMITTED VP ", ToHex(agreed)));
        }
        if (agreed.empty()) {
          return Error(absl::StatusCode::kFailedPrecondition, reason::kNewRegisterNotFull,
                       StrCat("unit ", u.conn.unit.name, " NEW register is ",
                              wire::RegisterStateName(reg.state()),
                              "; load all key parts first (hsmctl mk load)"));
        }
        HSMSIM_ASSIGN_OR_RETURN(u.info,
                                host::CommitNewOnUnit(*u.conn.client, u.info, agreed, u.signers));
        const auto& after = u.info.new_register();
        u.outcome.details["new_state"] = std::string(wire::RegisterStateName(after.state()));
        u.outcome.details["new_verification_pattern"] = ToHex(after.verification_pattern());
        u.outcome.text = StrCat("NEW ", wire::RegisterStateName(after.state()), " VP ",
                                ToHex(after.verification_pattern()));
        return absl::OkStatus();
      },
      hooks);
}

json RegistersJson(const v1::GetInfoResponse& info) {
  auto reg = [](const v1::MasterKeyRegisterInfo& r) {
    return json{{"state", std::string(wire::RegisterStateName(r.state()))},
                {"verification_pattern", ToHex(r.verification_pattern())}};
  };
  return {{"new", reg(info.new_register())},
          {"current", reg(info.current_register())},
          {"old", reg(info.old_register())}};
}

host::OperatorCommand CommandOf(host::RegisterChange change) {
  switch (change) {
    case host::RegisterChange::kSetImmediate:
      return host::OperatorCommand::kSetImmediate;
    case host::RegisterChange::kClearNew:
      return host::OperatorCommand::kClearNew;
    case host::RegisterChange::kClearCurrent:
      return host::OperatorCommand::kClearCurrent;
    case host::RegisterChange::kClearOld:
      return host::OperatorCommand::kClearOld;
    case host::RegisterChange::kZeroize:
      break;
  }
  return host::OperatorCommand::kZeroize;
}

// WantedVp is the key set immediate is to make CURRENT: the open rotation's
// target, else the key the units hold committed in NEW (the guard checked
// that they agree); empty when neither is known.
std::string WantedVp(const std::optional<host::RotationJournal>& journal,
                     const std::vector<host::UnitObservation>& observed) {
  if (host::RotationOpen(journal)) return journal->target_vp;
  for (const host::UnitObservation& o : observed) {
    if (o.info.ok() && o.info->new_register().state() == v1::REGISTER_FULL_COMMITTED) {
      return o.info->new_register().verification_pattern();
    }
  }
  return "";
}

// AlreadyDone returns what already holds on a unit in state `info` that is
// what `change` wants, or std::nullopt when the unit must change.
std::optional<std::string> AlreadyDone(host::RegisterChange change, const v1::GetInfoResponse& info,
                                       std::string_view wanted_vp) {
  auto empty = [](const v1::MasterKeyRegisterInfo& r) { return r.state() == v1::REGISTER_EMPTY; };
  switch (change) {
    case host::RegisterChange::kSetImmediate:
      if (info.new_register().state() != v1::REGISTER_FULL_COMMITTED && !wanted_vp.empty() &&
          info.current_register().state() == v1::REGISTER_VALID &&
          host::SameId(info.current_register().verification_pattern(), wanted_vp)) {
        return StrCat("promoted: CURRENT VALID ", host::ShortId(wanted_vp));
      }
      break;
    case host::RegisterChange::kClearNew:
      if (empty(info.new_register())) return "empty: NEW EMPTY";
      break;
    case host::RegisterChange::kClearCurrent:
      if (empty(info.current_register())) return "empty: CURRENT EMPTY";
      break;
    case host::RegisterChange::kClearOld:
      if (empty(info.old_register())) return "empty: OLD EMPTY";
      break;
    case host::RegisterChange::kZeroize:
      if (info.mode() == v1::MODE_IMPRINT && info.administrators_size() == 0 &&
          empty(info.new_register()) && empty(info.current_register()) &&
          empty(info.old_register())) {
        return "zeroized: imprint mode, no administrator, every register EMPTY";
      }
      break;
  }
  return std::nullopt;
}

std::string RegistersText(const v1::GetInfoResponse& info) {
  return StrCat("NEW ", wire::RegisterStateName(info.new_register().state()), ", CURRENT ",
                wire::RegisterStateName(info.current_register().state()), " ",
                VpHex(info.current_register().verification_pattern(), false), ", OLD ",
                wire::RegisterStateName(info.old_register().state()), " ",
                VpHex(info.old_register().verification_pattern(), false));
}

// DistinctSigners returns how many different administrator keys sign.
size_t DistinctSigners(const std::vector<host::AdminKey>& signers) {
  std::set<crypto::KeyId> ids;
  for (const host::AdminKey& k : signers) ids.insert(k.key_id);
  return ids.size();
}

// KeysMovingToOld counts, per WKID, the stored keys a set immediate leaves
// under OLD: keys whose blob is under the CURRENT key of a unit it changes
// (not already promoted) and that have no pending blob under the key that
// becomes CURRENT (a rotation's finalize moves those).
std::map<std::string, int64_t> KeysMovingToOld(const std::vector<host::UnitObservation>& observed,
                                               const std::vector<host::WkidPairCount>& counts,
                                               const std::string& wanted_vp) {
  std::set<std::string> leaving;  // WKIDs of the CURRENT keys that become OLD
  for (const host::UnitObservation& o : observed) {
    if (!o.info.ok() || o.info->current_register().state() != v1::REGISTER_VALID ||
        o.info->new_register().state() != v1::REGISTER_FULL_COMMITTED ||
        AlreadyDone(host::RegisterChange::kSetImmediate, *o.info, wanted_vp).has_value()) {
      continue;
    }
    leaving.insert(host::WkidOfVp(o.info->current_register().verification_pattern()));
  }
  const std::string target = wanted_vp.empty() ? std::string() : host::WkidOfVp(wanted_vp);
  std::map<std::string, int64_t> moving;
  for (const host::WkidPairCount& c : counts) {
    if (!leaving.contains(c.wkid) || (!target.empty() && c.pending_wkid == target)) continue;
    moving[c.wkid] += c.count;
  }
  return moving;
}

// WarnKeysMovingToOld prints, on stderr before any unit is changed, how many
// stored keys set immediate leaves under OLD (none: nothing), and returns
// the report's fields: "keys_moving_to_old" (a count) and, when some do,
// "keys_moving_to_old_per_wkid" and "warning" (the text).
json WarnKeysMovingToOld(const std::map<std::string, int64_t>& moving) {
  json fields = json::object();
  int64_t total = 0;
  std::string per_wkid;
  json per_wkid_json = json::array();
  for (const auto& [wkid, keys] : moving) {
    total += keys;
    per_wkid += StrCat(per_wkid.empty() ? "" : ", ", keys, " under ", host::ShortId(wkid));
    per_wkid_json.push_back({{"wkid", ToHex(wkid)}, {"keys", keys}});
  }
  fields["keys_moving_to_old"] = total;
  if (total == 0) return fields;
  const std::string warning =
      StrCat("set immediate moves ", total, " stored key(s) to OLD (", per_wkid,
             "): the CURRENT key they are under becomes OLD. They stay usable while OLD holds it; "
             "re-encrypt them to the new CURRENT with hsmctl keys upgrade before OLD is cleared "
             "(hsmctl mk rotate does both as one journaled step)");
  fields["keys_moving_to_old_per_wkid"] = std::move(per_wkid_json);
  fields["warning"] = warning;
  std::cerr << "hsmctl: warning: " << warning << "\n" << std::flush;
  return fields;
}

// RunSimple issues an op without arguments on every selected unit that is
// not already in the state it wants, after the register change guard (the
// open rotation must stay finishable) and the interlock (every stored key
// must stay under a master key some unit of the instance holds), unless
// `force`; a forced change the interlock would refuse needs the signature
// threshold (host::CheckForcedChange).
int RunSimple(Invocation& inv, std::string_view command, void (*set_op)(v1::Command&),
              host::RegisterChange change, bool force) {
  SignedHooks hooks;
  std::string wanted_vp;
  size_t signers = 0;
  hooks.prepare = [&](const std::vector<host::AdminKey>& keys, ReportHeader&) -> absl::Status {
    signers = DistinctSigners(keys);
    // Every register change but zeroize (unsigned in imprint mode) is
    // refused unsigned by every unit: say so once, before any is asked.
    if (keys.empty() && change != host::RegisterChange::kZeroize) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kNoSigners,
                   StrCat(command, " must be signed by administrators: pass --sign FILES"));
    }
    return absl::OkStatus();
  };
  json warning_fields = json::object();  // set immediate: keys moving to OLD
  hooks.precheck = [&](std::vector<UnitConnection>& conns,
                       const host::FleetManifest& manifest) -> absl::Status {
    std::vector<host::UnitObservation> observed = ObserveAll(conns);
    // The interlock reasons over every unit of the instance, selected or not.
    const std::vector<host::UnitObservation> instance = ObserveInstance(inv, observed, manifest);
    // Quarantined keys hold their master key even with --force.
    HSMSIM_ASSIGN_OR_RETURN(auto quarantined, QuarantinedCounts(inv, manifest));
    if (!quarantined.empty()) {
      HSMSIM_RETURN_IF_ERROR(host::CheckQuarantineHold(instance, change, quarantined));
    }
    std::optional<host::RotationJournal> journal;
    const absl::StatusOr<std::vector<host::WkidPairCount>> counts = KeyCounts(inv, manifest);
    if (force) {
      // A forced change goes ahead even when the keystore cannot be read,
      // but one the interlock would refuse needs the signature threshold.
      journal = ReadJournalIfAny(inv, manifest).value_or(std::nullopt);
      HSMSIM_RETURN_IF_ERROR(host::CheckForcedChange(instance, change, counts, signers));
    } else {
      HSMSIM_RETURN_IF_ERROR(
          GuardRegisterChange(inv, manifest, observed, host::RequestedChange::Of(CommandOf(change)),
                              &journal, &instance, counts.ok() ? &*counts : nullptr));
      HSMSIM_RETURN_IF_ERROR(counts.status());
      HSMSIM_RETURN_IF_ERROR(host::CheckInterlock(instance, change, *counts));
    }
    wanted_vp = WantedVp(journal, observed);
    if (change == host::RegisterChange::kSetImmediate) {
      // A keystore that cannot be read (a forced change) gives no warning.
      warning_fields = WarnKeysMovingToOld(KeysMovingToOld(
          observed, counts.ok() ? *counts : std::vector<host::WkidPairCount>{}, wanted_vp));
    }
    return absl::OkStatus();
  };
  hooks.finish = [&](ReportHeader& header) { header.fields.update(warning_fields); };
  return RunSignedPerUnit(
      inv, command,
      [&](SignedUnit& u) -> absl::Status {
        if (auto already = AlreadyDone(change, u.info, wanted_vp)) {
          u.outcome.details["registers"] = RegistersJson(u.info);
          return ReportAlready(u.outcome, *already);
        }
        v1::Command op;
        set_op(op);
        HSMSIM_RETURN_IF_ERROR(u.Issue(op).status());
        u.outcome.details["registers"] = RegistersJson(u.info);
        u.outcome.text = RegistersText(u.info);
        return absl::OkStatus();
      },
      hooks);
}

void AddSimple(CLI::App* parent, Invocation& inv, const char* name, const char* help,
               void (*set_op)(v1::Command&), host::RegisterChange change) {
  CLI::App* cmd = parent->add_subcommand(name, help);
  auto force = std::make_shared<bool>(false);
  cmd->add_flag("--force", *force,
                "Skip the register change guard (an open rotation) and the interlock that "
                "refuses to strand stored keys under a master key no unit holds; where the "
                "interlock would refuse, at least the signature threshold must sign");
  AddSignOption(cmd, inv);
  AddUnitOptions(cmd, inv);
  AddJsonOption(cmd, inv);
  const std::string command =
      parent->get_parent() == nullptr ? std::string(name) : StrCat(parent->get_name(), " ", name);
  cmd->callback([&inv, command, set_op, change, force] {
    inv.action = [&inv, command, set_op, change, force] {
      return RunSimple(inv, command, set_op, change, *force);
    };
  });
}

}  // namespace

void AddMasterKeyCommands(CLI::App& app, Invocation& inv) {
  CLI::App* mk =
      app.add_subcommand("mk", "Master key registers: load, commit, set immediate, clear");
  mk->require_subcommand(1);

  auto load_opts = std::make_shared<LoadOptions>();
  CLI::App* load = mk->add_subcommand(
      "load",
      "Load key parts into the NEW register of every selected unit (generates the "
      "importer key first where there is none): every part of the key at once, or each "
      "custodian their own part(s) with --total");
  load->add_option("--parts", load_opts->parts,
                   "Key parts P1[,P2...] (1 to 20): key part files, or pkcs11: URIs of parts on "
                   "smart cards")
      ->required()
      ->delimiter(',');
  load->add_option("--total", load_opts->total,
                   "Parts of the whole load, when --parts gives only some of them (default: as "
                   "many as --parts gives, or the load in progress on the unit)")
      ->check(CLI::Range(2, 20));
  AddSignOption(load, inv);
  AddUnitOptions(load, inv);
  AddJsonOption(load, inv);
  load->callback(
      [&inv, load_opts] { inv.action = [&inv, load_opts] { return RunLoad(inv, *load_opts); }; });

  auto commit_opts = std::make_shared<CommitOptions>();
  CLI::App* commit = mk->add_subcommand(
      "commit",
      "Commit the NEW register of every selected unit, quoting the VP the custodians' key parts "
      "give (--vp or --parts); without either, show NEW's VP and ask for confirmation (--yes)");
  CLI::Option* vp_opt =
      commit->add_option("--vp", commit_opts->vp_hex, "Expected NEW VP, 64 hex digits");
  commit
      ->add_option("--parts", commit_opts->parts,
                   "Every key part P1,P2[,...] (files, or pkcs11: URIs): the expected NEW VP is "
                   "the VP of their XOR")
      ->delimiter(',')
      ->excludes(vp_opt);
  commit->add_flag("--yes", commit_opts->yes,
                   "Without --vp or --parts: commit the key NEW holds (the units must agree) "
                   "without asking");
  AddSignOption(commit, inv);
  AddUnitOptions(commit, inv);
  AddJsonOption(commit, inv);
  commit->callback([&inv, commit_opts] {
    inv.action = [&inv, commit_opts] { return RunCommit(inv, *commit_opts); };
  });

  AddSimple(
      mk, inv, "setimm", "Set immediate: OLD := CURRENT, CURRENT := NEW, NEW := EMPTY",
      [](v1::Command& op) { op.mutable_set_immediate(); }, host::RegisterChange::kSetImmediate);
  AddSimple(
      mk, inv, "clrnew", "Clear the NEW register",
      [](v1::Command& op) { op.mutable_clear_new_master_key(); }, host::RegisterChange::kClearNew);
  AddSimple(
      mk, inv, "clrcur", "Clear the CURRENT register",
      [](v1::Command& op) { op.mutable_clear_current_master_key(); },
      host::RegisterChange::kClearCurrent);
  AddSimple(
      mk, inv, "clrold", "Clear the OLD register",
      [](v1::Command& op) { op.mutable_clear_old_master_key(); }, host::RegisterChange::kClearOld);
  AddSimple(
      &app, inv, "zeroize",
      "Zeroize every selected unit (back to imprint mode, all registers cleared); refused by "
      "the interlock while keys are stored under a master key only these units hold, or a "
      "unit would lose its VALID CURRENT while keys are stored; --force needs the signature "
      "threshold",
      [](v1::Command& op) { op.mutable_zeroize(); }, host::RegisterChange::kZeroize);
}

}  // namespace hsmsim::hsmctl

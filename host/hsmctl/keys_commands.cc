// hsmctl keys create | list | show | wrap | unwrap | verify | quarantine |
// upgrade.
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "common/utf8.h"
#include "crypto/verification_pattern.h"
#include "host/batch_fanout.h"
#include "host/hsmctl/keystore_support.h"
#include "host/hsmctl/verify_report.h"
#include "host/internal/pq.h"
#include "host/key_creation.h"
#include "host/master_key_id.h"
#include "host/straggler_upgrade.h"
#include "proto/wire/blob_format.h"
#include "proto/wire/status_codec.h"

namespace hsmsim::hsmctl {
namespace {

using Clock = std::chrono::steady_clock;

struct Opened {
  host::FleetManifest manifest;
  std::vector<UnitConnection> conns;
  std::unique_ptr<host::Keystore> store;
};

absl::StatusOr<Opened> OpenAll(const Invocation& inv, bool create) {
  Opened o;
  HSMSIM_ASSIGN_OR_RETURN(o.conns, ConnectSelected(inv, &o.manifest));
  HSMSIM_ASSIGN_OR_RETURN(o.store, OpenKeystore(inv, o.manifest, create));
  return o;
}

// SayCreated prints what keys create stored.
void SayCreated(const Invocation& inv, const host::KeyCreationReport& r, double seconds,
                const std::string& location) {
  const std::string target = ToHex(r.target_wkid);
  if (inv.json) {
    std::cout << json{{"command", "keys create"},
                      {"ok", true},
                      {"created", r.created},
                      {"with_pending", r.with_pending},
                      {"target_wkid", target},
                      {"seconds", seconds},
                      {"keys_per_second", r.created / std::max(seconds, 1e-9)}}
                     .dump(2)
              << "\n";
    return;
  }
  std::cout << "created " << r.created << " key(s) in " << seconds << " s ("
            << static_cast<int64_t>(r.created / std::max(seconds, 1e-9)) << " keys/s) in "
            << location << "\n";
  if (r.with_pending > 0) {
    std::cout << r.with_pending << " of them are also re-encrypted under the rotation's target "
              << host::ShortId(r.target_wkid)
              << " (pending): they end under it when the rotation finishes\n";
  }
}

// The longest --prefix: a key name (PREFIX<number>) holds at most 255 bytes,
// and the number up to 19 digits.
constexpr size_t kMaxKeyNamePrefix = 255 - 19;

// CheckKeyNamePrefix refuses, before anything is sent, a prefix that would
// make key names a unit cannot take: not valid UTF-8 (a proto string field:
// the unit would refuse the whole frame) or too long.
absl::Status CheckKeyNamePrefix(const std::string& prefix) {
  if (const size_t bad = FirstInvalidUtf8(prefix); bad != prefix.size()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyName,
                 StrCat("--prefix is not valid UTF-8 (byte ", bad + 1, " of ", prefix.size(),
                        "); key names must be UTF-8 text"));
  }
  if (prefix.size() > kMaxKeyNamePrefix) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kBadKeyName,
                 StrCat("--prefix is ", prefix.size(), " bytes; at most ", kMaxKeyNamePrefix,
                        " (a key name holds at most 255 bytes)"));
  }
  return absl::OkStatus();
}

int RunCreate(Invocation& inv, int64_t count, const std::string& prefix) {
  if (absl::Status s = CheckKeyNamePrefix(prefix); !s.ok()) return Fail(inv, s);
  auto opened = OpenAll(inv, true);
  if (!opened.ok()) return Fail(inv, opened.status());
  const auto start = Clock::now();
  ProgressPrinter progress(inv.json);
  host::KeyCreationSpec spec;
  spec.prefix = prefix;
  spec.count = count;
  // GenerateKeys batches, batches in flight and keystore chunks: the
  // defaults, which bench rotate's fill measures.
  host::KeyCreationReport report;
  LineFolder notes(std::cerr, "hsmctl: ");
  absl::Status failure = host::CreateKeys(
      *opened->store, UnitPairs(opened->conns), spec, report,
      [&](int64_t made) {
        progress.Update(host::RotationProgress{
            made, count, std::chrono::duration<double>(Clock::now() - start).count(), "creating"});
      },
      [&](std::string_view line) {
        progress.Finish();
        notes.Say(line);
      });
  progress.Finish();
  notes.Finish();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!failure.ok()) {
    std::cerr << "hsmctl: "
              << (report.created == 0 ? std::string("no key was stored")
                                      : StrCat(report.created, " key(s) were stored"))
              << " before the error\n";
    return Fail(inv, failure);
  }
  SayCreated(inv, report, seconds, opened->store->location());
  return kExitOk;
}

int RunList(Invocation& inv, int64_t limit) {
  host::FleetManifest manifest;
  auto m = host::LoadFleetManifest(FleetDir(inv));
  if (!m.ok()) return Fail(inv, m.status());
  auto store = OpenKeystore(inv, *m, false);
  if (!store.ok()) return Fail(inv, store.status());
  json keys = json::array();
  int64_t after = 0;
  int64_t shown = 0;
  while (shown < limit) {
    auto page =
        (*store)->ReadPage(after, static_cast<size_t>(std::min<int64_t>(1000, limit - shown)));
    if (!page.ok()) return Fail(inv, page.status());
    if (page->empty()) break;
    for (const host::StoredKey& k : *page) {
      if (inv.json) {
        keys.push_back({{"name", k.name},
                        {"wkid", ToHex(k.wkid)},
                        {"pending_wkid", ToHex(k.pending_wkid)},
                        {"quarantined", k.quarantined},
                        {"problem", k.problem}});
      } else {
        std::cout << k.name << "  wkid " << host::ShortId(k.wkid)
                  << (k.pending_wkid.empty() ? "" : "  pending " + host::ShortId(k.pending_wkid))
                  << (k.quarantined       ? StrCat("  QUARANTINED (", k.problem, ")")
                      : k.problem.empty() ? std::string()
                                          : StrCat("  UNREADABLE (", k.problem, ")"))
                  << "\n";
      }
      ++shown;
    }
    after = page->back().id;
  }
  if (inv.json) std::cout << json{{"command", "keys list"}, {"keys", keys}}.dump(2) << "\n";
  return kExitOk;
}

// RunShow prints one stored key: its WKID, pending WKID, and whether a unit
// could not open its blob or it is quarantined. Reads the keystore only.
int RunShow(Invocation& inv, const std::string& name) {
  auto m = host::LoadFleetManifest(FleetDir(inv));
  if (!m.ok()) return Fail(inv, m.status());
  auto store = OpenKeystore(inv, *m, false);
  if (!store.ok()) return Fail(inv, store.status());
  auto key = (*store)->FindKey(name);
  if (!key.ok()) return Fail(inv, key.status());
  if (!key->has_value()) {
    return Fail(inv, Error(absl::StatusCode::kNotFound, reason::kNoSuchKey,
                           StrCat("no key named '", name, "' in ", (*store)->location())));
  }
  const host::StoredKey& k = **key;
  const std::string state = k.quarantined ? "QUARANTINED" : k.problem.empty() ? "ok" : "UNREADABLE";
  if (inv.json) {
    std::cout << json{{"command", "keys show"},
                      {"ok", true},
                      {"name", k.name},
                      {"wkid", ToHex(k.wkid)},
                      {"pending_wkid", ToHex(k.pending_wkid)},
                      {"state", state},
                      {"quarantined", k.quarantined},
                      {"problem", k.problem}}
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  std::cout << "key " << k.name << "\n"
            << "  wkid     " << ToHex(k.wkid) << "\n"
            << "  pending  " << (k.pending_wkid.empty() ? "-" : ToHex(k.pending_wkid)) << "\n"
            << "  state    " << state
            << (k.problem.empty() ? std::string() : StrCat(" (", k.problem, ")")) << "\n";
  return kExitOk;
}

// UseKey runs a wrap or unwrap of `key` on the first unit that can use it.
int RunUseKey(Invocation& inv, const std::string& name, bool wrap) {
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  auto opened = OpenAll(inv, false);
  if (!opened.ok()) return Fail(inv, opened.status());
  auto key = opened->store->FindKey(name);
  if (!key.ok()) return Fail(inv, key.status());
  if (!key->has_value()) {
    return Fail(inv, Error(absl::StatusCode::kNotFound, reason::kNoSuchKey,
                           StrCat("no key named '", name, "' in ", opened->store->location())));
  }
  std::string data = input;
  if (!wrap) {
    auto decoded = Base64Decode(input);
    if (!decoded.ok()) return Fail(inv, decoded.status());
    data = std::move(*decoded);
  }
  absl::Status last =
      Error(absl::StatusCode::kUnavailable, reason::kNoUnitAvailable, "no unit answered");
  for (UnitConnection& c : opened->conns) {
    for (const std::string* blob : {&(*key)->blob, &(*key)->pending_blob}) {
      if (blob->empty()) continue;
      v1::Request r;
      if (wrap) {
        r.mutable_wrap_key()->set_blob(*blob);
        r.mutable_wrap_key()->set_plaintext(data);
      } else {
        r.mutable_unwrap_key()->set_blob(*blob);
        r.mutable_unwrap_key()->set_wrapped(data);
      }
      auto resp = c.client->Call(std::move(r));
      absl::Status s = host::ResponseStatus(resp, c.unit.name);
      if (s.ok()) {
        if (wrap) {
          std::cout << Base64Encode(resp->wrap_key().wrapped()) << "\n";
        } else {
          std::string plain = resp->unwrap_key().plaintext();
          std::cout.write(plain.data(), static_cast<std::streamsize>(plain.size()));
          WipeString(&plain);
          WipeString(resp->mutable_unwrap_key()->mutable_plaintext());
        }
        if ((wrap ? resp->wrap_key().blob_under_old() : resp->unwrap_key().blob_under_old())) {
          std::cerr << "hsmctl: note: key '" << name
                    << "' is under the OLD master key; re-encrypt it (hsmctl keys upgrade)\n";
        }
        WipeString(&data);
        return kExitOk;
      }
      last = s;
      // A refusal that names the key or data (not the unit) will not change
      // on another unit.
      const std::string reason = ReasonOf(s);
      if (reason == reason::kWrappedKeyAuthenticationFailed ||
          reason == reason::kMalformedWrappedKey || reason == reason::kBadDataKeySize) {
        WipeString(&data);
        return Fail(inv, s);
      }
    }
  }
  WipeString(&data);
  return Fail(inv, last);
}

// What every unit answered for one page: answers[unit][0] for the page's
// blobs, answers[unit][1] for its pending blobs; errors[unit] says why a unit
// gave no answer (its own reason, or that it did not answer).
struct PageChecks {
  std::vector<std::array<std::optional<v1::CheckBlobsResponse>, 2>> answers;
  std::vector<absl::Status> errors;

  // TooLarge is true when a unit refused the page as too large for a frame
  // (FRAME_TOO_LARGE): the page should be checked again in smaller pages.
  bool TooLarge() const {
    return std::any_of(errors.begin(), errors.end(),
                       [](const absl::Status& s) { return ReasonOf(s) == reason::kFrameTooLarge; });
  }
};

// CheckPage asks every unit, through `fanout`, to check the page's blobs
// and pending blobs.
PageChecks CheckPage(host::BatchFanout& fanout, const std::vector<host::StoredKey>& page) {
  host::BatchFanout::Batch blobs{v1::Request(), 0, 0};
  host::BatchFanout::Batch pendings{v1::Request(), 1, 0};
  for (const host::StoredKey& k : page) {
    blobs.request.mutable_check_blobs()->add_blobs(k.blob);
    pendings.request.mutable_check_blobs()->add_blobs(k.pending_blob.empty() ? std::string("-")
                                                                             : k.pending_blob);
  }
  const bool any_pending = std::any_of(
      page.begin(), page.end(), [](const host::StoredKey& k) { return !k.pending_blob.empty(); });
  for (size_t u = 0; u < fanout.lane_count(); ++u) {
    fanout.Send(u, blobs);
    if (any_pending) fanout.Send(u, pendings);
  }
  PageChecks checks;
  checks.answers.resize(fanout.lane_count());
  checks.errors.resize(fanout.lane_count());
  while (fanout.in_flight() > 0) {
    host::BatchFanout::Completion d = fanout.Next();
    const std::string& unit = fanout.channel(d.lane).name();
    absl::Status s = host::ResponseStatus(d.result, unit);
    if (s.ok() && d.result->check_blobs().results_size() != static_cast<int>(page.size())) {
      s = Error(absl::StatusCode::kInternal, reason::kBadResponse,
                StrCat("unit ", unit, " answered ", d.result->check_blobs().results_size(),
                       " results for ", page.size(), " blobs"));
    }
    if (!s.ok()) {
      if (checks.errors[d.lane].ok()) checks.errors[d.lane] = s;
      continue;
    }
    checks.answers[d.lane][d.batch.tag] = d.result->check_blobs();
  }
  return checks;
}

// WhyNoAnswer returns why unit `u` gave no answer for the page, as the
// unit's reason, or "did not answer".
std::string WhyNoAnswer(const PageChecks& checks, size_t u) {
  const absl::Status& e = checks.errors[u];
  if (e.ok() || host::IsUnreachable(e)) return "did not answer";
  return ReasonOf(e);
}

// TallyPage counts each key of the page as usable on every unit (with its
// blob or its pending blob) or not.
void TallyPage(const std::vector<host::StoredKey>& page, const PageChecks& checks,
               const std::vector<UnitConnection>& conns, VerifyReport& tally) {
  for (const absl::Status& e : checks.errors) {
    if (!e.ok() && tally.unit_error.ok()) tally.unit_error = e;
  }
  for (size_t i = 0; i < page.size(); ++i) {
    const host::StoredKey& k = page[i];
    if (k.quarantined) {
      // Set aside by the operator: reported as such, not as a failure.
      ++tally.quarantined;
      if (tally.quarantined_keys.size() < VerifyReport::kMaxListedFailures) {
        tally.quarantined_keys.push_back(
            StrCat(k.name, " (", k.problem, ", WKID ", host::ShortId(k.wkid), ")"));
      }
      continue;
    }
    VerifyReport::PerWkid& w = tally.per_wkid[ToHex(k.wkid)];
    ++w.keys;
    bool everywhere = true;
    bool under_old = false;
    std::string why;
    for (size_t u = 0; u < conns.size(); ++u) {
      bool ok = false;
      bool answered = false;
      for (int tag = 0; tag < 2 && !ok; ++tag) {
        if (!checks.answers[u][tag].has_value() || (tag == 1 && k.pending_blob.empty())) continue;
        answered = true;
        const v1::BlobCheck& c = checks.answers[u][tag]->results(static_cast<int>(i));
        if (c.status().code() == 0) {
          ok = true;
          under_old = under_old || c.under_old();
        } else if (why.empty()) {
          why = StrCat(conns[u].unit.name, ": ", c.status().reason());
        }
      }
      if (!ok && !answered && why.empty()) {
        why = StrCat(conns[u].unit.name, ": ", WhyNoAnswer(checks, u));
      }
      if (!ok) everywhere = false;
    }
    if (everywhere) {
      ++w.usable_everywhere;
    } else {
      ++tally.failed_keys;
      if (tally.failures.size() < VerifyReport::kMaxListedFailures) {
        tally.failures.push_back(StrCat(k.name, " (", why, ")"));
      }
    }
    if (under_old) ++w.under_old_somewhere;
  }
  tally.checked += static_cast<int64_t>(page.size());
}

int RunVerify(Invocation& inv, size_t page_size) {
  auto opened = OpenAll(inv, false);
  if (!opened.ok()) return Fail(inv, opened.status());
  const auto start = Clock::now();
  auto total = opened->store->CountKeys();
  if (!total.ok()) return Fail(inv, total.status());
  ProgressPrinter progress(inv.json);
  VerifyReport tally;
  host::BatchFanoutOptions options;
  options.in_flight_per_lane = 2;  // the page's blobs and its pending blobs
  options.activity = "keys verify";
  host::BatchFanout fanout(Channels(opened->conns), options);
  int64_t after = 0;
  while (true) {
    auto page = opened->store->ReadPage(after, page_size);
    if (!page.ok()) return Fail(inv, page.status());
    if (page->empty()) break;
    PageChecks checks = CheckPage(fanout, *page);
    if (checks.TooLarge() && page->size() > 1) {
      // A unit takes smaller frames (--max-frame-bytes): check the same keys
      // again in smaller pages rather than fail them all.
      page_size = page->size() / 2;
      progress.Finish();
      std::cerr << "hsmctl: a unit refused a page of " << page->size()
                << " blobs as too large (FRAME_TOO_LARGE); checking pages of " << page_size
                << " (--page-size sets the first size)\n";
      continue;
    }
    after = page->back().id;
    TallyPage(*page, checks, opened->conns, tally);
    progress.Update(host::RotationProgress{
        tally.checked, *total, std::chrono::duration<double>(Clock::now() - start).count(),
        "verifying"});
  }
  progress.Finish();
  tally.units = opened->conns.size();
  tally.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return RenderVerify(inv, tally);
}

// RunQuarantine quarantines (or, with `release`, releases) the keys named,
// all or none, and reports each with its WKID and recorded problem.
int RunQuarantine(Invocation& inv, const std::vector<std::string>& names, bool release) {
  auto m = host::LoadFleetManifest(FleetDir(inv));
  if (!m.ok()) return Fail(inv, m.status());
  auto store = OpenKeystore(inv, *m, false);
  if (!store.ok()) return Fail(inv, store.status());
  if (absl::Status s = (*store)->SetQuarantined(names, !release); !s.ok()) return Fail(inv, s);
  json keys = json::array();
  for (const std::string& name : names) {
    auto key = (*store)->FindKey(name);
    if (!key.ok()) return Fail(inv, key.status());
    if (!key->has_value()) continue;
    const host::StoredKey& k = **key;
    if (inv.json) {
      keys.push_back({{"name", k.name},
                      {"wkid", ToHex(k.wkid)},
                      {"quarantined", k.quarantined},
                      {"problem", k.problem}});
    } else {
      std::cout << k.name << ": " << (k.quarantined ? "quarantined" : "not quarantined")
                << ", blob kept under WKID " << ToHex(k.wkid)
                << (k.problem.empty() ? std::string() : StrCat(" (", k.problem, ")")) << "\n";
    }
  }
  if (inv.json) {
    std::cout << json{{"command", "keys quarantine"}, {"ok", true}, {"keys", keys}}.dump(2) << "\n";
  } else if (!release) {
    std::cout << "re-encryption skips these keys; the interlock keeps their master key while "
                 "they exist (release: hsmctl keys quarantine --release NAME...)\n";
  }
  return kExitOk;
}

int RunUpgrade(Invocation& inv) {
  auto opened = OpenAll(inv, false);
  if (!opened.ok()) return Fail(inv, opened.status());
  // keys upgrade re-encrypts key storage: never beside a rotation, not even
  // one that begins after the journal check below.
  auto lock = opened->store->LockRotation(host::RotationLockHolder::Self("keys upgrade"));
  if (!lock.ok()) return Fail(inv, lock.status());
  if (absl::Status s = RefuseDuringRotation(*opened->store); !s.ok()) return Fail(inv, s);
  auto observed = ObserveAll(opened->conns);
  const bool no_old = std::all_of(observed.begin(), observed.end(), [](const auto& o) {
    return o.info.ok() && o.info->old_register().state() == v1::REGISTER_EMPTY;
  });
  if (no_old) {
    if (inv.json) {
      std::cout << json{{"command", "keys upgrade"}, {"ok", true}, {"moved", 0}}.dump(2) << "\n";
    } else {
      std::cout << "no unit holds an OLD master key: nothing to move\n";
    }
    return kExitOk;
  }
  std::string old_vp, current_vp;
  for (const auto& o : observed) {
    if (!o.info.ok()) return Fail(inv, o.info.status());
    const auto& old = o.info->old_register();
    const auto& cur = o.info->current_register();
    if (old.state() != v1::REGISTER_VALID || cur.state() != v1::REGISTER_VALID ||
        (!old_vp.empty() &&
         (old.verification_pattern() != old_vp || cur.verification_pattern() != current_vp))) {
      return Fail(inv, Error(absl::StatusCode::kFailedPrecondition, reason::kRegistersDiffer,
                             StrCat("keys upgrade needs every unit with the same VALID OLD and "
                                    "CURRENT registers; unit ",
                                    o.unit.name, " differs")));
    }
    old_vp = old.verification_pattern();
    current_vp = cur.verification_pattern();
  }
  host::StragglerOptions options;
  auto upgraded =
      host::UpgradeStragglers(*opened->store, Channels(opened->conns), host::WkidOfVp(old_vp),
                              host::WkidOfVp(current_vp), options);
  if (!upgraded.ok()) return Fail(inv, upgraded.status());
  const int64_t moved = upgraded->moved;
  const int64_t failed = upgraded->failed.count;
  if (inv.json) {
    std::cout << json{{"command", "keys upgrade"},
                      {"ok", failed == 0},
                      {"moved", moved},
                      {"failed", failed},
                      {"failed_keys", upgraded->failed.named}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "moved " << moved << " key(s) from OLD to CURRENT"
              << (failed ? StrCat(", ", failed, " failed: ", upgraded->failed.List())
                         : std::string())
              << "\n";
  }
  return failed == 0 ? kExitOk : kExitRefused;
}

// RunMigrate brings the fleet's keystore to the schema version this hsmctl
// reads (host::MigrateSqliteKeystore, host::MigratePostgresKeystore);
// contacts no unit.
int RunMigrate(Invocation& inv) {
  auto m = host::LoadFleetManifest(FleetDir(inv));
  if (!m.ok()) return Fail(inv, m.status());
  const std::string path = KeystorePath(inv, *m);
  const auto start = Clock::now();
  auto done = host::internal::IsPostgresUrl(path) ? host::MigratePostgresKeystore(path)
                                                  : host::MigrateSqliteKeystore(path);
  if (!done.ok()) return Fail(inv, done.status());
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const bool changed = done->from_version != done->to_version;
  if (inv.json) {
    std::cout << json{{"command", "keys migrate"},
                      {"ok", true},
                      {"keystore", ShownKeystoreLocation(path)},
                      {"from_version", done->from_version},
                      {"to_version", done->to_version},
                      {"migrated", changed},
                      {"keys", done->keys},
                      {"pending_blobs", done->pending_blobs},
                      {"seconds", seconds}}
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  if (!changed) {
    std::cout << "keystore " << ShownKeystoreLocation(path) << ": already at schema version "
              << done->to_version << " (" << done->keys << " key(s)); nothing to do\n";
    return kExitOk;
  }
  std::cout << "keystore " << path << ": migrated from schema version " << done->from_version
            << " to " << done->to_version << ": " << done->keys << " key(s), "
            << done->pending_blobs << " pending blob(s) of an open rotation kept (" << std::fixed
            << std::setprecision(1) << seconds << " s)\n";
  return kExitOk;
}

// AddMigrateCommand registers keys migrate.
void AddMigrateCommand(CLI::App& keys, Invocation& inv) {
  CLI::App* migrate = keys.add_subcommand(
      "migrate",
      "Bring the keystore to the schema version this hsmctl reads (once, keeping every key)");
  AddFleetOption(migrate, inv);
  AddJsonOption(migrate, inv);
  migrate->callback([&inv] { inv.action = [&inv] { return RunMigrate(inv); }; });
}

}  // namespace

void AddKeysCommands(CLI::App& app, Invocation& inv) {
  CLI::App* keys =
      app.add_subcommand("keys", "Key storage: create, list, use and verify root keys");
  keys->require_subcommand(1);

  auto count = std::make_shared<int64_t>(0);
  auto prefix = std::make_shared<std::string>("key-");
  CLI::App* create = keys->add_subcommand(
      "create", "Generate root keys on the units (spread across them) and store their blobs");
  create->add_option("--count", *count, "How many keys")
      ->required()
      ->check(CLI::Range(1, 100'000'000));
  create->add_option("--prefix", *prefix, "Key name prefix; names are PREFIX<number>")
      ->capture_default_str();
  AddUnitOptions(create, inv);
  AddJsonOption(create, inv);
  create->callback([&inv, count, prefix] {
    inv.action = [&inv, count, prefix] { return RunCreate(inv, *count, *prefix); };
  });

  auto limit = std::make_shared<int64_t>(100);
  CLI::App* list = keys->add_subcommand("list", "List stored keys with their WKIDs");
  list->add_option("--limit", *limit, "At most this many keys")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000}));
  AddFleetOption(list, inv);
  AddJsonOption(list, inv);
  list->callback([&inv, limit] { inv.action = [&inv, limit] { return RunList(inv, *limit); }; });

  auto show_name = std::make_shared<std::string>();
  CLI::App* show = keys->add_subcommand(
      "show", "Show one stored key: its WKID, pending WKID, and a problem or quarantine");
  show->add_option("NAME", *show_name, "Key name")->required();
  AddFleetOption(show, inv);
  AddJsonOption(show, inv);
  show->callback(
      [&inv, show_name] { inv.action = [&inv, show_name] { return RunShow(inv, *show_name); }; });

  AddMigrateCommand(*keys, inv);
  AddSetKeystoreCommand(*keys, inv);

  auto name = std::make_shared<std::string>();
  CLI::App* wrap = keys->add_subcommand(
      "wrap",
      "Wrap a data key (raw bytes on stdin, 1..1024) under the root key --key; base64 on stdout");
  wrap->add_option("--key", *name, "Root key name")->required();
  AddUnitOptions(wrap, inv);
  wrap->callback(
      [&inv, name] { inv.action = [&inv, name] { return RunUseKey(inv, *name, true); }; });
  CLI::App* unwrap = keys->add_subcommand(
      "unwrap",
      "Unwrap a wrapped data key (base64 on stdin) with the root key --key; raw bytes on stdout");
  unwrap->add_option("--key", *name, "Root key name")->required();
  AddUnitOptions(unwrap, inv);
  unwrap->callback(
      [&inv, name] { inv.action = [&inv, name] { return RunUseKey(inv, *name, false); }; });

  CLI::App* verify = keys->add_subcommand(
      "verify",
      "Prove every stored key is usable by every selected unit; counts per WKID; exit 1 on any "
      "failure");
  auto page_size = std::make_shared<size_t>(2048);
  verify
      ->add_option("--page-size", *page_size,
                   "Keys checked per request to each unit; halved by itself when a unit refuses "
                   "a page as too large")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  AddUnitOptions(verify, inv);
  AddJsonOption(verify, inv);
  verify->callback(
      [&inv, page_size] { inv.action = [&inv, page_size] { return RunVerify(inv, *page_size); }; });

  auto quarantine_names = std::make_shared<std::vector<std::string>>();
  auto release = std::make_shared<bool>(false);
  CLI::App* quarantine = keys->add_subcommand(
      "quarantine",
      "Set aside keys whose blobs no unit can open (named by mk rotate and recover): they keep "
      "their blobs, re-encryption skips them, their master key stays held");
  quarantine->add_option("NAME", *quarantine_names, "Key names")->required();
  quarantine->add_flag("--release", *release,
                       "Release the keys instead (they are re-encrypted "
                       "again by the next rotation or keys upgrade)");
  AddFleetOption(quarantine, inv);
  AddJsonOption(quarantine, inv);
  quarantine->callback([&inv, quarantine_names, release] {
    inv.action = [&inv, quarantine_names, release] {
      return RunQuarantine(inv, *quarantine_names, *release);
    };
  });

  CLI::App* upgrade =
      keys->add_subcommand("upgrade", "Re-encrypt keys still under the OLD master key to CURRENT");
  AddUnitOptions(upgrade, inv);
  AddJsonOption(upgrade, inv);
  upgrade->callback([&inv] { inv.action = [&inv] { return RunUpgrade(inv); }; });
}

}  // namespace hsmsim::hsmctl

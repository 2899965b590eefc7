// hsmctl console: the fleet in a browser, live (docs/console.md). The
// server and the page live in host/console/; this file wires them to the
// reports hsmctl's own commands print (json_reports.h).
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "host/console/access_token.h"
#include "host/console/assets.h"
#include "host/console/console_actions.h"
#include "host/console/console_api.h"
#include "host/console/console_server.h"
#include "host/console/fleet_watcher.h"
#include "host/fleet_tls.h"
#include "host/hsmctl/context.h"
#include "host/hsmctl/json_reports.h"
#include "host/hsmctl/keystore_support.h"

namespace hsmsim::hsmctl {
namespace {

struct ConsoleFlags {
  std::string listen = "127.0.0.1:0";
  bool allow_remote = false;
  int poll_ms = 500;
};

json ViewOf(absl::StatusOr<json> report) {
  return report.ok() ? *std::move(report) : FailureJson(report.status());
}

// The recovery view counts the stored keys per WKID, a pass over the whole
// keystore: it is read again only when what it depends on changed (the
// units, their registers, the journal's phase, the rotation lock, the last
// error), or after this long, not at every reading (which a rotation's
// progress changes twice a second).
constexpr std::chrono::seconds kRecoveryMaxAge{10};

// The Keys and audit tab lists this many of the audit log's last events
// (`hsmctl audit show --last 50`).
constexpr int kAuditEventsShown = 50;

// RotationProgress follows the journal's keys done across readings (any
// process's rotation: the journal is in the keystore) and derives what
// the journal does not hold: keys/s over the last samples, the ETA, and
// the samples of the last rotation for the page's throughput chart. A
// sample is taken when keys done or the phase changed, at most one per
// reading.
class RotationProgress {
 public:
  // `published` is what the rotating hsmctl publishes (ReadPublishedProgress):
  // used, for its per-unit counts, keys/s and ETA, while its pid and host
  // hold the rotation lock.
  json Update(const json& rotation, const json& published) {
    const auto now = std::chrono::steady_clock::now();
    if (rotation.value("ok", false) && rotation.contains("keys_total")) {
      const std::string id =
          StrCat(rotation.value("source_vp", ""), ">", rotation.value("target_vp", ""), "@",
                 rotation.value("started_at", ""));
      if (id != id_) {
        id_ = id;
        first_ = now;
        samples_ = json::array();
        view_ = json{{"rotation",
                      {{"source_vp", rotation["source_vp"]},
                       {"target_vp", rotation["target_vp"]},
                       {"started_at", rotation["started_at"]}}}};
      }
      const int64_t done = rotation.value("keys_done", int64_t{0});
      const std::string phase = rotation.value("journal_phase", "");
      if (samples_.empty() || samples_.back()[1] != done || view_["phase"] != phase) {
        const double t = std::chrono::duration<double>(now - first_).count();
        samples_.push_back(json::array({std::round(t * 10) / 10, done}));
        if (samples_.size() > kMaxSamples) Thin();
        view_["phase"] = phase;
        view_["keys_done"] = done;
        view_["keys_total"] = rotation["keys_total"];
        Rate(phase, done, rotation.value("keys_total", int64_t{0}));
        view_["samples"] = samples_;
      }
      TakePublished(rotation, published);
    } else if (!view_.is_null()) {
      view_["phase"] = "NONE";  // finished, or abandoned: the last rotation's chart stays
      view_["eta_seconds"] = nullptr;
      id_.clear();
    }
    return view_;
  }

 private:
  static constexpr size_t kMaxSamples = 240;
  static constexpr double kRateWindowSeconds = 5;

  // Rate sets keys/s over the samples of the last kRateWindowSeconds (at
  // least two), and the ETA while re-encrypting.
  void Rate(const std::string& phase, int64_t done, int64_t total) {
    const double t_last = samples_.back()[0].get<double>();
    size_t from = samples_.size() - 1;
    while (from > 0 && t_last - samples_[from - 1][0].get<double>() <= kRateWindowSeconds) --from;
    if (from == samples_.size() - 1 && from > 0) --from;
    const double dt = t_last - samples_[from][0].get<double>();
    const int64_t dk = done - samples_[from][1].get<int64_t>();
    view_["keys_per_second"] = dt > 0 && dk >= 0 ? json(std::round(dk / dt)) : json(nullptr);
    view_["eta_seconds"] = phase == "REENCRYPTING" && dt > 0 && dk > 0
                               ? json(std::round((total - done) * dt / dk))
                               : json(nullptr);
  }

  void TakePublished(const json& rotation, const json& published) {
    // `published` comes from ReadPublishedProgress, which keeps only fields
    // of the expected types; it counts only while its writer (pid and host)
    // holds the rotation lock.
    if (!console::PublisherHoldsRotationLock(rotation.value("lock_holder", json()), published)) {
      view_["published"] = false;
      return;
    }
    view_["published"] = true;
    view_["keys_per_unit"] = published.value("keys_per_unit", json::object());
    view_["keys_per_second"] = published.value("keys_per_second", json());
    view_["eta_seconds"] =
        view_["phase"] == "REENCRYPTING" ? published.value("eta_seconds", json()) : json(nullptr);
  }

  // Thin keeps every other sample (and the last): a long rotation's chart
  // keeps its shape in a bounded snapshot.
  void Thin() {
    json kept = json::array();
    for (size_t i = 0; i < samples_.size(); i += 2) kept.push_back(samples_[i]);
    if (kept.back() != samples_.back()) kept.push_back(samples_.back());
    samples_ = std::move(kept);
  }

  std::string id_;
  std::chrono::steady_clock::time_point first_;
  json samples_ = json::array();
  json view_;  // null until a rotation was seen
};

// FleetViews reads every view of the console, each with the function behind
// its command's --json (an error stands in the view as that command's error
// document). Used from one thread at a time (the first reading, then the
// watcher's).
class FleetViews {
 public:
  FleetViews(Invocation& inv, const console::ActionRunner& runner) : inv_(inv), runner_(runner) {}

  json Read() {
    json views{{"units", ViewOf(FleetStatusReport(inv_))},
               {"master_keys", ViewOf(UnitStatusReport(inv_))},
               {"rotation", ViewOf(RotationStatusReport(inv_))},
               {"audit", ViewOf(AuditShowReport(inv_, kAuditEventsShown))}};
    json depends_on{views["units"], views["master_keys"]};
    for (const char* field :
         {"ok", "journal_phase", "lock_holder", "last_error", "source_vp", "target_vp", "error"}) {
      if (views["rotation"].contains(field)) depends_on.push_back(views["rotation"][field]);
    }
    const auto now = std::chrono::steady_clock::now();
    if (recovery_.is_null() || depends_on != recovery_depends_on_ ||
        now - recovery_read_at_ >= kRecoveryMaxAge) {
      recovery_ = ViewOf(RecoverLookReport(inv_));
      recovery_depends_on_ = std::move(depends_on);
      recovery_read_at_ = now;
    }
    views["recovery"] = recovery_;
    views["action"] = runner_.State();
    views["rotation_progress"] = progress_.Update(views["rotation"], ReadPublishedProgress(inv_));
    return views;
  }

 private:
  Invocation& inv_;
  const console::ActionRunner& runner_;
  RotationProgress progress_;
  json recovery_;
  json recovery_depends_on_;
  std::chrono::steady_clock::time_point recovery_read_at_;
};

// ConsoleTls returns the TLS identity the console serves HTTPS with when
// the fleet has TLS (fleet.json's "tls", `fleet up --tls`): a certificate
// the fleet CA issues now for `ip`, held in memory only, with the path of
// the CA certificate a client trusts it with; nothing when the fleet has no
// TLS (or no fleet.json yet: NO_FLEET). Errors: fleet.json unreadable
// (FILE_UNREADABLE), damaged (BAD_MANIFEST) or too new
// (UNSUPPORTED_MANIFEST_VERSION) -- never served as plain HTTP, since the
// fleet may have TLS; the fleet CA's files unreadable (FILE_UNREADABLE) or
// not PEM (BAD_TLS_FILES), CRYPTO_FAILED.
struct ConsoleTlsIdentity {
  console::ServerTls server;
  std::string ca_path;
};
absl::StatusOr<std::optional<ConsoleTlsIdentity>> ConsoleTls(Invocation& inv,
                                                             const std::string& ip) {
  auto manifest = host::LoadFleetManifest(FleetDir(inv));
  if (!manifest.ok() && ReasonOf(manifest.status()) == reason::kNoFleet) return std::nullopt;
  if (!manifest.ok()) return manifest.status();
  if (manifest->tls.empty()) return std::nullopt;
  HSMSIM_ASSIGN_OR_RETURN(host::TlsIdentity identity,
                          host::IssueConsoleCertificate(FleetDir(inv), manifest->tls, ip));
  return ConsoleTlsIdentity{
      console::ServerTls{std::move(identity.cert_pem), std::move(identity.key_pem)},
      (std::filesystem::path(FleetDir(inv)) / manifest->tls.ca).string()};
}

int RunConsole(Invocation& inv, const ConsoleFlags& flags) {
  // A server does not die of a peer that went away (Asio sends with
  // MSG_NOSIGNAL anyway), and the actions' children inherit the setting: a
  // rotation started from the page keeps going when the console ends and
  // its output pipes close.
  std::signal(SIGPIPE, SIG_IGN);
  auto address = console::ParseListenAddress(flags.listen, flags.allow_remote);
  if (!address.ok()) return Fail(inv, address.status());
  auto token = console::AccessToken::Generate();
  if (!token.ok()) return Fail(inv, token.status());
  auto tls = ConsoleTls(inv, address->ip);
  if (!tls.ok()) return Fail(inv, tls.status());
  const std::string url =
      StrCat(tls->has_value() ? "https://" : "http://", console::UrlHost(address->ip), ":");

  std::unique_ptr<console::FleetWatcher> watcher;
  std::unique_ptr<console::ConsoleServer> server;
  const console::ConsoleAssets& assets = console::EmbeddedConsoleAssets();
  console::ConsoleActions actions;
  // The actions run on the server's thread, the readings on the watcher's:
  // each has an Invocation of its own.
  actions.select_units = [action_inv = inv](const std::vector<std::string>& units, bool selected) {
    return UnitSelectReport(action_inv, units, selected);
  };
  // The signed actions are this hsmctl's own commands, run as children on
  // the same fleet (console_actions.h).
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  console::ActionRunner runner(
      ec ? std::string("/proc/self/exe") : self,
      {"--json", "--fleet", FleetDir(inv), "--timeout-ms", std::to_string(inv.timeout_ms)},
      [&watcher] {
        if (watcher) watcher->Refresh();
      });
  actions.start_action = [&runner](console::ActionCommand command) {
    return runner.Start(std::move(command));
  };
  actions.action_state = [&runner] { return runner.State(); };
  console::ConsoleApi api(
      *token, console::ComposePage(assets.index_html, assets.style, assets.script),
      [&watcher] { watcher->Refresh(); }, std::move(actions));
  // The first reading is taken before the URL is printed, so the page and
  // the API answer with the fleet from the first request on.
  FleetViews views(inv, runner);
  api.SetSnapshot(views.Read());
  auto listening = console::ConsoleServer::Listen(
      address->ip, address->port,
      [&api](const console::HttpRequest& request) { return api.Handle(request); },
      tls->has_value() ? &(*tls)->server : nullptr);
  if (tls->has_value())
    SecretBytes().swap((*tls)->server.key_pem);  // freed, wiped: the context has it
  if (!listening.ok()) return Fail(inv, listening.status());
  server = std::move(*listening);
  server->Publish(api.SnapshotEvent());
  watcher = std::make_unique<console::FleetWatcher>([&views] { return views.Read(); },
                                                    [&api, &server](json reading) {
                                                      if (api.SetSnapshot(std::move(reading)))
                                                        server->Publish(api.SnapshotEvent());
                                                    },
                                                    std::chrono::milliseconds(flags.poll_ms));
  watcher->Start();

  std::cout << url << server->port() << "/?token=" << token->text() << std::endl;
  std::cerr << "hsmctl console: serving fleet " << FleetDir(inv) << " on "
            << console::UrlHost(address->ip) << ":" << server->port()
            << (tls->has_value() ? StrCat(" over HTTPS, with a certificate of the fleet CA (",
                                          (*tls)->ca_path, ") for ", address->ip)
                                 : std::string())
            << " (open the URL above; Ctrl-C stops)" << std::endl;
  const int signal = server->Run();
  runner.Shutdown();
  watcher->Stop();
  std::cerr << "hsmctl console: stopped" << (signal != 0 ? StrCat(" by signal ", signal) : "")
            << std::endl;
  return kExitOk;
}

}  // namespace

void AddConsoleCommand(CLI::App& app, Invocation& inv) {
  auto flags = std::make_shared<ConsoleFlags>();
  CLI::App* cmd = app.add_subcommand(
      "console",
      "Serve a web console of the fleet (units, administrators, master keys, rotation, "
      "recovery), updated live; prints the URL to open, with its access token, and runs until "
      "Ctrl-C");
  cmd->add_option("--listen", flags->listen,
                  "ADDRESS:PORT to listen on: IPV4:PORT or [IPV6]:PORT, loopback unless "
                  "--allow-remote (port 0: any free port)")
      ->capture_default_str();
  cmd->add_flag("--allow-remote", flags->allow_remote,
                "Allow a --listen address other than loopback (without the fleet's TLS, plain "
                "HTTP: the token and the fleet's state cross the network in clear)");
  cmd->add_option("--poll-ms", flags->poll_ms,
                  "How often the fleet is read for changes (fleet.json, keystore, units)")
      ->capture_default_str()
      ->check(CLI::Range(100, 60'000));
  AddNamedUnitOptions(cmd, inv);
  cmd->callback([&inv, flags] { inv.action = [&inv, flags] { return RunConsole(inv, *flags); }; });
}

}  // namespace hsmsim::hsmctl

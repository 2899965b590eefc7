// hsmctl bench rotate: a full rotation of a SQLite keystore on a fresh
// fleet, with keys/s per phase and the peak RSS of hsmctl and of each unit.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/hex.h"
#include "common/reasons.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "crypto/ec_p521.h"
#include "crypto/entropy.h"
#include "crypto/key_part.h"
#include "crypto/verification_pattern.h"
#include "host/fleet_launcher.h"
#include "host/hsmctl/bench_baselines.h"
#include "host/hsmctl/keystore_support.h"
#include "host/internal/pq.h"
#include "host/key_creation.h"
#include "host/key_part_loading.h"
#include "host/signed_command.h"

namespace hsmsim::hsmctl {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct BenchFlags {
  int units = 3;
  int64_t keys = 100'000;
  std::string dir;
  std::string unit_binary;
  size_t batch_size = 2048;
  int in_flight = 4;
  bool keep = false;
  bool peer = false;        // also run the SoftHSMv2 peer benchmark
  std::string peer_binary;  // its program (default: next to hsmctl)
  std::string keystore;     // --keystore: an empty PostgreSQL database; "": SQLite in --dir
  int workers = 1;          // --workers: rotation workers (the lead and workers - 1 joined)
};

// PeakRssKib returns VmHWM of `pid` (kiB), or -1.
int64_t PeakRssKib(int pid) {
  std::ifstream in(StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

int64_t SelfPeakRssKib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// FillFromUnits stores `keys` new root keys named "key-N", which the units
// generate under their CURRENT master key, as keys create does (the same
// host::CreateKeys with the same host::KeyCreationSpec defaults). Returns the first unit or
// keystore error.
absl::Status FillFromUnits(std::vector<UnitConnection>& conns, host::Keystore& store,
                           int64_t keys) {
  host::KeyCreationSpec spec;
  spec.prefix = "key-";
  spec.count = keys;
  host::KeyCreationReport report;
  return host::CreateKeys(store, UnitPairs(conns), spec, report, nullptr, nullptr);
}

// LoadAndCommit loads `parts` into NEW on every unit and commits them.
absl::Status LoadAndCommit(std::vector<UnitConnection>& conns,
                           const std::vector<SecretBytes>& parts,
                           const std::vector<const host::AdminKey*>& signers,
                           std::string_view expected_vp) {
  for (UnitConnection& c : conns) {
    HSMSIM_ASSIGN_OR_RETURN(v1::GetInfoResponse info, c.client->GetInfo());
    HSMSIM_ASSIGN_OR_RETURN(info, host::LoadKeyPartsOnUnit(*c.client, info, parts, signers));
    HSMSIM_RETURN_IF_ERROR(host::CommitNewOnUnit(*c.client, info, expected_vp, signers).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> RandomKey(std::vector<SecretBytes>* parts) {
  SecretBytes key(crypto::kMasterKeySize, 0);
  for (int i = 0; i < 2; ++i) {
    SecretBytes p(crypto::kKeyPartSize);
    HSMSIM_RETURN_IF_ERROR(crypto::OpenSslEntropyInstance().Generate(absl::MakeSpan(p)));
    for (size_t b = 0; b < key.size(); ++b) key[b] ^= p[b];
    parts->push_back(std::move(p));
  }
  return key;
}

// What bench rotate measured.
struct BenchReport {
  double fill_seconds = 0;
  int64_t rss_after_fill_kib = 0;
  host::RotationReport rotation;
  double end_to_end_seconds = 0;
  json unit_peak_rss = json::array();  // {"unit", "pid", "peak_rss_kib"} per unit
  // The bare SQLite append limit of the same run (MeasureSqliteAppendLimit:
  // as many rows as keys, of the stored blobs' size, on the same disk).
  double append_rows_per_second = 0;
  size_t append_blob_bytes = 0;
  // The SoftHSMv2 peer of the same run (--peer), keys/s; 0: not run.
  double peer_keys_per_second = 0;
  std::vector<int64_t> joined_keys;  // keys each joined worker re-encrypted (--workers)
};

// RunCeremony installs one administrator with thresholds 1/1 on every unit
// and makes a first master key (from `first_parts`, VP `first_vp`) CURRENT.
absl::Status RunCeremony(std::vector<UnitConnection>& conns, const host::AdminKey& admin,
                         const std::vector<SecretBytes>& first_parts, std::string_view first_vp) {
  const std::vector<const host::AdminKey*> signers = {&admin};
  for (UnitConnection& c : conns) {
    v1::Command add;
    add.mutable_add_admin()->set_name(admin.name);
    add.mutable_add_admin()->set_public_key(admin.public_key_der);
    HSMSIM_RETURN_IF_ERROR(host::IssueCommand(*c.client, add, {}).status());
    v1::Command th;
    th.mutable_set_thresholds()->set_signature_threshold(1);
    th.mutable_set_thresholds()->set_revocation_threshold(1);
    HSMSIM_RETURN_IF_ERROR(host::IssueCommand(*c.client, th, signers).status());
  }
  HSMSIM_RETURN_IF_ERROR(LoadAndCommit(conns, first_parts, signers, first_vp));
  for (UnitConnection& c : conns) {
    v1::Command setimm;
    setimm.mutable_set_immediate();
    HSMSIM_RETURN_IF_ERROR(host::IssueCommand(*c.client, setimm, signers).status());
  }
  return absl::OkStatus();
}

// JoinedWorker: one more rotation worker in this process (bench rotate
// --workers), with connections of its own to every unit and the keystore.
struct JoinedWorker {
  std::vector<UnitConnection> conns;
  std::unique_ptr<host::Keystore> store;
  std::unique_ptr<host::RotationEngine> engine;
  host::RotationJournal journal;
  host::RotationReport report;
  absl::Status status = absl::OkStatus();
};

// PrepareJoinedWorkers makes f.workers - 1 joined workers of the rotation
// `journal` of `store`. Errors: KEYSTORE_NOT_SHARED (a SQLite keystore),
// the units' and the keystore's.
absl::StatusOr<std::vector<JoinedWorker>> PrepareJoinedWorkers(
    Invocation& inv, const BenchFlags& f, host::Keystore& store,
    const host::RotationJournal& journal) {
  std::vector<JoinedWorker> joined(static_cast<size_t>(std::max(f.workers - 1, 0)));
  if (!joined.empty()) HSMSIM_RETURN_IF_ERROR(store.OpenRewrapClaims().status());
  for (JoinedWorker& w : joined) {
    HSMSIM_ASSIGN_OR_RETURN(w.conns, ConnectSelected(inv));
    HSMSIM_ASSIGN_OR_RETURN(w.store, store.Reopen());
    std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> units;
    for (UnitConnection& c : w.conns) units.emplace_back(c.unit, c.client.get());
    host::RotationOptions options;
    options.batch_size = f.batch_size;
    options.in_flight_per_unit = f.in_flight;
    w.engine = std::make_unique<host::RotationEngine>(
        *w.store, std::move(units), std::vector<const host::AdminKey*>{}, options);
    w.journal = journal;
  }
  return joined;
}

// TimeRotation journals a rotation from `source_vp` to `target_vp` and runs
// it to the end, filling the report's rotation figures and end-to-end time.
absl::Status TimeRotation(Invocation& inv, const BenchFlags& f, std::vector<UnitConnection>& conns,
                          host::Keystore& store, const host::AdminKey& admin, std::string source_vp,
                          std::string target_vp, BenchReport& report) {
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<host::RotationLock> lock,
                          store.LockRotation(host::RotationLockHolder::Self("bench rotate")));
  host::RotationJournal journal;
  journal.source_vp = std::move(source_vp);
  journal.target_vp = std::move(target_vp);
  journal.keys_total = f.keys;
  HSMSIM_RETURN_IF_ERROR(store.WriteJournal(journal));
  HSMSIM_ASSIGN_OR_RETURN(std::optional<host::RotationJournal> written, store.ReadJournal());
  journal = written.value_or(journal);  // with its start, which names the rotation
  std::vector<std::pair<host::FleetUnit, host::UnitChannel*>> units;
  for (UnitConnection& c : conns) units.emplace_back(c.unit, c.client.get());
  ProgressPrinter progress(inv.json);
  host::RotationOptions options;
  options.batch_size = f.batch_size;
  options.in_flight_per_unit = f.in_flight;
  options.progress = [&progress](const host::RotationProgress& p) { progress.Update(p); };
  host::RotationEngine engine(store, std::move(units), {&admin}, options);
  HSMSIM_ASSIGN_OR_RETURN(std::vector<JoinedWorker> joined,
                          PrepareJoinedWorkers(inv, f, store, journal));
  const auto rotate_start = Clock::now();
  std::vector<std::thread> threads;
  for (JoinedWorker& w : joined) {
    threads.emplace_back([&w] { w.status = w.engine->Join(w.journal, w.report); });
  }
  absl::Status ran = engine.Run(journal, report.rotation);
  for (std::thread& t : threads) t.join();
  progress.Finish();
  report.end_to_end_seconds = Seconds(rotate_start);
  for (const JoinedWorker& w : joined) {
    report.joined_keys.push_back(w.report.keys_rewrapped);
    if (ran.ok() && !w.status.ok()) ran = WithContext(w.status, "a joined worker");
  }
  return ran;
}

// MeasureBaselines measures, after the rotation and on the same disk, the
// bare SQLite append limit for as many rows as keys of the stored blobs'
// size, and with --peer the SoftHSMv2 peer.
absl::Status MeasureBaselines(const BenchFlags& f, host::Keystore& store, const std::string& dir,
                              const std::function<void(const std::string&)>& log,
                              BenchReport& report) {
  HSMSIM_ASSIGN_OR_RETURN(std::vector<host::StoredKey> first, store.ReadPage(0, 1));
  report.append_blob_bytes = first.empty() ? 108 : first.front().blob.size();
  log(StrCat("measuring the SQLite append limit: ", f.keys, " row(s) of ", report.append_blob_bytes,
             " bytes"));
  HSMSIM_ASSIGN_OR_RETURN(report.append_rows_per_second,
                          MeasureSqliteAppendLimit(dir, f.keys, report.append_blob_bytes));
  if (f.peer) {
    log("running the SoftHSMv2 peer benchmark");
    HSMSIM_ASSIGN_OR_RETURN(report.peer_keys_per_second, RunSoftHsmPeer(f.peer_binary));
  }
  return absl::OkStatus();
}

// BenchOnFleet runs the benchmark on the launched fleet of `manifest`:
// ceremony, keystore fill, a second key loaded, the timed rotation.
absl::StatusOr<BenchReport> BenchOnFleet(Invocation& inv, const BenchFlags& f,
                                         const host::FleetManifest& manifest,
                                         const std::function<void(const std::string&)>& log) {
  BenchReport report;
  HSMSIM_ASSIGN_OR_RETURN(std::vector<UnitConnection> conns, ConnectSelected(inv));
  HSMSIM_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr admin_pkey,
                          crypto::GenerateP521(crypto::OpenSslEntropyInstance()));
  HSMSIM_ASSIGN_OR_RETURN(host::AdminKey admin, host::MakeAdminKey("bench", std::move(admin_pkey)));
  std::vector<SecretBytes> first_parts, next_parts;
  HSMSIM_ASSIGN_OR_RETURN(SecretBytes first, RandomKey(&first_parts));
  const std::string first_vp = crypto::AsString(crypto::ComputeVerificationPattern(first));
  HSMSIM_RETURN_IF_ERROR(RunCeremony(conns, admin, first_parts, first_vp));
  // Key storage: K root keys generated by the units under the first
  // master key, in GenerateKeys batches spread over every unit.
  const auto fill_start = Clock::now();
  HSMSIM_ASSIGN_OR_RETURN(auto store, OpenKeystore(inv, manifest, true));
  HSMSIM_RETURN_IF_ERROR(FillFromUnits(conns, *store, f.keys));
  report.fill_seconds = Seconds(fill_start);
  report.rss_after_fill_kib = SelfPeakRssKib();
  log(StrCat(f.keys, " key(s) stored in ", report.fill_seconds, " s"));

  HSMSIM_ASSIGN_OR_RETURN(SecretBytes next, RandomKey(&next_parts));
  const std::string next_vp = crypto::AsString(crypto::ComputeVerificationPattern(next));
  HSMSIM_RETURN_IF_ERROR(LoadAndCommit(conns, next_parts, {&admin}, next_vp));
  HSMSIM_RETURN_IF_ERROR(TimeRotation(inv, f, conns, *store, admin, first_vp, next_vp, report));
  for (const host::FleetUnit& u : manifest.units) {
    report.unit_peak_rss.push_back(
        {{"unit", u.name}, {"pid", u.pid}, {"peak_rss_kib", PeakRssKib(u.pid)}});
  }
  // On the fleet directory's disk (the keystore's, unless it is PostgreSQL).
  HSMSIM_RETURN_IF_ERROR(MeasureBaselines(f, *store, FleetDir(inv), log, report));
  return report;
}

// RenderBench prints the report as text or JSON.
void RenderBench(const Invocation& inv, const BenchFlags& f, const BenchReport& r) {
  const double keys = static_cast<double>(f.keys);
  const double reencrypt_kps = keys / std::max(r.rotation.reencrypt_seconds, 1e-9);
  const double finalize_kps = keys / std::max(r.rotation.finalize_seconds, 1e-9);
  const double end_to_end_kps = keys / std::max(r.end_to_end_seconds, 1e-9);
  if (inv.json) {
    json doc{{"command", "bench rotate"},
             {"ok", true},
             {"units", f.units},
             {"keys", f.keys},
             {"keystore", host::internal::IsPostgresUrl(f.keystore) ? "postgresql" : "sqlite"},
             {"batch_size", f.batch_size},
             {"in_flight_per_unit", f.in_flight},
             {"workers", f.workers},
             {"keys_per_joined_worker", r.joined_keys},
             {"fill_seconds", r.fill_seconds},
             {"reencrypt_seconds", r.rotation.reencrypt_seconds},
             {"reencrypt_keys_per_second", reencrypt_kps},
             {"promote_seconds", r.rotation.promote_seconds},
             {"finalize_seconds", r.rotation.finalize_seconds},
             {"finalize_keys_per_second", finalize_kps},
             {"end_to_end_seconds", r.end_to_end_seconds},
             {"end_to_end_keys_per_second", end_to_end_kps},
             {"hsmctl_peak_rss_kib", SelfPeakRssKib()},
             {"hsmctl_peak_rss_kib_after_fill", r.rss_after_fill_kib},
             {"unit_peak_rss", r.unit_peak_rss},
             {"sqlite_append_rows_per_second", r.append_rows_per_second},
             {"sqlite_append_blob_bytes", r.append_blob_bytes},
             {"sqlite_append_transaction_rows", kAppendTransactionRows},
             {"end_to_end_vs_sqlite_append", end_to_end_kps / r.append_rows_per_second}};
    if (f.peer) {
      doc["peer_keys_per_second"] = r.peer_keys_per_second;
      doc["end_to_end_vs_peer"] = end_to_end_kps / r.peer_keys_per_second;
    }
    std::cout << doc.dump(2) << "\n";
    return;
  }
  std::cout << "bench rotate: " << f.units << " unit(s), " << f.keys << " key(s), batch "
            << f.batch_size << " x " << f.in_flight << " in flight per unit\n";
  std::cout << "  re-encrypt : " << r.rotation.reencrypt_seconds << " s, "
            << static_cast<int64_t>(reencrypt_kps) << " keys/s\n";
  std::cout << "  promote    : " << r.rotation.promote_seconds << " s\n";
  std::cout << "  finalize   : " << r.rotation.finalize_seconds << " s, "
            << static_cast<int64_t>(finalize_kps) << " keys/s\n";
  std::cout << "  end to end : " << r.end_to_end_seconds << " s, "
            << static_cast<int64_t>(end_to_end_kps) << " keys/s\n";
  std::cout << "  SQLite append limit (same disk, " << r.append_blob_bytes
            << "-byte rows): " << static_cast<int64_t>(r.append_rows_per_second)
            << " rows/s; end to end = " << end_to_end_kps / r.append_rows_per_second << " x that\n";
  if (f.peer) {
    std::cout << "  SoftHSMv2 peer: " << static_cast<int64_t>(r.peer_keys_per_second)
              << " keys/s; end to end = " << end_to_end_kps / r.peer_keys_per_second << " x that\n";
  }
  std::cout << "  peak RSS   : hsmctl " << SelfPeakRssKib() / 1024 << " MiB";
  for (const json& u : r.unit_peak_rss) {
    std::cout << ", " << u["unit"].get<std::string>() << " "
              << u["peak_rss_kib"].get<int64_t>() / 1024 << " MiB";
  }
  std::cout << "\n";
}

// UseEmptyKeystore makes `location` the bench fleet's keystore: it must
// hold no key (the benchmark fills it), FAILED_PRECONDITION
// (KEYSTORE_NOT_EMPTY) otherwise; the checks of keys set-keystore apply.
absl::Status UseEmptyKeystore(const std::string& dir, const std::string& location,
                              host::FleetManifest& manifest) {
  HSMSIM_RETURN_IF_ERROR(CheckKeystoreLocation(location));
  HSMSIM_ASSIGN_OR_RETURN(std::unique_ptr<host::Keystore> store,
                          host::OpenKeystore(location, true));
  HSMSIM_ASSIGN_OR_RETURN(int64_t keys, store->CountKeys());
  if (keys != 0) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kKeystoreNotEmpty,
        StrCat("bench rotate fills a keystore of its own: ", ShownKeystoreLocation(location),
               " holds ", keys, " key(s); give an empty database"));
  }
  manifest.keystore = StoredKeystoreLocation(location);
  return host::SaveFleetManifest(dir, manifest);
}

int RunBenchRotate(Invocation& inv, const BenchFlags& f) {
  const bool own_dir = f.dir.empty();
  std::string dir = f.dir;
  if (own_dir) {
    std::string tmpl = (fs::temp_directory_path() / "hsmsim-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Fail(inv, Error(absl::StatusCode::kInternal, reason::kFileWriteFailed,
                             "cannot create a temporary directory"));
    }
    dir = tmpl;
  }
  inv.fleet_flag = dir;
  auto log = [&](const std::string& line) {
    if (!inv.json) std::cerr << "bench: " << line << "\n";
  };
  host::FleetLaunchOptions launch;
  launch.fleet_dir = dir;
  launch.units = f.units;
  launch.instance = "bench";
  launch.unit_binary = f.unit_binary;
  auto manifest = host::LaunchFleet(launch);
  if (!manifest.ok()) return Fail(inv, manifest.status());
  struct Cleanup {
    host::FleetManifest* m;
    std::string dir;
    bool remove;
    ~Cleanup() {
      for (const host::FleetUnit& u : m->units) host::StopProcess(u.pid, std::chrono::seconds(10));
      std::error_code ec;
      if (remove) fs::remove_all(dir, ec);
    }
  } cleanup{&*manifest, dir, own_dir && !f.keep};
  log(StrCat(f.units, " unit(s) up in ", dir));
  if (!f.keystore.empty()) {
    if (absl::Status ok = UseEmptyKeystore(dir, f.keystore, *manifest); !ok.ok()) {
      return Fail(inv, ok);
    }
    log(StrCat("keystore ", ShownKeystoreLocation(f.keystore)));
  }
  auto report = BenchOnFleet(inv, f, *manifest, log);
  if (!report.ok()) return Fail(inv, report.status());
  RenderBench(inv, f, *report);
  return kExitOk;
}

}  // namespace

void AddBenchCommands(CLI::App& app, Invocation& inv) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto f = std::make_shared<BenchFlags>();
  CLI::App* rotate = bench->add_subcommand(
      "rotate",
      "Launch a fresh fleet, fill a SQLite keystore, rotate the master key end to end and report "
      "keys/s per phase and peak RSS of hsmctl and of each unit; the fleet is stopped after");
  rotate->add_option("--units", f->units, "Units in the fleet")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  rotate->add_option("--keys", f->keys, "Keys in the keystore")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}));
  rotate->add_option("--dir", f->dir,
                     "Directory for the fleet and keystore (default: a new "
                     "temporary directory, removed after)");
  rotate->add_option("--unit-binary", f->unit_binary, "hsmsim-unit to run (default as fleet up)");
  rotate->add_option("--batch-size", f->batch_size, "Blobs per re-encryption batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  rotate->add_option("--in-flight", f->in_flight, "Batches in flight per unit")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  rotate->add_flag("--keep", f->keep, "Keep the temporary directory");
  rotate->add_flag("--peer", f->peer,
                   "Also run the SoftHSMv2 peer benchmark (bench/softhsm_peer_bench) in the same "
                   "run and report end to end as a ratio of it");
  rotate->add_option("--peer-binary", f->peer_binary,
                     "The peer benchmark program (default: ../bench/softhsm_peer_bench next to "
                     "hsmctl)");
  rotate
      ->add_option("--workers", f->workers,
                   "Rotation workers: the lead and WORKERS - 1 joined ones (as mk rotate "
                   "--join), each with its own connections (needs --keystore)")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  rotate->add_option("--keystore", f->keystore,
                     "Rotate a keystore in this empty PostgreSQL database "
                     "(postgresql://USER@HOST:PORT/DB, password from PGPASSFILE, ~/.pgpass or "
                     "PGPASSWORD) instead of a SQLite file in --dir");
  AddJsonOption(rotate, inv);
  rotate->callback([&inv, f] { inv.action = [&inv, f] { return RunBenchRotate(inv, *f); }; });
}

}  // namespace hsmsim::hsmctl

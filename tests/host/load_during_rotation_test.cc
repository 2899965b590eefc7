// A KMS workload during a master key rotation: 32 connections (UnitClient,
// spread over the 3 units) wrap and unwrap data keys continuously with the
// stored root keys while `hsmctl mk rotate` runs in a child process. Only
// the errors docs/protocol.md allows may happen (a blob under NEW or an unknown
// WKID while a unit switches, which the client retries with the other
// blob); no authentication failure, no INTERNAL, no transport error, and no
// lost data key: every unwrap returns the bytes that were wrapped, whichever
// blob (old or re-encrypted) wrapped and unwrapped them.
//
// The clients read the blobs from the keystore like a KMS does (a refresher
// thread re-reads the hot keys and the journal every 10 ms). Three client
// policies, to cover what KMS implementations do:
// - "unit-aware" (16 connections): the blob under CURRENT until the unit
//   answers blob_under_old (it was promoted), then the pending blob when the
//   key has one;
// - "journal" (8): the pending blob once the journal says PROMOTING or later
//   (a KMS that follows the rotation, not each unit);
// - "eager" (8): the pending blob whenever the key has one.
// Each falls back to the other blob on BLOB_UNDER_NEW / UNKNOWN_WKID.
//
// Bounded: 60 s at most, 100,000 operations per connection at most.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "common/status.h"
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

constexpr int kKeys = 30'000;
constexpr int kHotKeys = 256;
constexpr int kConnections = 32;
constexpr int64_t kMaxOpsPerConnection = 100'000;
constexpr auto kMaxLoad = std::chrono::seconds(60);
constexpr auto kBeforeAndAfter = std::chrono::milliseconds(1000);

using Clock = std::chrono::steady_clock;

enum class Policy { kUnitAware, kJournal, kEager };

std::string_view PolicyName(Policy p) {
  switch (p) {
    case Policy::kUnitAware:
      return "unit-aware";
    case Policy::kJournal:
      return "journal";
    case Policy::kEager:
      return "eager";
  }
  return "?";
}

// What the KMS knows of one key: its blob and, during a rotation, the
// re-encrypted (pending) blob.
struct KeyRow {
  std::string blob;
  std::string pending_blob;
};

struct Snapshot {
  std::vector<KeyRow> rows;
  std::string phase = "NONE";
};

struct Counters {
  int64_t wraps = 0;
  int64_t unwraps = 0;
  int64_t retries = 0;                    // a second blob tried after an allowed error
  int64_t under_old = 0;                  // answered with blob_under_old
  int64_t lost = 0;                       // an unwrap returned other bytes
  int64_t unrecovered = 0;                // an operation that failed with every blob
  int64_t final_unwraps = 0;              // kept data keys unwrapped after the rotation
  std::map<std::string, int64_t> errors;  // reason -> count
  std::map<std::string, int64_t> ops_by_phase;
  std::map<int, int64_t> ops_by_stage;  // 0 before, 1 during, 2 after the rotation

  void Add(const Counters& o) {
    wraps += o.wraps;
    unwraps += o.unwraps;
    retries += o.retries;
    under_old += o.under_old;
    lost += o.lost;
    unrecovered += o.unrecovered;
    final_unwraps += o.final_unwraps;
    for (const auto& [k, v] : o.errors) errors[k] += v;
    for (const auto& [k, v] : o.ops_by_phase) ops_by_phase[k] += v;
    for (const auto& [k, v] : o.ops_by_stage) ops_by_stage[k] += v;
  }
};

struct Wrapped {
  int key = 0;
  std::string plain;
  std::string wrapped;
};

class LoadDuringRotationTest : public RotationFixture {};

TEST_F(LoadDuringRotationTest, ThirtyTwoConnectionsWrapAndUnwrapWhileHsmctlRotates) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(kKeys));
  const FleetManifest manifest = Manifest();
  ASSERT_EQ(manifest.units.size(), 3u);

  // The refresher: re-reads the hot keys and the journal, as a KMS would.
  std::mutex mu;
  Snapshot snapshot;  // guarded by mu
  std::vector<std::string> phases_seen;
  std::atomic<bool> stop_refresher{false};
  std::atomic<bool> stop_load{false};
  std::atomic<int> stage{0};
  std::string refresher_error;
  auto refresh = [&](Keystore& store) -> absl::Status {
    HSMSIM_ASSIGN_OR_RETURN(auto page, store.ReadPage(0, kHotKeys));
    HSMSIM_ASSIGN_OR_RETURN(auto journal, store.ReadJournal());
    Snapshot s;
    for (StoredKey& k : page)
      s.rows.push_back(KeyRow{std::move(k.blob), std::move(k.pending_blob)});
    s.phase = journal.has_value() ? std::string(RotationPhaseName(journal->phase)) : "NONE";
    std::lock_guard<std::mutex> lock(mu);
    if (phases_seen.empty() || phases_seen.back() != s.phase) phases_seen.push_back(s.phase);
    snapshot = std::move(s);
    return absl::OkStatus();
  };
  auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", false);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(refresh(**store).ok());
  ASSERT_EQ(snapshot.rows.size(), static_cast<size_t>(kHotKeys));
  std::thread refresher([&] {
    while (!stop_refresher) {
      if (absl::Status st = refresh(**store); !st.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        refresher_error = std::string(st.message());
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  std::vector<Counters> counters(kConnections);
  std::vector<Policy> policies(kConnections);
  std::vector<std::string> setup_errors(kConnections);
  auto worker = [&](int index) {
    Counters& c = counters[index];
    const Policy policy = index % 4 < 2    ? Policy::kUnitAware
                          : index % 4 == 2 ? Policy::kJournal
                                           : Policy::kEager;
    policies[index] = policy;
    const FleetUnit& unit = manifest.units[index % 3];
    auto client = UnitClient::Create(unit.name, unit.endpoint);
    if (!client.ok()) {
      setup_errors[index] = std::string(client.status().message());
      return;
    }
    std::mt19937_64 rng(1000 + index);
    bool unit_promoted = false;  // unit-aware: learnt from blob_under_old
    std::vector<Wrapped> kept;   // never evicted: unwrapped after the rotation
    std::vector<Wrapped> ring;   // recent ones, unwrapped during the load
    // Call runs `make(blob)` with the blob the policy picks first, then the
    // other one after an allowed error. Returns the response, or nullopt.
    auto call = [&](int key, auto make) -> std::optional<v1::Response> {
      KeyRow row;
      std::string phase;
      {
        std::lock_guard<std::mutex> lock(mu);
        row = snapshot.rows[key];
        phase = snapshot.phase;
      }
      bool pending_first = false;
      if (!row.pending_blob.empty()) {
        switch (policy) {
          case Policy::kUnitAware:
            pending_first = unit_promoted;
            break;
          case Policy::kJournal:
            pending_first = phase == "PROMOTING" || phase == "FINALIZING";
            break;
          case Policy::kEager:
            pending_first = true;
            break;
        }
      }
      std::vector<const std::string*> blobs = {&row.blob};
      if (!row.pending_blob.empty()) blobs.push_back(&row.pending_blob);
      if (pending_first) std::swap(blobs[0], blobs[1]);
      ++c.ops_by_phase[phase];
      ++c.ops_by_stage[stage.load()];
      for (size_t i = 0; i < blobs.size(); ++i) {
        if (i > 0) ++c.retries;
        auto r = (*client)->Call(make(*blobs[i]));
        if (!r.ok()) {
          ++c.errors[std::string(ReasonOf(r.status()))];
          break;  // a transport error: never allowed here
        }
        if (r->status().code() == 0) return *r;
        ++c.errors[r->status().reason()];
        if (r->status().reason() != "BLOB_UNDER_NEW" && r->status().reason() != "UNKNOWN_WKID") {
          break;
        }
      }
      ++c.unrecovered;
      return std::nullopt;
    };
    auto unwrap = [&](const Wrapped& w) {
      auto r = call(w.key, [&](const std::string& blob) {
        v1::Request req;
        req.mutable_unwrap_key()->set_blob(blob);
        req.mutable_unwrap_key()->set_wrapped(w.wrapped);
        return req;
      });
      if (!r.has_value()) return;
      ++c.unwraps;
      if (r->unwrap_key().blob_under_old()) {
        ++c.under_old;
        unit_promoted = true;
      }
      if (r->unwrap_key().plaintext() != w.plain) ++c.lost;
    };
    for (int64_t n = 0; n < kMaxOpsPerConnection && !stop_load; n += 2) {
      Wrapped w;
      w.key = static_cast<int>(rng() % kHotKeys);
      w.plain.resize(32);
      for (char& ch : w.plain) ch = static_cast<char>(rng());
      auto r = call(w.key, [&](const std::string& blob) {
        v1::Request req;
        req.mutable_wrap_key()->set_blob(blob);
        req.mutable_wrap_key()->set_plaintext(w.plain);
        return req;
      });
      if (r.has_value()) {
        ++c.wraps;
        if (r->wrap_key().blob_under_old()) {
          ++c.under_old;
          unit_promoted = true;
        }
        w.wrapped = r->wrap_key().wrapped();
        if (kept.size() < 16) {
          kept.push_back(w);
        } else if (ring.size() < 64) {
          ring.push_back(std::move(w));
        } else {
          ring[rng() % ring.size()] = std::move(w);
        }
      }
      if (!ring.empty()) unwrap(ring[rng() % ring.size()]);
    }
    // After the rotation: every data key wrapped along the way still
    // unwraps, with the blobs the keystore holds now.
    while (stage.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (const auto* list : {&kept, &ring}) {
      for (const Wrapped& w : *list) {
        const int64_t before = c.unwraps;
        unwrap(w);
        c.final_unwraps += c.unwraps - before;
      }
    }
  };

  const auto load_start = Clock::now();
  std::vector<std::thread> workers;
  for (int i = 0; i < kConnections; ++i) workers.emplace_back(worker, i);
  std::this_thread::sleep_for(kBeforeAndAfter);

  // The rotation, in a child process.
  stage = 1;
  const auto rotation_start = Clock::now();
  RunResult rotation;
  std::atomic<bool> rotation_done{false};
  std::thread rotator([&] {
    rotation = Hsmctl({"mk", "rotate", "--sign", sign_, "--batch-size", "200", "--json"});
    rotation_done = true;
  });
  while (!rotation_done && Clock::now() - load_start < kMaxLoad) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  rotator.join();  // hsmctl has its own timeouts; it ends
  const double rotation_seconds =
      std::chrono::duration<double>(Clock::now() - rotation_start).count();
  stage = 2;
  std::this_thread::sleep_for(kBeforeAndAfter);
  stop_load = true;
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  for (std::thread& t : workers) t.join();
  stop_refresher = true;
  refresher.join();

  ASSERT_EQ(rotation.exit_code, 0) << Describe(rotation);
  for (const std::string& e : setup_errors) ASSERT_EQ(e, "");
  EXPECT_EQ(refresher_error, "");

  Counters total;
  std::map<std::string, Counters> by_policy;
  for (int i = 0; i < kConnections; ++i) {
    total.Add(counters[i]);
    by_policy[std::string(PolicyName(policies[i]))].Add(counters[i]);
  }
  const int64_t ops = total.wraps + total.unwraps;
  std::ostringstream report;
  report << std::fixed << std::setprecision(0);
  report << "LOAD connections=" << kConnections << " keys=" << kKeys << " hot_keys=" << kHotKeys
         << " load_seconds=" << std::setprecision(1) << load_seconds
         << " rotation_seconds=" << rotation_seconds << std::setprecision(0) << "\n";
  report << "LOAD operations=" << ops << " wraps=" << total.wraps << " unwraps=" << total.unwraps
         << " ops_per_second=" << static_cast<double>(ops) / load_seconds
         << " final_unwraps=" << total.final_unwraps << " under_old=" << total.under_old
         << " retries=" << total.retries << " unrecovered=" << total.unrecovered
         << " lost_data_keys=" << total.lost << "\n";
  report << "LOAD ops by stage: before=" << total.ops_by_stage[0]
         << " during=" << total.ops_by_stage[1] << " after=" << total.ops_by_stage[2]
         << " (during: " << static_cast<double>(total.ops_by_stage[1]) / rotation_seconds
         << " ops/s)\n";
  report << "LOAD ops by journal phase:";
  for (const auto& [phase, n] : total.ops_by_phase) report << " " << phase << "=" << n;
  report << "\nLOAD phases seen:";
  for (const std::string& p : phases_seen) report << " " << p;
  report << "\nLOAD errors by reason:";
  if (total.errors.empty()) report << " none";
  for (const auto& [reason, n] : total.errors) report << " " << reason << "=" << n;
  report << "\n";
  for (const auto& [name, pc] : by_policy) {
    report << "LOAD policy " << name << ": ops=" << pc.wraps + pc.unwraps
           << " retries=" << pc.retries << " errors:";
    if (pc.errors.empty()) report << " none";
    for (const auto& [reason, n] : pc.errors) report << " " << reason << "=" << n;
    report << "\n";
  }
  auto rot = json::parse(rotation.out, nullptr, false);
  if (!rot.is_discarded()) {
    report << "LOAD rotation: keys_rewrapped=" << rot.value("keys_rewrapped", 0)
           << " reencrypt_keys_per_second=" << rot.value("reencrypt_keys_per_second", 0.0)
           << " promoted_units=" << rot["promoted_units"].dump() << "\n";
  }
  std::cout << report.str();
  RecordProperty("operations", std::to_string(ops));
  RecordProperty("ops_per_second", std::to_string(static_cast<double>(ops) / load_seconds));
  RecordProperty("ops_during_rotation", std::to_string(total.ops_by_stage[1]));
  std::string errors;
  for (const auto& [reason, n] : total.errors) errors += StrCat(reason, "=", n, " ");
  RecordProperty("errors", errors);

  // Only the errors a switching unit may give, each recovered by the other blob.
  for (const auto& [reason, n] : total.errors) {
    EXPECT_TRUE(reason == "BLOB_UNDER_NEW" || reason == "UNKNOWN_WKID")
        << n << " error(s) " << reason << " are not allowed during a rotation";
  }
  EXPECT_EQ(total.unrecovered, 0);
  EXPECT_EQ(total.lost, 0) << "a data key unwrapped to other bytes";
  // The load really overlapped the rotation, and every kept data key was
  // unwrapped afterwards.
  EXPECT_GT(total.ops_by_stage[1], 1000);
  EXPECT_GT(total.ops_by_phase["REENCRYPTING"], 0);
  EXPECT_EQ(total.final_unwraps, [&] {
    int64_t n = 0;
    for (int i = 0; i < kConnections; ++i) n += std::min<int64_t>(counters[i].wraps, 16 + 64);
    return n;
  }());

  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());
}

}  // namespace
}  // namespace hsmsim::host

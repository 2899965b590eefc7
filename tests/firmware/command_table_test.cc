// The command table: every administrative command in every NEW/CURRENT/OLD
// register state and mode. A legal command must give exactly the new state
// the model below predicts; an illegal one must give the exact code and
// reason and leave the snapshot byte-for-byte unchanged.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/hex.h"
#include "firmware/crypto_unit.h"
#include "proto/wire/enum_names.h"
#include "tests/firmware/test_support.h"

namespace hsmsim::firmware {
namespace {

using testing::AddAdminCommand;
using testing::CommitCommand;
using testing::LoadCommand;
using testing::Part;
using testing::Send;
using testing::TestAdmin;
using testing::ThresholdsCommand;
using testing::Xor;

enum class Cmd {
  kAddAdmin,
  kRemoveAdmin,
  kSetThresholds,
  kZeroize,
  kAssignInstance,
  kGenerateImporter,
  kLoadKeyParts,
  kCommit,
  kSetImmediate,
  kClearNew,
  kClearCurrent,
  kClearOld,
};
constexpr Cmd kAllCmds[] = {Cmd::kAddAdmin,     Cmd::kRemoveAdmin,    Cmd::kSetThresholds,
                            Cmd::kZeroize,      Cmd::kAssignInstance, Cmd::kGenerateImporter,
                            Cmd::kLoadKeyParts, Cmd::kCommit,         Cmd::kSetImmediate,
                            Cmd::kClearNew,     Cmd::kClearCurrent,   Cmd::kClearOld};

std::string CmdName(Cmd c) {
  switch (c) {
    case Cmd::kAddAdmin:
      return "AddAdmin";
    case Cmd::kRemoveAdmin:
      return "RemoveAdmin";
    case Cmd::kSetThresholds:
      return "SetThresholds";
    case Cmd::kZeroize:
      return "Zeroize";
    case Cmd::kAssignInstance:
      return "AssignInstance";
    case Cmd::kGenerateImporter:
      return "GenerateImporter";
    case Cmd::kLoadKeyParts:
      return "LoadKeyParts";
    case Cmd::kCommit:
      return "Commit";
    case Cmd::kSetImmediate:
      return "SetImmediate";
    case Cmd::kClearNew:
      return "ClearNew";
    case Cmd::kClearCurrent:
      return "ClearCurrent";
    case Cmd::kClearOld:
      return "ClearOld";
  }
  return "?";
}

// A register in the model: its state and which test key it holds ("" none).
struct Reg {
  v1::RegisterState state = v1::REGISTER_EMPTY;
  std::string key;  // "K1", "K2", "K3" or ""
  uint32_t parts_loaded = 0;
};

struct Model {
  v1::Mode mode = v1::MODE_IMPRINT;
  Reg n, c, o;
  int admins = 3;
  uint32_t sig = 0, rev = 0;
  std::string instance;
};

struct Row {
  Model base;
  Cmd cmd;
};

// StateName spells a register state in CamelCase for test names.
std::string StateName(v1::RegisterState state) {
  switch (state) {
    case v1::REGISTER_EMPTY:
      return "Empty";
    case v1::REGISTER_PARTIALLY_LOADED:
      return "PartiallyLoaded";
    case v1::REGISTER_FULL_UNCOMMITTED:
      return "FullUncommitted";
    case v1::REGISTER_FULL_COMMITTED:
      return "FullCommitted";
    case v1::REGISTER_VALID:
      return "Valid";
    default:
      return "Unknown";
  }
}

// ModelName names a base state, e.g. "Normal_NewFullCommitted_CurrentValid_OldEmpty".
std::string ModelName(const Model& m) {
  return std::string(m.mode == v1::MODE_IMPRINT ? "Imprint" : "Normal") + "_New" +
         StateName(m.n.state) + "_Current" + StateName(m.c.state) + "_Old" + StateName(m.o.state);
}

// RowName is the test name of a row: the command, then the base state, e.g.
// "SetImmediate_Normal_NewFullCommitted_CurrentValid_OldEmpty".
std::string RowName(const Row& r) { return CmdName(r.cmd) + "_" + ModelName(r.base); }

// The test world: deterministic entropy, four administrators and the keys.
struct World {
  crypto::SeededEntropy entropy{20261127};
  TestAdmin a = testing::MakeAdmin("alice", entropy);
  TestAdmin b = testing::MakeAdmin("bob", entropy);
  TestAdmin carol = testing::MakeAdmin("carol", entropy);
  TestAdmin d = testing::MakeAdmin("dave", entropy);
  std::vector<SecretBytes> k1{Part(1), Part(2)};
  std::vector<SecretBytes> k2{Part(3), Part(4)};
  std::vector<SecretBytes> k3{Part(5), Part(6)};
  SecretBytes partial = Part(7);
  SecretBytes extra = Part(8);
  std::map<std::string, SecretBytes> snapshots;

  std::vector<const TestAdmin*> all() const { return {&a, &b, &carol}; }

  SecretBytes Key(const std::string& name) const {
    if (name == "K1") return Xor(k1);
    if (name == "K2") return Xor(k2);
    return Xor(k3);
  }

  void Must(CryptoUnit& unit, const v1::Command& command,
            std::optional<std::vector<const TestAdmin*>> signers = std::nullopt) {
    absl::Status s = Send(unit, command, signers.value_or(all()));
    HSMSIM_CHECK(s.ok());
  }

  void LoadCommitPromote(CryptoUnit& unit, const std::vector<SecretBytes>& parts) {
    Must(unit, LoadCommand(unit, parts, 2, entropy));
    Must(unit, CommitCommand(Xor(parts)));
    Must(unit, testing::Op([](v1::Command& c) { c.mutable_set_immediate(); }));
  }

  // BaseSnapshot builds (once) a unit in the base state of `m`.
  const SecretBytes& BaseSnapshot(const Model& m) {
    std::string id = ModelName(m);
    auto it = snapshots.find(id);
    if (it != snapshots.end()) return it->second;
    auto created = CryptoUnit::Create(entropy);
    HSMSIM_CHECK(created.ok());
    CryptoUnit& unit = **created;
    for (const TestAdmin* admin : all())
      Must(unit, AddAdminCommand(*admin), std::vector<const TestAdmin*>{});
    if (m.mode == v1::MODE_NORMAL) {
      Must(unit, ThresholdsCommand(2, 2));
      Must(unit, testing::Op([](v1::Command& c) { c.mutable_generate_importer(); }));
      if (m.o.state == v1::REGISTER_VALID) {
        LoadCommitPromote(unit, k1);
        LoadCommitPromote(unit, k2);
        if (m.c.state == v1::REGISTER_EMPTY) {
          Must(unit, testing::Op([](v1::Command& c) { c.mutable_clear_current_master_key(); }));
        }
      } else if (m.c.state == v1::REGISTER_VALID) {
        LoadCommitPromote(unit, k1);
      }
      switch (m.n.state) {
        case v1::REGISTER_PARTIALLY_LOADED:
          Must(unit, LoadCommand(unit, {partial}, 3, entropy));
          break;
        case v1::REGISTER_FULL_UNCOMMITTED:
          Must(unit, LoadCommand(unit, k3, 2, entropy));
          break;
        case v1::REGISTER_FULL_COMMITTED:
          Must(unit, LoadCommand(unit, k3, 2, entropy));
          Must(unit, CommitCommand(Xor(k3)));
          break;
        default:
          break;
      }
    }
    return snapshots.emplace(id, unit.Snapshot()).first->second;
  }
};

World& TheWorld() {
  static World* world = new World();
  return *world;
}

Model BaseModel(v1::Mode mode, v1::RegisterState n, v1::RegisterState c, v1::RegisterState o) {
  Model m;
  m.mode = mode;
  if (mode == v1::MODE_NORMAL) {
    m.sig = 2;
    m.rev = 2;
  }
  m.n.state = n;
  if (n == v1::REGISTER_PARTIALLY_LOADED) m.n.parts_loaded = 1;
  if (n == v1::REGISTER_FULL_UNCOMMITTED || n == v1::REGISTER_FULL_COMMITTED) m.n.key = "K3";
  m.c.state = c;
  m.o.state = o;
  if (o == v1::REGISTER_VALID) {
    m.o.key = "K1";
    if (c == v1::REGISTER_VALID) m.c.key = "K2";
  } else if (c == v1::REGISTER_VALID) {
    m.c.key = "K1";
  }
  return m;
}

struct Expectation {
  std::optional<Model> next;  // set when legal
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string reason;
};

Expectation Legal(const Model& next) { return Expectation{next, absl::StatusCode::kOk, ""}; }

Expectation Refused(absl::StatusCode code, std::string reason) {
  return Expectation{std::nullopt, code, std::move(reason)};
}

// Expect is the specification of docs/protocol.md sections 7 and 8, written independently
// of the firmware's code.
Expectation Expect(const Model& m, Cmd cmd) {
  constexpr auto kPre = absl::StatusCode::kFailedPrecondition;
  Model next = m;
  const bool imprint = m.mode == v1::MODE_IMPRINT;
  switch (cmd) {
    case Cmd::kAddAdmin:
      next.admins += 1;
      return Legal(next);
    case Cmd::kRemoveAdmin:
      next.admins -= 1;  // 3 -> 2 stays at the thresholds (2/2)
      return Legal(next);
    case Cmd::kSetThresholds:
      next.mode = v1::MODE_NORMAL;
      next.sig = 2;
      next.rev = 1;
      return Legal(next);
    case Cmd::kZeroize: {
      Model z;
      z.mode = v1::MODE_IMPRINT;
      z.admins = 0;
      z.instance = m.instance;
      return Legal(z);
    }
    case Cmd::kAssignInstance:
      next.instance = "inst-1";
      return Legal(next);
    default:
      break;
  }
  if (imprint) return Refused(kPre, "IMPRINT_MODE");
  switch (cmd) {
    case Cmd::kGenerateImporter:
      return Legal(next);
    case Cmd::kLoadKeyParts:
      if (m.n.state == v1::REGISTER_EMPTY || m.n.state == v1::REGISTER_PARTIALLY_LOADED) {
        next.n.state = v1::REGISTER_PARTIALLY_LOADED;
        next.n.parts_loaded = m.n.parts_loaded + 1;
        return Legal(next);
      }
      return Refused(kPre, "NEW_REGISTER_FULL");
    case Cmd::kCommit:
      if (m.n.state == v1::REGISTER_FULL_UNCOMMITTED) {
        next.n.state = v1::REGISTER_FULL_COMMITTED;
        return Legal(next);
      }
      if (m.n.state == v1::REGISTER_FULL_COMMITTED) {
        return Refused(kPre, "NEW_REGISTER_ALREADY_COMMITTED");
      }
      return Refused(kPre, "NEW_REGISTER_NOT_FULL");
    case Cmd::kSetImmediate:
      if (m.n.state != v1::REGISTER_FULL_COMMITTED) {
        return Refused(kPre, "NEW_REGISTER_NOT_COMMITTED");
      }
      next.o = m.c;
      next.c = Reg{v1::REGISTER_VALID, m.n.key, 0};
      next.n = Reg{};
      return Legal(next);
    case Cmd::kClearNew:
      if (m.n.state == v1::REGISTER_EMPTY) return Refused(kPre, "NEW_REGISTER_EMPTY");
      next.n = Reg{};
      return Legal(next);
    case Cmd::kClearCurrent:
      if (m.c.state == v1::REGISTER_EMPTY) return Refused(kPre, "CURRENT_REGISTER_EMPTY");
      next.c = Reg{};
      return Legal(next);
    case Cmd::kClearOld:
      if (m.o.state == v1::REGISTER_EMPTY) return Refused(kPre, "OLD_REGISTER_EMPTY");
      next.o = Reg{};
      return Legal(next);
    default:
      break;
  }
  return Refused(absl::StatusCode::kUnknown, "UNREACHABLE");
}

// PrintTo shows a row as what the specification expects of it. gtest prints
// it after the row's name (and ctest puts it in the test's name) instead of a
// hex dump of the struct.
void PrintTo(const Row& row, std::ostream* os) {
  const Expectation want = Expect(row.base, row.cmd);
  *os << (want.next.has_value() ? std::string("expect success") : "expect " + want.reason);
}

v1::Command BuildCommand(World& w, const CryptoUnit& unit, Cmd cmd) {
  switch (cmd) {
    case Cmd::kAddAdmin:
      return AddAdminCommand(w.d);
    case Cmd::kRemoveAdmin:
      return testing::Op([&](v1::Command& c) {
        c.mutable_remove_admin()->set_key_id(crypto::AsString(w.carol.key_id));
      });
    case Cmd::kSetThresholds:
      return ThresholdsCommand(2, 1);
    case Cmd::kZeroize:
      return testing::Op([](v1::Command& c) { c.mutable_zeroize(); });
    case Cmd::kAssignInstance:
      return testing::Op(
          [](v1::Command& c) { c.mutable_assign_instance()->set_instance("inst-1"); });
    case Cmd::kGenerateImporter:
      return testing::Op([](v1::Command& c) { c.mutable_generate_importer(); });
    case Cmd::kLoadKeyParts:
      if (unit.Info().importer_public_key().empty()) {
        // Imprint mode has no importer: send a syntactically valid part.
        return testing::Op([](v1::Command& c) {
          c.mutable_load_key_parts()->set_total_parts(3);
          c.mutable_load_key_parts()->add_parts();
        });
      }
      return LoadCommand(unit, {w.extra}, 3, w.entropy);
    case Cmd::kCommit:
      return CommitCommand(w.Key("K3"));
    case Cmd::kSetImmediate:
      return testing::Op([](v1::Command& c) { c.mutable_set_immediate(); });
    case Cmd::kClearNew:
      return testing::Op([](v1::Command& c) { c.mutable_clear_new_master_key(); });
    case Cmd::kClearCurrent:
      return testing::Op([](v1::Command& c) { c.mutable_clear_current_master_key(); });
    case Cmd::kClearOld:
      return testing::Op([](v1::Command& c) { c.mutable_clear_old_master_key(); });
  }
  return {};
}

void ExpectRegister(World& w, const v1::MasterKeyRegisterInfo& got, const Reg& want,
                    const std::string& name) {
  EXPECT_EQ(got.state(), want.state) << name << " is " << wire::RegisterStateName(got.state());
  if (want.key.empty()) {
    EXPECT_TRUE(got.verification_pattern().empty()) << name;
  } else {
    EXPECT_EQ(ToHex(got.verification_pattern()),
              ToHex(crypto::ComputeVerificationPattern(w.Key(want.key))))
        << name << " should hold " << want.key;
  }
  if (want.state == v1::REGISTER_PARTIALLY_LOADED) {
    EXPECT_EQ(got.parts_loaded(), want.parts_loaded) << name;
    EXPECT_EQ(got.parts_total(), 3u) << name;
  }
}

class CommandTableTest : public ::testing::TestWithParam<Row> {};

TEST_P(CommandTableTest, LegalGivesExactStateIllegalChangesNothing) {
  World& w = TheWorld();
  const Row& row = GetParam();
  const SecretBytes& base = w.BaseSnapshot(row.base);
  auto restored = CryptoUnit::Restore(base, w.entropy);
  ASSERT_TRUE(restored.ok()) << restored.status();
  CryptoUnit& unit = **restored;
  const uint64_t counter = unit.Info().transaction_counter();

  v1::Command command = BuildCommand(w, unit, row.cmd);
  HandleResult result = unit.Handle(testing::SignCommand(unit, command, w.all()));
  absl::Status status = testing::StatusOf(result.response);
  Expectation want = Expect(row.base, row.cmd);

  if (!want.next.has_value()) {
    EXPECT_EQ(status.code(), want.code) << status;
    EXPECT_EQ(ReasonOf(status), want.reason) << status;
    EXPECT_FALSE(result.state_changed);
    SecretBytes after = unit.Snapshot();
    EXPECT_TRUE(after == base) << "a refused command changed the unit's state";
    return;
  }
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(result.state_changed);
  ASSERT_TRUE(result.response.has_command());
  const v1::GetInfoResponse& info = result.response.command().info();
  const Model& m = *want.next;
  EXPECT_EQ(info.mode(), m.mode);
  EXPECT_EQ(info.administrators_size(), m.admins);
  EXPECT_EQ(info.signature_threshold(), m.sig);
  EXPECT_EQ(info.revocation_threshold(), m.rev);
  EXPECT_EQ(info.instance(), m.instance);
  EXPECT_EQ(info.transaction_counter(), counter + 1);
  ExpectRegister(w, info.new_register(), m.n, "NEW");
  ExpectRegister(w, info.current_register(), m.c, "CURRENT");
  ExpectRegister(w, info.old_register(), m.o, "OLD");
  if (row.cmd == Cmd::kZeroize) {
    EXPECT_TRUE(info.importer_public_key().empty());
  }
  // The snapshot of the new state restores to the same public state.
  SecretBytes after = unit.Snapshot();
  auto again = CryptoUnit::Restore(after, w.entropy);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->Info().SerializeAsString(), info.SerializeAsString());
}

std::vector<Row> AllRows() {
  std::vector<Row> rows;
  for (Cmd cmd : kAllCmds) {
    rows.push_back(
        Row{BaseModel(v1::MODE_IMPRINT, v1::REGISTER_EMPTY, v1::REGISTER_EMPTY, v1::REGISTER_EMPTY),
            cmd});
  }
  for (auto n : {v1::REGISTER_EMPTY, v1::REGISTER_PARTIALLY_LOADED, v1::REGISTER_FULL_UNCOMMITTED,
                 v1::REGISTER_FULL_COMMITTED}) {
    for (auto c : {v1::REGISTER_EMPTY, v1::REGISTER_VALID}) {
      for (auto o : {v1::REGISTER_EMPTY, v1::REGISTER_VALID}) {
        for (Cmd cmd : kAllCmds) rows.push_back(Row{BaseModel(v1::MODE_NORMAL, n, c, o), cmd});
      }
    }
  }
  return rows;
}

INSTANTIATE_TEST_SUITE_P(AllStates, CommandTableTest, ::testing::ValuesIn(AllRows()),
                         [](const ::testing::TestParamInfo<Row>& param_info) {
                           return RowName(param_info.param);
                         });

}  // namespace
}  // namespace hsmsim::firmware

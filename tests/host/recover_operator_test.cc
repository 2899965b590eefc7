// Issue 16, item 5: hsmctl recover and mk rotate in an operator's hands. An
// unreachable unit is named as the thing to fix; a fleet ready to rotate is
// reported as such; recover --json gives structured registers with full
// verification patterns; --dry-run shows what would be done and changes
// nothing; --sign is asked for only when the next step signs; a reload whose
// commit cannot be signed is refused before any part is loaded. Real hsmctl
// and hsmsim-unit processes on ephemeral loopback ports; every test stops
// its units (FleetGuard).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/wire/enum_names.h"
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RecoverOperatorTest : public RotationFixture {
 protected:
  // Snapshot is what a dry run must leave as it was: every unit's
  // registers and transaction counter (any unit command moves it), the
  // journal, the keystore's counts per (WKID, pending WKID), and the
  // rotation lock (free).
  std::string Snapshot() {
    std::string out;
    for (const std::string& name : UnitNames()) {
      auto info = Client(name)->GetInfo();
      EXPECT_TRUE(info.ok()) << info.status();
      if (!info.ok()) return "";
      out += StrCat(name, ": counter ", info->transaction_counter(), " NEW ",
                    info->new_register().ShortDebugString(), " CURRENT ",
                    info->current_register().ShortDebugString(), " OLD ",
                    info->old_register().ShortDebugString(), "\n");
    }
    auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", false);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return out;
    auto journal = (*store)->ReadJournal();
    EXPECT_TRUE(journal.ok());
    if (journal.ok() && journal->has_value()) {
      const RotationJournal& j = **journal;
      out += StrCat("journal ", RotationPhaseName(j.phase), " ", j.keys_done, "/", j.keys_total,
                    " ", j.updated_at, "\n");
    } else {
      out += "journal none\n";
    }
    auto counts = (*store)->CountByWkid();
    EXPECT_TRUE(counts.ok());
    for (const WkidPairCount& c : *counts) {
      out +=
          StrCat("keys ", ToHex(c.wkid), " pending ", ToHex(c.pending_wkid), ": ", c.count, "\n");
    }
    auto holder = (*store)->FindRotationLockHolder();
    EXPECT_TRUE(holder.ok());
    out += StrCat("lock ", holder.ok() && holder->has_value() ? "held" : "free", "\n");
    return out;
  }

  // StopRotationAt runs mk rotate until the checkpoint `point`, where hsmctl
  // dies on the spot (HSMSIM_TEST_CRASH_AT), leaving the journal at
  // `phase`.
  void StopRotationAt(const std::string& point, const std::string& phase) {
    RunResult r =
        HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {StrCat("HSMSIM_TEST_CRASH_AT=", point)});
    ASSERT_EQ(r.exit_code, 137) << Describe(r);
    ASSERT_EQ(JournalPhase(), phase);
  }

  std::string NewState(const std::string& unit) {
    auto info = Client(unit)->GetInfo();
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? std::string(wire::RegisterStateName(info->new_register().state())) : "";
  }
};

// A unit that does not answer in the middle of a rotation is the thing to
// fix: recover names it, its endpoint and the error, says to start it (not
// to rotate again, not to take it out of the selection), and --apply does
// nothing; once it is started, recover --apply finishes.
TEST_F(RecoverOperatorTest, UnreachableUnitMidRotationIsNamedWithWhatToDo) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(20);
  StopRotationAt("reencrypted", "REENCRYPTED");
  const std::string endpoint = Manifest().FindUnit("unit2")->endpoint;
  KillUnits({"unit2"});

  RunResult look = Hsmctl({"recover"});
  EXPECT_EQ(look.exit_code, 1) << Describe(look);
  EXPECT_THAT(look.out, HasSubstr("situation: UNITS_UNREACHABLE: rotation REENCRYPTED; unit(s) "
                                  "do not answer: unit2 at " +
                                  endpoint + " (UNIT_UNREACHABLE: "));
  EXPECT_THAT(look.out, HasSubstr("safe action: Start unit2: hsmctl fleet restart unit2"));
  EXPECT_THAT(look.out, HasSubstr("Do not take it out of the selection"));
  EXPECT_THAT(look.out, Not(HasSubstr("FIX_AND_ROTATE_AGAIN")));
  RunResult json_look = Hsmctl({"recover", "--json"});
  const json doc = json::parse(json_look.out);
  EXPECT_EQ(doc["situation"], "UNITS_UNREACHABLE");
  EXPECT_EQ(doc["units"][1]["unit"], "unit2");
  EXPECT_EQ(doc["units"][1]["endpoint"], endpoint);
  EXPECT_EQ(doc["units"][1]["reachable"], false);
  EXPECT_EQ(doc["units"][1]["error"]["reason"], "UNIT_UNREACHABLE");

  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_EQ(apply.exit_code, 1) << Describe(apply);
  EXPECT_THAT(apply.err, HasSubstr("NOTHING_SAFE_TO_APPLY"));
  EXPECT_EQ(JournalPhase(), "REENCRYPTED");

  MustRun({"fleet", "restart", "unit2"});
  MustRun({"recover", "--apply", "--sign", sign_});
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// A fleet with the next master key committed in NEW everywhere, no journal
// and nothing wrong is READY_TO_ROTATE (exit 0, the next command named);
// --json gives each register as {state, verification_pattern} with the full
// VP, beside the older text fields.
TEST_F(RecoverOperatorTest, ReadyFleetIsReportedAsSuchWithStructuredRegisters) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(10);
  RunResult look = Hsmctl({"recover", "--json"});
  ASSERT_EQ(look.exit_code, 0) << Describe(look);
  const json doc = json::parse(look.out);
  EXPECT_EQ(doc["situation"], "READY_TO_ROTATE") << look.out;
  EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("hsmctl mk rotate"));
  EXPECT_EQ(doc["target_vp"], target_vp_);
  ASSERT_EQ(doc["units"].size(), 3u);
  for (const json& u : doc["units"]) {
    const json& regs = u["registers"];
    EXPECT_EQ(regs["new"]["state"], "FULL_COMMITTED") << u.dump();
    EXPECT_EQ(regs["new"]["verification_pattern"], target_vp_) << u.dump();
    EXPECT_EQ(regs["new"]["verification_pattern"].get<std::string>().size(), 64u);
    EXPECT_EQ(regs["current"]["state"], "VALID") << u.dump();
    EXPECT_EQ(regs["current"]["verification_pattern"], VpOfXor(first_parts_)) << u.dump();
    EXPECT_EQ(regs["old"]["state"], "EMPTY") << u.dump();
    EXPECT_EQ(regs["old"]["verification_pattern"], "") << u.dump();
    EXPECT_THAT(u["new"].get<std::string>(), HasSubstr("FULL_COMMITTED ")) << "kept for scripts";
    EXPECT_EQ(u["endpoint"], Manifest().FindUnit(u["unit"].get<std::string>())->endpoint);
  }
  // recover --apply does not start a rotation: it says what is next.
  const std::string before = Snapshot();
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_THAT(apply.out, HasSubstr("situation: READY_TO_ROTATE"));
  EXPECT_EQ(Snapshot(), before);
  // After the rotation, NEW is empty: nothing to do.
  MustRun({"mk", "rotate", "--sign", sign_});
  RunResult after = Hsmctl({"recover", "--json"});
  EXPECT_EQ(json::parse(after.out)["situation"], "NOTHING_TO_DO") << after.out;
}

// mk rotate --dry-run runs the pre-checks and shows the steps, units and
// counts; no unit, journal, key or lock changes, and the real rotation
// runs after it.
TEST_F(RecoverOperatorTest, MkRotateDryRunChangesNothing) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(40);
  const std::string before = Snapshot();
  RunResult dry = Hsmctl({"mk", "rotate", "--dry-run", "--sign", sign_});
  ASSERT_EQ(dry.exit_code, 0) << Describe(dry);
  EXPECT_THAT(dry.out, HasSubstr("dry run: mk rotate would rotate 40 key(s) from "));
  EXPECT_THAT(dry.out, HasSubstr("re-encrypt 40 key(s) from "));
  EXPECT_THAT(dry.out, HasSubstr("on unit(s) unit1, unit2, unit3"));
  EXPECT_THAT(dry.out, HasSubstr("set immediate (signed) on unit(s) unit1, unit2, unit3"));
  EXPECT_THAT(dry.out, HasSubstr("finalize the keystore"));
  EXPECT_THAT(dry.out, HasSubstr("nothing was changed"));
  EXPECT_EQ(Snapshot(), before);

  RunResult dry_json = Hsmctl({"mk", "rotate", "--dry-run", "--json", "--sign", sign_});
  ASSERT_EQ(dry_json.exit_code, 0) << Describe(dry_json);
  const json doc = json::parse(dry_json.out);
  EXPECT_EQ(doc["dry_run"], true);
  EXPECT_EQ(doc["target_vp"], target_vp_);
  EXPECT_EQ(doc["plan"]["keys_to_reencrypt"], 40);
  EXPECT_EQ(doc["plan"]["units_to_promote"].size(), 3u);
  EXPECT_EQ(Snapshot(), before);

  // A rotation that could not run is refused as the real one would be.
  RunResult unsigned_dry = Hsmctl({"mk", "rotate", "--dry-run"});
  EXPECT_EQ(unsigned_dry.exit_code, 1) << Describe(unsigned_dry);
  EXPECT_THAT(unsigned_dry.err, HasSubstr("NO_SIGNERS"));
  EXPECT_EQ(Snapshot(), before);

  MustRun({"mk", "rotate", "--sign", sign_});
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// Where only finalizing the keystore is left (every unit promoted), mk
// rotate --resume and recover --apply run without --sign, and their dry
// runs say so; where a set immediate is left, the refusal names it, and
// the dry run of recover --apply changes nothing.
TEST_F(RecoverOperatorTest, SignIsAskedForOnlyWhenTheNextStepSigns) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(30);
  StopRotationAt("reencrypted", "REENCRYPTED");
  const std::string reencrypted = Snapshot();
  RunResult resume = Hsmctl({"mk", "rotate", "--resume"});
  EXPECT_EQ(resume.exit_code, 1) << Describe(resume);
  EXPECT_THAT(resume.err, HasSubstr("NO_SIGNERS: the rotation still sets immediate on unit(s) "
                                    "unit1, unit2, unit3"));
  RunResult apply = Hsmctl({"recover", "--apply"});
  EXPECT_EQ(apply.exit_code, 1) << Describe(apply);
  EXPECT_THAT(apply.err, HasSubstr("NO_SIGNERS: recover --apply sets immediate on unit1, unit2, "
                                   "unit3"));
  RunResult dry = Hsmctl({"recover", "--apply", "--dry-run", "--sign", sign_});
  EXPECT_EQ(dry.exit_code, 0) << Describe(dry);
  EXPECT_THAT(dry.out, HasSubstr("dry run: recover --apply would:"));
  EXPECT_THAT(dry.out, HasSubstr("set immediate (signed) on unit(s) unit1, unit2, unit3"));
  EXPECT_EQ(Snapshot(), reencrypted);

  // Promote every unit, stop before the keystore is finalized.
  RunResult promote = HsmctlWithEnv({"mk", "rotate", "--resume", "--sign", sign_},
                                    {"HSMSIM_TEST_CRASH_AT=promoted"});
  ASSERT_EQ(promote.exit_code, 137) << Describe(promote);
  ASSERT_EQ(JournalPhase(), "FINALIZING");
  const std::string promoted = Snapshot();
  RunResult dry_finalize = Hsmctl({"recover", "--apply", "--dry-run", "--json"});
  ASSERT_EQ(dry_finalize.exit_code, 0) << Describe(dry_finalize);
  const json plan = json::parse(dry_finalize.out)["plan"];
  EXPECT_TRUE(plan["units_to_promote"].empty()) << plan.dump();
  ASSERT_EQ(plan["steps"].size(), 1u) << plan.dump();
  EXPECT_THAT(plan["steps"][0].get<std::string>(), HasSubstr("finalize the keystore"));
  RunResult dry_resume = Hsmctl({"mk", "rotate", "--resume", "--dry-run"});
  EXPECT_EQ(dry_resume.exit_code, 0) << Describe(dry_resume);
  EXPECT_THAT(dry_resume.out, HasSubstr("would continue the rotation from "));
  EXPECT_THAT(dry_resume.out, HasSubstr(" at phase FINALIZING (30 of 30 key(s) re-encrypted)"));
  EXPECT_THAT(dry_resume.out, Not(HasSubstr("set immediate")));
  EXPECT_EQ(Snapshot(), promoted);

  RunResult finish = Hsmctl({"mk", "rotate", "--resume"});
  ASSERT_EQ(finish.exit_code, 0) << Describe(finish);
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

// recover --apply (FINALIZE_KEYSTORE) runs without --sign too.
TEST_F(RecoverOperatorTest, RecoverFinalizesTheKeystoreWithoutSign) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(10);
  StopRotationAt("promoted", "FINALIZING");
  RunResult apply = Hsmctl({"recover", "--apply"});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_THAT(apply.out, HasSubstr("situation: FINALIZE_KEYSTORE"));
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectNoKeyLost();
}

// A reload of a lost NEW whose commit the unit would refuse (one signature,
// threshold 2) is refused before any part is loaded, naming the threshold
// and the signatures given; the dry run with enough signatures plans it
// and loads nothing; the real one reloads and finishes.
TEST_F(RecoverOperatorTest, ReloadThatCannotBeCommittedIsRefusedBeforeLoading) {
  FleetGuard guard(tmp_, fleet_);
  Prepare(10);
  StopRotationAt("reencrypted", "REENCRYPTED");
  v1::Command clear;
  clear.mutable_clear_new_master_key();
  ASSERT_TRUE(Issue("unit2", clear).ok());
  RunResult look = Hsmctl({"recover", "--json"});
  ASSERT_EQ(json::parse(look.out)["situation"], "RELOAD_NEW_REGISTER") << look.out;
  const std::string before = Snapshot();

  RunResult one = Hsmctl({"recover", "--apply", "--parts", Join(next_parts_), "--sign", alice_});
  EXPECT_EQ(one.exit_code, 1) << Describe(one);
  EXPECT_THAT(one.err, HasSubstr("INSUFFICIENT_SIGNATURES: reloading NEW on unit unit2"));
  EXPECT_THAT(one.err, HasSubstr("needs 2 signature(s)"));
  EXPECT_THAT(one.err, HasSubstr("--sign gave 1 signature(s), 1 of its administrators (alice)"));
  EXPECT_THAT(one.out + one.err, Not(HasSubstr("NEW reloaded")));
  EXPECT_EQ(NewState("unit2"), "EMPTY");
  EXPECT_EQ(Snapshot(), before);

  RunResult dry =
      Hsmctl({"recover", "--apply", "--dry-run", "--parts", Join(next_parts_), "--sign", sign_});
  EXPECT_EQ(dry.exit_code, 0) << Describe(dry);
  EXPECT_THAT(dry.out, HasSubstr("reload NEW on unit(s) unit2 from the 3 key part(s) given"));
  EXPECT_EQ(NewState("unit2"), "EMPTY");
  EXPECT_EQ(Snapshot(), before);

  MustRun({"recover", "--apply", "--parts", Join(next_parts_), "--sign", sign_});
  EXPECT_EQ(JournalPhase(), "DONE");
  ExpectAllCurrentIsTarget();
  ExpectNoKeyLost();
}

}  // namespace
}  // namespace hsmsim::host

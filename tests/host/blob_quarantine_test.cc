// Issue 11, items 2 and 7, with the real hsmctl and units: a stored blob
// with a damaged tag is found by the rotation's pre-checks before the
// journal is written, named by recover, and set aside by an explicit
// quarantine that keeps its blob and its master key; a unit that takes
// smaller frames gets smaller batches, not a drop; a key-name prefix that
// is not UTF-8 is refused as bad input.
#include "tests/host/rotation_fixture.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class BlobQuarantineTest : public RotationFixture {
 protected:
  // DamageTag flips the last byte of key `name`'s blob (in its GCM tag),
  // keeping its WKID, and returns the damaged blob.
  std::string DamageTag(const std::string& name) {
    auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", false);
    EXPECT_TRUE(store.ok()) << store.status();
    auto key = (*store)->FindKey(name);
    EXPECT_TRUE(key.ok() && key->has_value());
    std::string blob = (**key).blob;
    blob.back() = static_cast<char>(blob.back() ^ 0x01);
    EXPECT_TRUE((*store)->ReplaceBlobs({RewrappedKey{(**key).id, blob, (**key).wkid}}).ok());
    return blob;
  }

  StoredKey Find(const std::string& name) {
    auto store = OpenSqliteKeystore(fleet_ + "/keystore.db", false);
    EXPECT_TRUE(store.ok()) << store.status();
    auto key = (*store)->FindKey(name);
    EXPECT_TRUE(key.ok() && key->has_value());
    return key.ok() && key->has_value() ? **key : StoredKey{};
  }

  std::string SourceWkidHex() {
    RunResult st = Hsmctl({"status", "--json", "--long"});
    EXPECT_EQ(st.exit_code, 0) << Describe(st);
    return json::parse(st.out)["units"][0]["registers"]["current"]["verification_pattern"]
        .get<std::string>()
        .substr(0, 32);
  }
};

TEST_F(BlobQuarantineTest, DamagedBlobIsNamedBeforeTheJournalThenQuarantinedAndKept) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(60));
  const std::string source_wkid = SourceWkidHex();
  const std::string damaged = DamageTag("key-7");

  // The pre-checks find it; nothing is written.
  RunResult rotate = Hsmctl({"mk", "rotate", "--sign", sign_});
  EXPECT_EQ(rotate.exit_code, 1) << Describe(rotate);
  EXPECT_THAT(rotate.out + rotate.err, HasSubstr("KEYS_UNREADABLE"));
  EXPECT_THAT(rotate.out + rotate.err, HasSubstr("key-7 (BLOB_AUTHENTICATION_FAILED)"));
  EXPECT_EQ(JournalPhase(), "NONE");

  // recover names the key and the choice.
  RunResult look = Hsmctl({"recover", "--json"});
  EXPECT_EQ(look.exit_code, 1) << Describe(look);
  json doc = json::parse(look.out);
  EXPECT_EQ(doc["situation"], "KEYS_UNREADABLE") << look.out;
  EXPECT_EQ(doc["unreadable_count"], 1);
  EXPECT_THAT(doc["unreadable_keys"].dump(), HasSubstr("key-7 (BLOB_AUTHENTICATION_FAILED)"));
  EXPECT_THAT(doc["action"].get<std::string>(), HasSubstr("keys quarantine"));
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  EXPECT_EQ(apply.exit_code, 1) << Describe(apply);
  EXPECT_THAT(apply.err, HasSubstr("NOTHING_SAFE_TO_APPLY"));

  // Only keys a unit could not open can be quarantined; unknown names are bad input.
  RunResult healthy = Hsmctl({"keys", "quarantine", "key-8"});
  EXPECT_EQ(healthy.exit_code, 1) << Describe(healthy);
  EXPECT_THAT(healthy.err, HasSubstr("KEY_NOT_UNREADABLE"));
  RunResult unknown = Hsmctl({"keys", "quarantine", "key-7", "no-such-key"});
  EXPECT_EQ(unknown.exit_code, 4) << Describe(unknown);
  EXPECT_FALSE(Find("key-7").quarantined) << "all or nothing";

  RunResult q = Hsmctl({"keys", "quarantine", "key-7"});
  ASSERT_EQ(q.exit_code, 0) << Describe(q);
  EXPECT_THAT(q.out, HasSubstr("key-7: quarantined"));
  RunResult list = Hsmctl({"keys", "list", "--limit", "10"});
  EXPECT_THAT(list.out, HasSubstr("key-7  wkid"));
  EXPECT_THAT(list.out, HasSubstr("QUARANTINED (BLOB_AUTHENTICATION_FAILED)"));

  // The rotation finishes for the rest and says what stays behind.
  rotate = Hsmctl({"mk", "rotate", "--sign", sign_});
  ASSERT_EQ(rotate.exit_code, 0) << Describe(rotate);
  EXPECT_THAT(rotate.out, HasSubstr("1 quarantined key(s) stay under WKID"));
  EXPECT_EQ(JournalPhase(), "DONE");
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());

  // The quarantined key kept its blob and WKID; nothing was dropped.
  StoredKey kept = Find("key-7");
  EXPECT_TRUE(kept.quarantined);
  EXPECT_EQ(kept.blob, damaged);
  EXPECT_EQ(ToHex(kept.wkid), source_wkid);
  RunResult verify = Hsmctl({"keys", "verify", "--json"});
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  json v = json::parse(verify.out);
  EXPECT_EQ(v["keys"], 60);
  EXPECT_EQ(v["failed"], 0);
  EXPECT_EQ(v["quarantined"], 1);
  EXPECT_THAT(v["quarantined_keys"].dump(), HasSubstr("key-7"));

  // The interlock holds the quarantined key's master key (now OLD), even
  // with --force, naming the count.
  for (bool force : {false, true}) {
    std::vector<std::string> args = {"mk", "clrold", "--sign", sign_};
    if (force) args.push_back("--force");
    RunResult clr = Hsmctl(args);
    EXPECT_EQ(clr.exit_code, 1) << Describe(clr);
    EXPECT_THAT(clr.err, HasSubstr("KEYS_QUARANTINED"));
    EXPECT_THAT(clr.err, HasSubstr("1 quarantined key(s)"));
  }
  RunResult st = Hsmctl({"status", "--json", "--long"});
  const json status = json::parse(st.out);  // kept alive across the range-for
  for (const json& u : status["units"]) {
    EXPECT_EQ(u["registers"]["old"]["verification_pattern"].get<std::string>().substr(0, 32),
              source_wkid);
  }
  RunResult recover = Hsmctl({"recover", "--json"});
  EXPECT_EQ(json::parse(recover.out)["quarantined_count"], 1) << recover.out;
}

TEST_F(BlobQuarantineTest, BlobDamagedAfterTheJournalIsNamedByRecoverAndTheRestFinishes) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(60));
  // A rotation journaled, then stopped, then a blob damaged.
  RunResult crashed =
      HsmctlWithEnv({"mk", "rotate", "--sign", sign_}, {"HSMSIM_TEST_CRASH_AT=journal-written"});
  ASSERT_NE(crashed.exit_code, 0);
  ASSERT_EQ(JournalPhase(), "REENCRYPTING");
  DamageTag("key-12");

  RunResult resume = Hsmctl({"mk", "rotate", "--resume", "--sign", sign_});
  EXPECT_EQ(resume.exit_code, 1) << Describe(resume);
  EXPECT_THAT(resume.err, HasSubstr("KEYS_NOT_REENCRYPTED"));
  EXPECT_THAT(resume.err, HasSubstr("key-12 (BLOB_AUTHENTICATION_FAILED)"));

  RunResult look = Hsmctl({"recover", "--json"});
  json doc = json::parse(look.out);
  EXPECT_EQ(doc["situation"], "KEYS_UNREADABLE") << look.out;
  EXPECT_THAT(doc["unreadable_keys"].dump(), HasSubstr("key-12"));
  EXPECT_THAT(doc["action"].get<std::string>(), Not(HasSubstr("Run the rotation again")));

  ASSERT_EQ(Hsmctl({"keys", "quarantine", "key-12"}).exit_code, 0);
  RunResult apply = Hsmctl({"recover", "--apply", "--sign", sign_});
  ASSERT_EQ(apply.exit_code, 0) << Describe(apply);
  EXPECT_EQ(JournalPhase(), "DONE");
  RunResult verify = Hsmctl({"keys", "verify", "--json"});
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  EXPECT_EQ(json::parse(verify.out)["quarantined"], 1);

  // Released, the key is an ordinary (unreadable) key again and keys
  // verify fails it.
  ASSERT_EQ(Hsmctl({"keys", "quarantine", "--release", "key-12"}).exit_code, 0);
  verify = Hsmctl({"keys", "verify"});
  EXPECT_EQ(verify.exit_code, 1) << Describe(verify);
  EXPECT_THAT(verify.out, HasSubstr("key-12"));
}

TEST_F(BlobQuarantineTest, AUnitTakingSmallerFramesGetsSmallerBatchesNotADrop) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(300));
  // unit2 comes back with --max-frame-bytes 2048: a batch of 100 blobs, or
  // a keys verify page, is far above it.
  const std::string wrapper = tmp_.Join("small-frame-unit.sh");
  {
    std::ofstream w(wrapper);
    w << "#!/bin/sh\nexec '" << HSMSIM_UNIT_PATH << "' \"$@\" --max-frame-bytes 2048\n";
  }
  ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(KillUnits({"unit2"}));
  RunResult restart = Hsmctl({"fleet", "restart", "unit2", "--unit-binary", wrapper});
  ASSERT_EQ(restart.exit_code, 0) << Describe(restart);

  RunResult rotate =
      Hsmctl({"mk", "rotate", "--sign", sign_, "--in-flight", "1", "--batch-size", "100"});
  ASSERT_EQ(rotate.exit_code, 0) << Describe(rotate);
  EXPECT_THAT(rotate.out + rotate.err,
              HasSubstr("unit unit2 refused a batch as too large (FRAME_TOO_LARGE)"));
  EXPECT_THAT(rotate.out + rotate.err, Not(HasSubstr("dropped")));
  EXPECT_THAT(rotate.out + rotate.err, Not(HasSubstr("UNIT_UNREACHABLE")));
  ASSERT_NO_FATAL_FAILURE(ExpectAllCurrentIsTarget());

  RunResult verify = Hsmctl({"keys", "verify", "--json"});
  ASSERT_EQ(verify.exit_code, 0) << Describe(verify);
  EXPECT_THAT(verify.err, HasSubstr("FRAME_TOO_LARGE"));
  EXPECT_THAT(verify.out, Not(HasSubstr("did not answer")));
  ASSERT_NO_FATAL_FAILURE(ExpectNoKeyLost());

  // A page size the operator chooses up front is used as given.
  RunResult small = Hsmctl({"keys", "verify", "--page-size", "16"});
  EXPECT_EQ(small.exit_code, 0) << Describe(small);
  EXPECT_THAT(small.err, Not(HasSubstr("FRAME_TOO_LARGE")));
}

TEST_F(BlobQuarantineTest, AKeyNamePrefixThatIsNotUtf8IsBadInputAndNothingIsStored) {
  FleetGuard guard(tmp_, fleet_);
  ASSERT_NO_FATAL_FAILURE(Prepare(5));
  RunResult r = Hsmctl({"keys", "create", "--count", "3", "--prefix", "k\xff-"});
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("BAD_KEY_NAME"));
  EXPECT_THAT(r.err, HasSubstr("not valid UTF-8"));
  EXPECT_THAT(r.err, Not(HasSubstr("UNIT_UNREACHABLE")));
  RunResult v = Hsmctl({"keys", "verify", "--json"});
  EXPECT_EQ(json::parse(v.out)["keys"], 5);
}

}  // namespace
}  // namespace hsmsim::host

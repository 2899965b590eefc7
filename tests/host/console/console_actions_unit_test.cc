// BuildActionCommand (the page's request -> the hsmctl command line) and
// ActionRunner (one child at a time, its --json document, the secrets on
// file descriptors) without a fleet; the real commands are in
// console_actions_test.py.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "host/console/console_actions.h"
#include "host/console/console_api.h"

namespace hsmsim::console {
namespace {

using json = nlohmann::json;

std::vector<std::string> Args(const char* action, json body) {
  auto command = BuildActionCommand(action, body);
  EXPECT_TRUE(command.ok()) << command.status();
  return command.ok() ? command->args : std::vector<std::string>{};
}

TEST(BuildActionCommandTest, PasswordsGoToFileDescriptorsNeverTheCommandLine) {
  json body = json::parse(R"({"signers": [{"file": "a.key", "password": "pw-a"},
                                          {"file": "b.key", "password": ""}],
                              "parts": [{"file": "p1.kp", "password": "pw-1"},
                                        {"file": "p2.kp", "password": "pw-2"}]})");
  auto command = BuildActionCommand("mk-load", body);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->name, "mk load");
  EXPECT_EQ(command->args,
            (std::vector<std::string>{"mk", "load", "--password-file", "a.key=/dev/fd/3",
                                      "--password-file", "p1.kp=/dev/fd/4", "--password-file",
                                      "p2.kp=/dev/fd/5", "--parts", "p1.kp,p2.kp", "--sign",
                                      "a.key,b.key"}));
  EXPECT_EQ(command->display, "hsmctl mk load --parts p1.kp,p2.kp --sign a.key,b.key");
  ASSERT_EQ(command->secrets.size(), 3u);
  EXPECT_EQ(AsStringView(command->secrets[0]), "pw-a");
  EXPECT_EQ(AsStringView(command->secrets[2]), "pw-2");
  // Wiped in the request.
  EXPECT_EQ(body["signers"][0]["password"], "");
  EXPECT_EQ(body["parts"][1]["password"], "");
}

TEST(BuildActionCommandTest, CardPinBecomesThePinSource) {
  EXPECT_EQ(
      Args("mk-setimm", json::parse(R"({"signers": [{"file": "pkcs11:token=alice;object=alice",
                                                           "password": "1234"}]})")),
      (std::vector<std::string>{"mk", "setimm", "--sign",
                                "pkcs11:token=alice;object=alice?pin-source=/dev/fd/3"}));
}

TEST(BuildActionCommandTest, DisplayLeavesOutTheCardsPinSource) {
  json body = json::parse(R"({"signers": [{"file": "pkcs11:token=alice;object=alice",
                                           "password": "1234"},
                                          {"file": "pkcs11:token=bob;object=bob?slot-id=1",
                                           "password": "5678"}]})");
  auto command = BuildActionCommand("mk-setimm", body);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->display,
            "hsmctl mk setimm --sign pkcs11:token=alice;object=alice,"
            "pkcs11:token=bob;object=bob?slot-id=1");
}

TEST(BuildActionCommandTest, FleetAddIsTheCommandWithoutSignature) {
  json body = json{{"name", "remote1"}, {"endpoint", "127.0.0.2:7000"}, {"tls", true}};
  auto command = BuildActionCommand("fleet-add", body);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->name, "fleet add");
  EXPECT_EQ(command->args,
            (std::vector<std::string>{"fleet", "add", "remote1", "127.0.0.2:7000", "--tls"}));
  EXPECT_EQ(command->display, "hsmctl fleet add remote1 127.0.0.2:7000 --tls");
  EXPECT_TRUE(command->secrets.empty());
  EXPECT_EQ(Args("fleet-add", json{{"name", "r2"}, {"endpoint", "[::1]:7000"}}),
            (std::vector<std::string>{"fleet", "add", "r2", "[::1]:7000"}));
}

TEST(BuildActionCommandTest, FleetAddRefusesWhatWouldNotBeOneArgument) {
  for (const json& body :
       {json{{"endpoint", "127.0.0.2:7000"}}, json{{"name", "r1"}},
        json{{"name", "--tls"}, {"endpoint", "127.0.0.2:7000"}},
        json{{"name", "r 1"}, {"endpoint", "127.0.0.2:7000"}},
        json{{"name", "r1"}, {"endpoint", "127.0.0.2:7000\n"}},
        json{{"name", ""}, {"endpoint", "127.0.0.2:7000"}},
        json{{"name", std::string(256, 'r')}, {"endpoint", "127.0.0.2:7000"}},
        json{{"name", 7}, {"endpoint", "127.0.0.2:7000"}},
        json{{"name", "r1"}, {"endpoint", "127.0.0.2:7000"}, {"tls", "yes"}},
        json{{"name", "r1"}, {"endpoint", "127.0.0.2:7000"}, {"signers", json::array()}},
        json{{"name", "r1"}, {"endpoint", "127.0.0.2:7000"}, {"vp", std::string(64, 'a')}}}) {
    json copy = body;
    auto command = BuildActionCommand("fleet-add", copy);
    EXPECT_TRUE(absl::IsInvalidArgument(command.status())) << body.dump();
  }
}

TEST(BuildActionCommandTest, EachActionIsItsCommand) {
  EXPECT_EQ(Args("mk-clear", json{{"register", "current"}}),
            (std::vector<std::string>{"mk", "clrcur"}));
  EXPECT_EQ(Args("mk-rotate", json::object()), (std::vector<std::string>{"mk", "rotate"}));
  json abort = json::object();
  auto abort_command = BuildActionCommand("mk-abort", abort);
  ASSERT_TRUE(abort_command.ok()) << abort_command.status();
  EXPECT_EQ(abort_command->name, "mk rotate --abort");
  EXPECT_EQ(abort_command->args, (std::vector<std::string>{"mk", "rotate", "--abort"}));
  EXPECT_TRUE(abort_command->secrets.empty());
  EXPECT_EQ(Args("recover-apply", json::object()),
            (std::vector<std::string>{"recover", "--apply"}));
  const std::string vp(64, 'a');
  EXPECT_EQ(Args("mk-commit", json{{"vp", vp}}),
            (std::vector<std::string>{"mk", "commit", "--vp", vp}));
  EXPECT_EQ(Args("mk-load", json{{"parts", {{{"file", "p"}}}}, {"total", 3}}),
            (std::vector<std::string>{"mk", "load", "--total", "3", "--parts", "p"}));
}

TEST(BuildActionCommandTest, BadRequestsAreRefusedAndPasswordsWiped) {
  for (const char* text : {
           R"([])",
           R"({"register": "new"})",                                         // mk-setimm
           R"({"signers": [{"file": "--force", "password": "pw"}]})",        // an option
           R"({"signers": [{"file": "a,b", "password": "pw"}]})",            // a list
           R"({"signers": [{"file": "a=b", "password": "pw"}]})",            // password map
           R"({"signers": [{"file": "", "password": "pw"}]})",               // empty
           R"({"signers": [{"file": "a.key", "password": "pw\nsecond"}]})",  // two lines
           R"({"signers": "a.key"})",
       }) {
    json body = json::parse(text);
    auto command = BuildActionCommand("mk-setimm", body);
    EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument) << text;
    if (body.is_object() && body.contains("signers") && body["signers"].is_array()) {
      EXPECT_EQ(body["signers"][0]["password"], "") << text;
    }
  }
  json no_register = json::object();
  EXPECT_FALSE(BuildActionCommand("mk-clear", no_register).ok());
  json no_vp = json::object();
  EXPECT_FALSE(BuildActionCommand("mk-commit", no_vp).ok());
  json short_vp{{"vp", "abcd"}};
  EXPECT_FALSE(BuildActionCommand("mk-commit", short_vp).ok());
  json no_parts = json::object();
  EXPECT_FALSE(BuildActionCommand("mk-load", no_parts).ok());
  // mk rotate --abort needs no signature: a password is not even taken.
  json abort_signed = json::parse(R"({"signers": [{"file": "a.key", "password": "pw"}]})");
  EXPECT_EQ(BuildActionCommand("mk-abort", abort_signed).status().code(),
            absl::StatusCode::kInvalidArgument);
  json unknown = json::object();
  EXPECT_EQ(BuildActionCommand("zeroize", unknown).status().code(), absl::StatusCode::kNotFound);
}

TEST(BuildActionCommandTest, CardUrisNamingAPinOrAModuleAreRefusedWithoutQuotingThem) {
  for (const char* uri : {
           "pkcs11:token=a;object=b;pin-value=123456",
           "pkcs11:token=a;object=b?pin-value=123456",
           "pkcs11:token=a;object=b?PIN-VALUE=123456",
           "pkcs11:token=a;object=b?pin%2Dvalue=123456",
           "pkcs11:token=a;object=b?pin-source=/run/alice.pin",
           "pkcs11:token=a;object=b?module-path=/tmp/evil.so",
           "pkcs11:token=a;object=b?module-name=evil",
       }) {
    for (const bool with_pin : {false, true}) {
      json body{{"signers", {{{"file", uri}}}}};
      if (with_pin) body["signers"][0]["password"] = "9999";
      auto command = BuildActionCommand("mk-setimm", body);
      EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument) << uri;
      const std::string message(command.status().message());
      EXPECT_EQ(message.find("123456"), std::string::npos) << message;
      EXPECT_EQ(message.find("evil"), std::string::npos) << message;
      EXPECT_NE(message.find("type the PIN into the page"), std::string::npos) << message;
      if (with_pin) {
        EXPECT_EQ(body["signers"][0]["password"], "") << uri;
      }
    }
  }
}

// An ActionRunner whose program is /bin/sh: `args` are a script.
json RunToEnd(ActionRunner& runner, ActionCommand command) {
  auto id = runner.Start(std::move(command));
  EXPECT_TRUE(id.ok()) << id.status();
  for (int i = 0; i < 6000; ++i) {
    json state = runner.State();
    if (state["id"] == *id && !state["running"].get<bool>()) return state;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the action did not end within 60 s";
  return json();
}

TEST(ActionRunnerTest, ReportsTheDocumentAndReadsSecretsFromFileDescriptors) {
  ActionRunner runner("/bin/sh", {"base-arg"}, nullptr);
  ActionCommand command;
  command.name = "test";
  command.display = "hsmctl test";
  // $0 is the first base argument; the secret is on fd 3, and the child
  // has no HSMSIM_PASSWORD.
  command.args = {"-c",
                  "read pw < /dev/fd/3; echo \"{\\\"ok\\\": false, \\\"pw\\\": \\\"$pw\\\", "
                  "\\\"env\\\": \\\"${HSMSIM_PASSWORD:-unset}\\\", \\\"arg\\\": \\\"$0\\\"}\"; "
                  "echo oops >&2; exit 1"};
  command.secrets.push_back(MakeSecret(std::string_view("s3cret")));
  setenv("HSMSIM_PASSWORD", "from-env", 1);
  json state = RunToEnd(runner, std::move(command));
  unsetenv("HSMSIM_PASSWORD");
  EXPECT_EQ(state["outcome"], "refused");
  EXPECT_EQ(state["exit_code"], 1);
  EXPECT_EQ(state["result"]["pw"], "s3cret");
  EXPECT_EQ(state["result"]["env"], "unset");
  EXPECT_EQ(state["result"]["arg"], "base-arg");
  EXPECT_EQ(state["stderr"], "oops\n");
  EXPECT_EQ(state["command"], "hsmctl test");
}

TEST(ActionRunnerTest, OneAtATime) {
  ActionRunner runner("/bin/sh", {}, nullptr);
  ActionCommand slow;
  slow.name = "slow";
  slow.display = "hsmctl slow";
  slow.args = {"-c", "exec sleep 600"};
  ASSERT_TRUE(runner.Start(slow).ok());
  auto second = runner.Start(slow);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("another action is running: hsmctl slow"),
            std::string::npos);
  runner.Shutdown();  // SIGTERM
  json state = runner.State();
  EXPECT_FALSE(state["running"].get<bool>());
  EXPECT_EQ(state["exit_code"], 128 + SIGTERM);
  ActionCommand quick;
  quick.name = "quick";
  quick.args = {"-c", "echo '{\"ok\": true}'"};
  EXPECT_EQ(RunToEnd(runner, std::move(quick))["outcome"], "ok");
}

// ConsoleApi's action routes: the token in the header, 409 while busy.
TEST(ConsoleApiActionsTest, RoutesAndStatusCodes) {
  constexpr char kToken[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  int started = 0;
  bool busy = false;
  ConsoleActions actions;
  actions.start_action = [&](ActionCommand) -> absl::StatusOr<int64_t> {
    if (busy) return absl::FailedPreconditionError("another action is running: hsmctl mk rotate");
    return ++started;
  };
  actions.action_state = [] { return json{{"running", false}, {"id", 0}}; };
  ConsoleApi api(AccessToken::FromText(kToken),
                 ComposePage("/*@CONSOLE_CSS@*///@CONSOLE_JS@", "", ""), nullptr,
                 std::move(actions));
  const std::string bearer = std::string("Bearer ") + kToken;
  auto post = [&](std::string target, std::string auth, std::string type, std::string body) {
    return api.Handle(
        HttpRequest{"POST", std::move(target), std::move(auth), std::move(type), std::move(body)});
  };
  const std::string body = R"({"signers": [{"file": "a.key", "password": "pw"}]})";
  EXPECT_EQ(post("/api/actions/mk-setimm", "", "application/json", body).status, 401);
  EXPECT_EQ(
      post(std::string("/api/actions/mk-setimm?token=") + kToken, "", "application/json", body)
          .status,
      401);
  EXPECT_EQ(post("/api/actions/mk-setimm", bearer, "text/plain", body).status, 415);
  EXPECT_EQ(post("/api/actions/mk-setimm", bearer, "application/json", "{").status, 400);
  EXPECT_EQ(post("/api/actions/nosuch", bearer, "application/json", body).status, 404);
  EXPECT_EQ(started, 0);
  HttpResponse ok = post("/api/actions/mk-setimm", bearer, "application/json", body);
  EXPECT_EQ(ok.status, 202) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["command"], "hsmctl mk setimm --sign a.key");
  EXPECT_EQ(ok.body.find("pw\""), std::string::npos);
  busy = true;
  HttpResponse conflict = post("/api/actions/mk-rotate", bearer, "application/json", body);
  EXPECT_EQ(conflict.status, 409);
  EXPECT_NE(conflict.body.find("another action is running"), std::string::npos);
  HttpResponse abort_busy = post("/api/actions/mk-abort", bearer, "application/json", "{}");
  EXPECT_EQ(abort_busy.status, 409) << abort_busy.body;
  busy = false;
  HttpResponse abort = post("/api/actions/mk-abort", bearer, "application/json", "{}");
  EXPECT_EQ(abort.status, 202) << abort.body;
  EXPECT_EQ(json::parse(abort.body)["command"], "hsmctl mk rotate --abort");
  EXPECT_EQ(json::parse(abort.body)["action"], "mk rotate --abort");
  EXPECT_EQ(api.Handle(HttpRequest{"GET", "/api/action", bearer, "", ""}).status, 200);
  EXPECT_EQ(api.Handle(HttpRequest{"GET", "/api/actions/mk-setimm", bearer, "", ""}).status, 405);
}

}  // namespace
}  // namespace hsmsim::console

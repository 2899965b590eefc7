// Tests of the console's request handling without sockets: the access
// token, the routes, the page's policy and the snapshots.
#include "host/console/console_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>

#include "common/reasons.h"
#include "common/status.h"
#include "host/console/access_token.h"
#include "host/console/assets.h"
#include "host/console/console_server.h"

namespace hsmsim::console {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string Header(const HttpResponse& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "";
}

HttpRequest Req(std::string method, std::string target, std::string authorization = "",
                std::string content_type = "", std::string body = "") {
  return HttpRequest{std::move(method), std::move(target), std::move(authorization),
                     std::move(content_type), std::move(body)};
}

class ConsoleApiTest : public ::testing::Test {
 protected:
  ConsoleApiTest()
      : api_(AccessToken::FromText(kToken),
             ComposePage("<style>/*@CONSOLE_CSS@*/</style><script>//@CONSOLE_JS@</script>",
                         "body{}", "console.log(1)"),
             [this] { ++refreshes_; }) {
    api_.SetSnapshot(json{{"units", {{"command", "fleet status"}, {"units", json::array()}}},
                          {"master_keys", {{"command", "status"}}},
                          {"rotation", {{"command", "mk rotate --status"}}},
                          {"recovery", {{"command", "recover"}}},
                          {"audit", {{"ok", false}}}});
  }

  HttpResponse Get(std::string target, std::string authorization = "") {
    return api_.Handle(Req("GET", std::move(target), std::move(authorization)));
  }

  std::atomic<int> refreshes_{0};
  ConsoleApi api_;
  const std::string bearer_ = std::string("Bearer ") + kToken;
};

// A ConsoleApi whose select_units action records its calls and fails for
// a unit named "nosuch" as hsmctl unit rm does.
class ConsoleActionTest : public ::testing::Test {
 protected:
  ConsoleActionTest()
      : api_(
            AccessToken::FromText(kToken), ComposePage("/*@CONSOLE_CSS@*///@CONSOLE_JS@", "", ""),
            [this] { ++refreshes_; }, Actions()) {}

  ConsoleActions Actions() {
    ConsoleActions a;
    a.select_units = [this](const std::vector<std::string>& units,
                            bool selected) -> absl::StatusOr<json> {
      calls_.push_back({units, selected});
      if (units[0] == "nosuch") {
        return Error(absl::StatusCode::kNotFound, reason::kNoSuchUnit, "the fleet has no unit");
      }
      return json{{"command", selected ? "unit add" : "unit rm"}, {"ok", true}};
    };
    return a;
  }

  HttpResponse Post(std::string body, std::string content_type = "application/json",
                    std::string authorization = std::string("Bearer ") + kToken,
                    std::string target = "/api/units/select") {
    return api_.Handle(Req("POST", std::move(target), std::move(authorization),
                           std::move(content_type), std::move(body)));
  }

  std::vector<std::pair<std::vector<std::string>, bool>> calls_;
  int refreshes_ = 0;
  ConsoleApi api_;
};

TEST_F(ConsoleActionTest, SelectUnitsDoesTheCommandAndRefreshes) {
  HttpResponse r = Post(R"({"units": ["unit3"], "selected": false})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["command"], "unit rm");
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].first, std::vector<std::string>{"unit3"});
  EXPECT_FALSE(calls_[0].second);
  EXPECT_EQ(refreshes_, 1);
}

TEST_F(ConsoleActionTest, TheCommandsErrorIs422WithItsReason) {
  HttpResponse r = Post(R"({"units": ["nosuch"], "selected": true})");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(json::parse(r.body)["error"]["reason"], "NO_SUCH_UNIT");
}

TEST_F(ConsoleActionTest, NeedsTheHeaderTokenAndAJsonBody) {
  const std::string good = R"({"units": ["unit3"], "selected": false})";
  EXPECT_EQ(Post(good, "application/json", "").status, 401);
  EXPECT_EQ(
      Post(good, "application/json", "", std::string("/api/units/select?token=") + kToken).status,
      401);
  EXPECT_EQ(Post(good, "text/plain").status, 415);
  EXPECT_EQ(Post(good, "application/x-www-form-urlencoded").status, 415);
  for (const char* bad :
       {"", "[]", "{", R"({"units": [], "selected": false})",
        R"({"units": "unit3", "selected": false})", R"({"units": ["unit3"], "selected": "no"})",
        R"({"units": [3], "selected": true})", R"({"units": ["unit3"]})"}) {
    EXPECT_EQ(Post(bad).status, 400) << bad;
  }
  EXPECT_EQ(
      api_.Handle(Req("GET", "/api/units/select", std::string("Bearer ") + kToken, "", "")).status,
      405);
  EXPECT_TRUE(calls_.empty());
}

TEST(AccessTokenTest, GeneratedTokensAre64HexDigitsAndDiffer) {
  auto a = AccessToken::Generate();
  auto b = AccessToken::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->text().size(), 64u);
  EXPECT_EQ(a->text().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a->text(), b->text());
}

TEST(AccessTokenTest, MatchesOnlyTheWholeToken) {
  const AccessToken t = AccessToken::FromText(kToken);
  EXPECT_TRUE(t.Matches(kToken));
  EXPECT_FALSE(t.Matches(std::string(kToken).substr(0, 63)));
  EXPECT_FALSE(t.Matches(std::string(kToken) + "0"));
  std::string wrong = kToken;
  wrong[63] = '0';
  EXPECT_FALSE(t.Matches(wrong));
  EXPECT_FALSE(t.Matches(""));
  EXPECT_FALSE(AccessToken::FromText("").Matches(""));
}

TEST(AccessTokenTest, BearerSchemeOnly) {
  const AccessToken t = AccessToken::FromText(kToken);
  EXPECT_TRUE(t.MatchesBearer(std::string("Bearer ") + kToken));
  EXPECT_TRUE(t.MatchesBearer(std::string("bearer  ") + kToken + " "));
  EXPECT_FALSE(t.MatchesBearer(kToken));
  EXPECT_FALSE(t.MatchesBearer(std::string("Basic ") + kToken));
  EXPECT_FALSE(t.MatchesBearer("Bearer "));
}

TEST_F(ConsoleApiTest, EveryPathNeedsTheToken) {
  for (const char* path :
       {"/", "/index.html", "/api/units", "/api/master-keys", "/api/rotation", "/api/recovery",
        "/api/audit", "/api/snapshot", "/api/events", "/api/refresh", "/no/such/path"}) {
    for (const char* method : {"GET", "POST"}) {
      HttpResponse r = api_.Handle(Req(method, path, ""));
      EXPECT_EQ(r.status, 401) << method << " " << path;
      EXPECT_FALSE(r.event_stream);
      EXPECT_THAT(r.body, HasSubstr(std::string(reason::kConsoleUnauthorized)));
      EXPECT_THAT(r.body, Not(HasSubstr("units")));
      EXPECT_EQ(Header(r, "WWW-Authenticate"), "Bearer realm=\"hsmctl console\"");
    }
  }
}

TEST_F(ConsoleApiTest, WrongTokenIs401) {
  std::string wrong = kToken;
  wrong[0] = 'f';
  EXPECT_EQ(Get("/api/units", "Bearer " + wrong).status, 401);
  EXPECT_EQ(Get("/?token=" + wrong).status, 401);
  EXPECT_EQ(Get("/api/units", "Bearer").status, 401);
}

TEST_F(ConsoleApiTest, QueryTokenOpensThePageOnly) {
  HttpResponse page = Get(std::string("/?token=") + kToken);
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_THAT(page.body, HasSubstr("console.log(1)"));
  EXPECT_EQ(Get(std::string("/index.html?x=1&token=") + kToken).status, 200);
  // The API and the event stream take it in the header only.
  EXPECT_EQ(Get(std::string("/api/units?token=") + kToken).status, 401);
  EXPECT_EQ(Get(std::string("/api/events?token=") + kToken).status, 401);
  // A state-changing request never takes it from the query, not even on
  // the page's path.
  EXPECT_EQ(api_.Handle(Req("POST", std::string("/api/refresh?token=") + kToken, "")).status, 401);
  EXPECT_EQ(api_.Handle(Req("POST", std::string("/?token=") + kToken, "")).status, 401);
  EXPECT_EQ(refreshes_, 0);
}

TEST_F(ConsoleApiTest, PostWithHeaderTokenRefreshes) {
  HttpResponse r = api_.Handle(Req("POST", "/api/refresh", bearer_));
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(refreshes_, 1);
  EXPECT_EQ(api_.Handle(Req("GET", "/api/refresh", bearer_)).status, 405);
  EXPECT_EQ(refreshes_, 1);
}

TEST_F(ConsoleApiTest, ViewsServeTheSnapshotsDocuments) {
  HttpResponse units = Get("/api/units", bearer_);
  EXPECT_EQ(units.status, 200);
  EXPECT_EQ(units.content_type, "application/json");
  EXPECT_EQ(json::parse(units.body)["command"], "fleet status");
  EXPECT_EQ(json::parse(Get("/api/master-keys", bearer_).body)["command"], "status");
  EXPECT_EQ(json::parse(Get("/api/rotation", bearer_).body)["command"], "mk rotate --status");
  EXPECT_EQ(json::parse(Get("/api/recovery", bearer_).body)["command"], "recover");
  EXPECT_EQ(json::parse(Get("/api/audit", bearer_).body)["ok"], false);
  json all = json::parse(Get("/api/snapshot", bearer_).body);
  EXPECT_EQ(all["version"], 1);
  EXPECT_EQ(all["units"]["command"], "fleet status");
  EXPECT_EQ(Get("/api/nothing", bearer_).status, 404);
  EXPECT_EQ(api_.Handle(Req("POST", "/api/units", bearer_)).status, 405);
  EXPECT_EQ(api_.Handle(Req("DELETE", "/", bearer_)).status, 405);
}

TEST_F(ConsoleApiTest, EventsStartAStream) {
  HttpResponse r = Get("/api/events", bearer_);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.event_stream);
  EXPECT_EQ(r.content_type, "text/event-stream");
}

TEST_F(ConsoleApiTest, EveryAnswerIsNotCachedNorFramed) {
  for (const HttpResponse& r : {Get("/", bearer_), Get("/api/units", bearer_), Get("/api/units")}) {
    EXPECT_EQ(Header(r, "Cache-Control"), "no-store");
    EXPECT_EQ(Header(r, "X-Frame-Options"), "DENY");
    EXPECT_EQ(Header(r, "Referrer-Policy"), "no-referrer");
  }
}

TEST_F(ConsoleApiTest, SnapshotVersionCountsChangesOnly) {
  const json same = json::parse(Get("/api/snapshot", bearer_).body);
  json views = same;
  views.erase("version");
  EXPECT_FALSE(api_.SetSnapshot(views));
  views["rotation"]["journal_phase"] = "REENCRYPTING";
  EXPECT_TRUE(api_.SetSnapshot(views));
  const std::string event = api_.SnapshotEvent();
  EXPECT_THAT(event, HasSubstr("event: snapshot\nid: 2\ndata: {"));
  ASSERT_GE(event.size(), 2u);
  EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
  // One data line: the document has no newline of its own.
  const size_t data = event.find("data: ");
  EXPECT_EQ(event.find('\n', data), event.size() - 2);
  EXPECT_EQ(json::parse(event.substr(data + 6))["rotation"]["journal_phase"], "REENCRYPTING");
}

TEST_F(ConsoleApiTest, NameThatIsNotUtf8DoesNotStopTheConsole) {
  json views = json::parse(Get("/api/snapshot", bearer_).body);
  views.erase("version");
  views["master_keys"]["units"] = json::array({{{"unit", "unit\xff"}}});
  ASSERT_TRUE(api_.SetSnapshot(views));
  EXPECT_THAT(api_.SnapshotEvent(), HasSubstr("unit\xef\xbf\xbd"));  // U+FFFD
  EXPECT_THAT(Get("/api/master-keys", bearer_).body, HasSubstr("unit\xef\xbf\xbd"));
}

TEST(ComposePageTest, PolicyAllowsOnlyTheBuiltInScriptAndStyle) {
  const ConsoleAssets& assets = EmbeddedConsoleAssets();
  ASSERT_FALSE(assets.script.empty());
  ConsolePage page = ComposePage(assets.index_html, assets.style, assets.script);
  EXPECT_THAT(page.html, HasSubstr(std::string(assets.script)));
  EXPECT_THAT(page.html, HasSubstr(std::string(assets.style)));
  EXPECT_THAT(page.html, Not(HasSubstr("@CONSOLE_")));
  EXPECT_THAT(page.policy, HasSubstr("default-src 'none'"));
  EXPECT_THAT(page.policy, HasSubstr("connect-src 'self'"));
  EXPECT_THAT(page.policy, HasSubstr("script-src 'sha256-"));
  EXPECT_THAT(page.policy, Not(HasSubstr("unsafe-inline")));
  // Nothing is fetched from another origin.
  for (std::string_view asset : {assets.index_html, assets.style, assets.script}) {
    EXPECT_THAT(std::string(asset), Not(HasSubstr("http://")));
    EXPECT_THAT(std::string(asset), Not(HasSubstr("https://")));
  }
}

TEST(ComposePageTest, PolicyHashIsTheScriptsSha256) {
  // SHA-256("") in base64, as a browser computes it for an empty script.
  ConsolePage page = ComposePage("/*@CONSOLE_CSS@*///@CONSOLE_JS@", "", "");
  EXPECT_THAT(page.policy,
              HasSubstr("script-src 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"));
}

TEST(ParseListenAddressTest, LoopbackByDefault) {
  auto v4 = ParseListenAddress("127.0.0.1:0", false);
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->ip, "127.0.0.1");
  EXPECT_EQ(v4->port, 0);
  auto v6 = ParseListenAddress("[::1]:8443", false);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->ip, "::1");
  EXPECT_EQ(v6->port, 8443);
  EXPECT_EQ(UrlHost(v6->ip), "[::1]");
  EXPECT_EQ(UrlHost(v4->ip), "127.0.0.1");
}

TEST(ParseListenAddressTest, OtherAddressesNeedAllowRemote) {
  for (const char* text : {"0.0.0.0:8080", "192.0.2.1:1", "[::]:80"}) {
    auto refused = ParseListenAddress(text, false);
    EXPECT_EQ(ReasonOf(refused.status()), reason::kListenNotLoopback) << text;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--allow-remote"));
    EXPECT_THAT(std::string(refused.status().message()), Not(HasSubstr("(no TLS)")));
    EXPECT_TRUE(ParseListenAddress(text, true).ok()) << text;
  }
}

TEST(ParseListenAddressTest, BadAddresses) {
  for (const char* text : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                           "127.0.0.1:http", "localhost:80", "::1:80", "[127.0.0.1]:80", "[::1:80",
                           "127.0.0.1:0x10", "127.0.0.1:123456"}) {
    auto bad = ParseListenAddress(text, true);
    EXPECT_EQ(ReasonOf(bad.status()), reason::kBadListenAddress) << text;
  }
  // An IPv6 zone: refused here, not later by the certificate (BAD_TLS_FILES).
  for (const char* text : {"[fe80::1%eth0]:80", "[::1%1]:80", "[fe80::1%25lo]:0"}) {
    auto zoned = ParseListenAddress(text, true);
    EXPECT_EQ(ReasonOf(zoned.status()), reason::kBadListenAddress) << text;
    EXPECT_THAT(std::string(zoned.status().message()), HasSubstr("zone")) << text;
  }
}

// The published progress file outlives its rotation, and a PostgreSQL
// keystore is shared by hosts: it counts only while its writer, by pid and
// host name, holds the rotation lock.
TEST(PublisherHoldsRotationLockTest, SamePidAndHost) {
  const json holder{{"pid", 4242}, {"host", "hsm-host-a"}, {"command", "mk rotate"}};
  EXPECT_TRUE(PublisherHoldsRotationLock(holder, json{{"pid", 4242}, {"host", "hsm-host-a"}}));
}

TEST(PublisherHoldsRotationLockTest, SamePidOnAnotherHostIsAnotherProcess) {
  const json holder{{"pid", 4242}, {"host", "hsm-host-a"}};
  EXPECT_FALSE(PublisherHoldsRotationLock(holder, json{{"pid", 4242}, {"host", "hsm-host-b"}}));
  // A publisher that names no host cannot be told apart from another
  // host's process: not taken.
  EXPECT_FALSE(PublisherHoldsRotationLock(holder, json{{"pid", 4242}, {"host", nullptr}}));
  EXPECT_FALSE(PublisherHoldsRotationLock(holder, json{{"pid", 4242}}));
}

TEST(PublisherHoldsRotationLockTest, AnotherPidOrNoHolder) {
  const json published{{"pid", 4242}, {"host", "hsm-host-a"}};
  EXPECT_FALSE(PublisherHoldsRotationLock(json{{"pid", 4243}, {"host", "hsm-host-a"}}, published));
  EXPECT_FALSE(PublisherHoldsRotationLock(json(nullptr), published));
  EXPECT_FALSE(
      PublisherHoldsRotationLock(json{{"pid", "4242"}, {"host", "hsm-host-a"}}, published));
  EXPECT_FALSE(PublisherHoldsRotationLock(json{{"pid", 4242}, {"host", "hsm-host-a"}}, nullptr));
}

TEST(PublisherHoldsRotationLockTest, HolderWithoutHostNameMatchesByPid) {
  // gethostname failed for the holder (it recorded ""): the pid is all
  // there is to compare.
  EXPECT_TRUE(PublisherHoldsRotationLock(json{{"pid", 7}, {"host", ""}},
                                         json{{"pid", 7}, {"host", "hsm-host-a"}}));
}

// ParseSecretBody parses as json::parse does, one JSON value, and no more.
TEST(ParseSecretBodyTest, ParsesOneValueLikeJsonParse) {
  for (const char* text : {R"({"signers": [{"file": "a.key", "password": "pw with \" quote"}]})",
                           "{}", "[1, 2]", R"("a string")", "  {\"a\": 1}  ", "12"}) {
    EXPECT_EQ(ParseSecretBody(text), json::parse(text)) << text;
  }
}

TEST(ParseSecretBodyTest, RefusesWhatIsNotOneJsonValue) {
  for (const char* text : {"", "1, 2", R"({"a": 1}, {"b": 2})", R"({"a": 1}, "xxx")", R"({"a": "b)",
                           "{", R"({"a": 1}])", "null null"}) {
    EXPECT_TRUE(ParseSecretBody(text).is_discarded()) << text;
  }
}

}  // namespace
}  // namespace hsmsim::console

#include "host/console/console_api.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <string_view>

#include "common/check.h"
#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace hsmsim::console {
namespace {

using json = nlohmann::json;

constexpr std::string_view kCssMarker = "/*@CONSOLE_CSS@*/";
constexpr std::string_view kJsMarker = "//@CONSOLE_JS@";

// Sha256Source returns the CSP source 'sha256-BASE64' of `text`.
std::string Sha256Source(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(b64, digest, SHA256_DIGEST_LENGTH);
  return "'sha256-" + std::string(reinterpret_cast<const char*>(b64), n) + "'";
}

void ReplaceOnce(std::string& text, std::string_view marker, std::string_view with) {
  const size_t at = text.find(marker);
  // The assets are built in: a missing or doubled marker is a bug of this build.
  HSMSIM_CHECK(at != std::string::npos);
  HSMSIM_CHECK(text.find(marker, at + 1) == std::string::npos);
  text.replace(at, marker.size(), with);
}

// Dump returns `doc` as text; a string that is not UTF-8 (a name a unit
// reports, say) is shown with U+FFFD in place of its bad bytes rather than
// stopping the console.
std::string Dump(const json& doc, int indent) {
  return doc.dump(indent, ' ', false, json::error_handler_t::replace);
}

// SplitTarget returns the path and the query (after '?', empty if none).
std::pair<std::string_view, std::string_view> SplitTarget(std::string_view target) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

// QueryToken returns the value of the query's first `token=` parameter.
std::string_view QueryToken(std::string_view query) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    if (param.substr(0, 6) == "token=") return param.substr(6);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

// CommonHeaders go on every answer: nothing is cached, sniffed, framed or
// sent on as a referrer.
void AddCommonHeaders(HttpResponse& r) {
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
}

}  // namespace

json ParseSecretBody(std::string_view body) {
  // The lexer's buffers only grow, and each token is written into them
  // from their first byte: a last token longer than the whole body
  // overwrites every byte a password could have left there, before any
  // buffer is grown (and its old storage freed).
  const std::string filler(body.size() + 1, 'x');
  std::string text;
  text.reserve(body.size() + filler.size() + 8);  // never reallocated: no stray copy
  text.append("[").append(body).append(",\"").append(filler).append("\"]");
  json wrapped = json::parse(text, nullptr, /*allow_exceptions=*/false);
  WipeString(&text);
  // Exactly [BODY, FILLER]: a body that is not one JSON value ("1, 2", or
  // one ending in a string of its own) does not parse as such.
  if (wrapped.is_discarded() || !wrapped.is_array() || wrapped.size() != 2 ||
      wrapped[1] != filler) {
    return json(json::value_t::discarded);
  }
  return std::move(wrapped[0]);
}

bool PublisherHoldsRotationLock(const json& holder, const json& published) {
  if (!holder.is_object() || !published.is_object()) return false;
  const json pid = holder.value("pid", json());
  if (!pid.is_number_integer() || published.value("pid", json()) != pid) return false;
  const json host = holder.value("host", json());
  if (!host.is_string() || host.get<std::string>().empty()) return true;
  return published.value("host", json()) == host;
}

ConsolePage ComposePage(std::string_view html, std::string_view style, std::string_view script) {
  ConsolePage page{std::string(html), ""};
  ReplaceOnce(page.html, kCssMarker, style);
  ReplaceOnce(page.html, kJsMarker, script);
  page.policy = "default-src 'none'; script-src " + Sha256Source(script) + "; style-src " +
                Sha256Source(style) +
                "; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'";
  return page;
}

ConsoleApi::ConsoleApi(AccessToken token, ConsolePage page, std::function<void()> refresh,
                       ConsoleActions actions)
    : token_(std::move(token)),
      page_(std::move(page)),
      refresh_(std::move(refresh)),
      actions_(std::move(actions)) {
  views_ = json::object();
}

bool ConsoleApi::SetSnapshot(json views) {
  std::lock_guard<std::mutex> lock(mu_);
  if (views == views_) return false;
  views_ = std::move(views);
  ++version_;
  return true;
}

std::string ConsoleApi::SnapshotEvent() const {
  std::lock_guard<std::mutex> lock(mu_);
  json doc = views_;
  doc["version"] = version_;
  // dump() without indent is one line: a data line may not hold a newline.
  return "event: snapshot\nid: " + std::to_string(version_) + "\ndata: " + Dump(doc, -1) + "\n\n";
}

HttpResponse ConsoleApi::Json(int status, const json& doc) const {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = Dump(doc, 2) + "\n";
  AddCommonHeaders(r);
  return r;
}

HttpResponse ConsoleApi::Unauthorized() const {
  HttpResponse r =
      Json(401, json{{"ok", false},
                     {"error",
                      {{"code", 16},
                       {"reason", std::string(reason::kConsoleUnauthorized)},
                       {"message",
                        "this console needs its access token: open the URL hsmctl console "
                        "printed (API requests: header Authorization: Bearer TOKEN)"}}}});
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"hsmctl console\"");
  return r;
}

HttpResponse ConsoleApi::SelectUnits(const HttpRequest& request) const {
  // JSON only: a form or a text/plain body (what a page of another site
  // could send without asking) is not even read.
  if (request.content_type.rfind("application/json", 0) != 0) {
    return Json(415, json{{"ok", false}, {"message", "the body must be application/json"}});
  }
  const json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  const bool valid = body.is_object() && body.contains("units") && body["units"].is_array() &&
                     !body["units"].empty() && body["units"].size() <= 64 &&
                     body.contains("selected") && body["selected"].is_boolean() &&
                     std::all_of(body["units"].begin(), body["units"].end(),
                                 [](const json& u) { return u.is_string(); });
  if (!valid) {
    return Json(400, json{{"ok", false},
                          {"message",
                           "the body must be {\"units\": [NAME, ...] (1 to 64 names), "
                           "\"selected\": true|false}"}});
  }
  auto done = actions_.select_units(body["units"].get<std::vector<std::string>>(),
                                    body["selected"].get<bool>());
  if (refresh_) refresh_();
  if (!done.ok()) {
    return Json(422, json{{"ok", false},
                          {"error",
                           {{"code", static_cast<int>(done.status().code())},
                            {"reason", ReasonOf(done.status())},
                            {"message", std::string(done.status().message())}}}});
  }
  return Json(200, *done);
}

HttpResponse ConsoleApi::StartAction(std::string_view name, const HttpRequest& request) const {
  if (request.content_type.rfind("application/json", 0) != 0) {
    return Json(415, json{{"ok", false}, {"message", "the body must be application/json"}});
  }
  json body = ParseSecretBody(request.body);
  if (body.is_discarded()) {
    return Json(400, json{{"ok", false}, {"message", "the body is not JSON"}});
  }
  auto command = BuildActionCommand(name, body);
  if (!command.ok()) {
    const int status = absl::IsNotFound(command.status()) ? 404 : 400;
    return Json(status, json{{"ok", false}, {"message", std::string(command.status().message())}});
  }
  const std::string action = command->name;
  const std::string display = command->display;
  auto id = actions_.start_action(*std::move(command));
  if (!id.ok()) {
    const int status = absl::IsFailedPrecondition(id.status()) ? 409 : 500;
    return Json(status, json{{"ok", false}, {"message", std::string(id.status().message())}});
  }
  if (refresh_) refresh_();
  return Json(202, json{{"ok", true}, {"id", *id}, {"action", action}, {"command", display}});
}

HttpResponse ConsoleApi::Handle(const HttpRequest& request) const {
  const auto [path, query] = SplitTarget(request.target);
  const bool is_page = path == "/" || path == "/index.html";
  const bool header_ok = token_.MatchesBearer(request.authorization);
  // The query carries the token for the page only, and only for GET: a
  // state-changing request must carry it in a header no other site can set.
  const bool query_ok = is_page && request.method == "GET" && token_.Matches(QueryToken(query));
  if (!header_ok && !query_ok) return Unauthorized();

  const bool get = request.method == "GET";
  auto method_not_allowed = [&](const char* allow) {
    HttpResponse r = Json(405, json{{"ok", false}, {"message", "method not allowed"}});
    r.headers.emplace_back("Allow", allow);
    return r;
  };
  if (is_page) {
    if (!get) return method_not_allowed("GET");
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = page_.html;
    AddCommonHeaders(r);
    r.headers.emplace_back("Content-Security-Policy", page_.policy);
    return r;
  }
  if (path == "/api/events") {
    if (!get) return method_not_allowed("GET");
    HttpResponse r;
    r.content_type = "text/event-stream";
    r.event_stream = true;
    AddCommonHeaders(r);
    return r;
  }
  if (path == "/api/refresh") {
    if (request.method != "POST") return method_not_allowed("POST");
    if (refresh_) refresh_();
    return Json(202, json{{"ok", true}});
  }
  if (path == "/api/units/select" && actions_.select_units) {
    if (request.method != "POST") return method_not_allowed("POST");
    return SelectUnits(request);
  }
  constexpr std::string_view kActionsPrefix = "/api/actions/";
  if (path.rfind(kActionsPrefix, 0) == 0 && actions_.start_action) {
    if (request.method != "POST") return method_not_allowed("POST");
    return StartAction(path.substr(kActionsPrefix.size()), request);
  }
  if (path == "/api/action" && actions_.action_state) {
    if (!get) return method_not_allowed("GET");
    return Json(200, actions_.action_state());
  }
  if (path == "/api/snapshot") {
    if (!get) return method_not_allowed("GET");
    std::lock_guard<std::mutex> lock(mu_);
    json doc = views_;
    doc["version"] = version_;
    return Json(200, doc);
  }
  for (const ConsoleView& view : kConsoleViews) {
    if (path != view.path) continue;
    if (!get) return method_not_allowed("GET");
    std::lock_guard<std::mutex> lock(mu_);
    return Json(200, views_.contains(view.key) ? views_[view.key] : json(nullptr));
  }
  return Json(404, json{{"ok", false}, {"message", "no such page or API path"}});
}

}  // namespace hsmsim::console

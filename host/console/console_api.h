// ConsoleApi: what hsmctl console answers to each HTTP request, without any
// socket: the access token check, the page, the JSON API and the start of
// the event stream (docs/console.md). ConsoleServer (console_server.h) reads
// the requests off the sockets and writes these answers.
#ifndef HSMSIM_HOST_CONSOLE_CONSOLE_API_H_
#define HSMSIM_HOST_CONSOLE_CONSOLE_API_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "host/console/access_token.h"
#include "host/console/console_actions.h"

namespace hsmsim::console {

// HttpRequest is what ConsoleApi needs of a request: the method ("GET"),
// the target as sent ("/api/units", "/?token=..."), the Authorization
// header's value (empty when absent), and the Content-Type and body of a
// POST. Cookies are never read.
struct HttpRequest {
  std::string method;
  std::string target;
  std::string authorization;
  std::string content_type;
  std::string body;
};

// HttpResponse is a whole answer (status, Content-Type, extra headers,
// body), or with `event_stream` the start of a text/event-stream whose
// events ConsoleServer writes as snapshots are published.
struct HttpResponse {
  int status = 200;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool event_stream = false;
};

// The views of a fleet snapshot, each the document of one hsmctl command's
// --json (host/hsmctl/json_reports.h), except rotation_progress (what the
// console derives from the journal's keys done over its readings:
// docs/console.md), and the API path serving it. The snapshot also holds
// "action" (GET /api/action).
struct ConsoleView {
  const char* key;   // member of the snapshot object
  const char* path;  // GET path
};
inline constexpr ConsoleView kConsoleViews[] = {
    {"units", "/api/units"},       {"master_keys", "/api/master-keys"},
    {"rotation", "/api/rotation"}, {"recovery", "/api/recovery"},
    {"audit", "/api/audit"},       {"rotation_progress", "/api/rotation-progress"},
};

// ConsolePage is the one page the console serves and the
// Content-Security-Policy it is served with.
struct ConsolePage {
  std::string html;
  std::string policy;
};

// ComposePage returns the console page: `html` with the `style` and
// `script` assets put in place of its /*@CONSOLE_CSS@*/ and //@CONSOLE_JS@
// markers (each must occur once), and the policy that lets only those two
// run (by their SHA-256) and connect only back to this server: no other
// origin, no other inline code, no external fetch.
ConsolePage ComposePage(std::string_view html, std::string_view style, std::string_view script);

// ParseSecretBody parses `body`, a request body that may hold passwords
// and PINs, as json::parse does (discarded when it is not one JSON value),
// so that the parser keeps no copy of them: nlohmann's lexer holds the
// text of the last token it read, in a string buffer and a buffer of raw
// characters of its own, freed without being zeroed. `body` is parsed as
// the first element of an array whose second and last element is a string
// longer than the whole body, which overwrites every byte of those buffers
// before they are grown or freed; the text parsed is wiped after. The
// caller wipes `body` and the strings of the result (BuildActionCommand
// wipes the passwords it takes). Not covered: the lexer's buffers after a
// body that does not parse (they hold the text up to the error).
nlohmann::json ParseSecretBody(std::string_view body);

// PublisherHoldsRotationLock is true when the published rotation progress
// `published` (ReadPublishedProgress: {"pid", "host", ...}) was written by
// the process that holds the rotation lock, `holder` (`mk rotate --status
// --json`'s "lock_holder": {"pid", "host", ...}, or null): the same integer
// pid, and the same host name when the holder names one (a PostgreSQL
// keystore shared by several hosts: the same pid on another host is
// another process). False for anything of another shape.
bool PublisherHoldsRotationLock(const nlohmann::json& holder, const nlohmann::json& published);

// ConsoleActions are the changes the page may ask for, each done by the
// code of the hsmctl command that does it (null: not offered, 404).
struct ConsoleActions {
  // `hsmctl unit add` (`selected`) or `unit rm` of `units`: returns that
  // command's --json document, or its error.
  std::function<absl::StatusOr<nlohmann::json>(const std::vector<std::string>& units,
                                               bool selected)>
      select_units;
  // Starts a signed action (console_actions.h: ActionRunner::Start) and
  // returns its id; FAILED_PRECONDITION while another one runs.
  std::function<absl::StatusOr<int64_t>(ActionCommand)> start_action;
  // The actions' state (ActionRunner::State).
  std::function<nlohmann::json()> action_state;
};

// ConsoleApi answers requests from the latest snapshot of the fleet.
// Thread-safe: SetSnapshot (the fleet watcher's thread) and Handle (the
// server's thread) may run at the same time.
class ConsoleApi {
 public:
  // `token` is the access token; `page` the page to serve (ComposePage);
  // `refresh` (may be null) is called by POST /api/refresh, and after an
  // action, to have the fleet read again at once; `actions` are done on
  // the server's thread, one at a time.
  ConsoleApi(AccessToken token, ConsolePage page, std::function<void()> refresh,
             ConsoleActions actions = {});

  // SetSnapshot makes `views` (an object with a member per kConsoleViews
  // key) the current snapshot when it differs from the current one, and
  // returns whether it did; the snapshot's version counts the changes.
  bool SetSnapshot(nlohmann::json views);

  // SnapshotEvent returns the current snapshot as one server-sent event:
  // "event: snapshot\nid: VERSION\ndata: {\"version\": V, VIEWS...}\n\n".
  std::string SnapshotEvent() const;

  // Handle answers `request`:
  //  - 401 without the token: every path, before anything else. The page
  //    (GET / and /index.html) takes it in the Authorization header or in
  //    the query (?token=, the URL hsmctl console prints); everything else
  //    in the Authorization header only ("Bearer TOKEN"), never a query or
  //    a cookie, so another site cannot make the browser send it;
  //  - GET /api/snapshot: every view and the version; GET of a
  //    kConsoleViews path: that view; GET /api/events: an event stream;
  //    POST /api/refresh: 202 after asking for a new reading;
  //  - POST /api/units/select, Content-Type application/json, body
  //    {"units": ["unit3"], "selected": false}: actions.select_units; 200
  //    and the command's document, 400 for a bad body, 415 for another
  //    Content-Type, 422 and {"ok": false, "error"} when the command fails;
  //  - POST /api/actions/NAME (a kConsoleActionNames name), Content-Type
  //    application/json, body as BuildActionCommand takes it: 202
  //    {"ok": true, "id", "action", "command"} once the command started,
  //    400 for a bad body, 404 for another NAME, 409 while another action
  //    runs (nothing started), 415 for another Content-Type;
  //    GET /api/action: actions.action_state();
  //  - 405 for another method on those paths, 404 for another path.
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  HttpResponse Unauthorized() const;
  HttpResponse SelectUnits(const HttpRequest& request) const;
  HttpResponse StartAction(std::string_view name, const HttpRequest& request) const;
  HttpResponse Json(int status, const nlohmann::json& doc) const;

  const AccessToken token_;
  const ConsolePage page_;
  const std::function<void()> refresh_;
  const ConsoleActions actions_;
  mutable std::mutex mu_;
  nlohmann::json views_;  // guarded by mu_
  int64_t version_ = 0;   // guarded by mu_
};

}  // namespace hsmsim::console

#endif  // HSMSIM_HOST_CONSOLE_CONSOLE_API_H_

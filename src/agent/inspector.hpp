// The agent's request inspector (issue 20): what went through the agent's http tunnels, kept in
// a bounded ring, and the JSON API over it in ngrok's agent-API shapes (docs/inspector.md).
//
// Capture: forward_http() fills an ExchangeCapture (copies of the raw bytes each way, up to the
// body cap, and a few timestamps) only when it is given one; it never waits for the inspector.
// Inspector::add() moves the finished capture into the ring, evicting the oldest entries until
// the ring is within its byte bound. Heads are parsed, bodies decoded and headers redacted only
// when the API is asked, never on the relay's path.
//
// Everything runs on the agent's one executor: no locks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/inspector_events.hpp"
#include "common/base64.hpp"
#include "common/result.hpp"
#include "http/chunked.hpp"

namespace tunnel::agent {

// What forward_http() records of one exchange.
struct ExchangeCapture {
  std::size_t body_cap = 0;  // body bytes kept per direction

  std::string request_raw;  // the head as sent to the app, then body bytes up to the cap
  std::size_t request_head_size = 0;
  std::uint64_t request_body_size = 0;  // every body byte, kept or not
  std::string response_raw;             // head, then body bytes up to the cap (as sent: chunked)
  std::size_t response_head_size = 0;   // 0 until the final head was read
  std::uint64_t response_body_size = 0;
  std::chrono::steady_clock::time_point opened, app_head, ended;
  std::string client;  // from the PROXY address line, when the tunnel has one
  // After a 101: when each read's bytes arrived, by their offset in the body bytes, for the
  // WebSocket frames' times (the first kMaxMarks reads each way, while bytes are still kept).
  struct ByteMark {
    std::uint64_t offset = 0;
    std::chrono::steady_clock::time_point at;
  };
  static constexpr std::size_t kMaxMarks = 1024;
  std::vector<ByteMark> request_marks, response_marks;
  void mark_request(std::chrono::steady_clock::time_point now) {
    if (request_marks.size() < kMaxMarks && request_raw.size() - request_head_size < body_cap) {
      request_marks.push_back({request_body_size, now});
    }
  }
  void mark_response(std::chrono::steady_clock::time_point now) {
    if (response_marks.size() < kMaxMarks && response_raw.size() - response_head_size < body_cap) {
      response_marks.push_back({response_body_size, now});
    }
  }

  // Appends request body bytes (after the head), keeping at most body_cap of them.
  void add_request_body(const char* data, std::size_t n) {
    request_body_size += n;
    const std::size_t kept = request_raw.size() - request_head_size;
    if (kept < body_cap) request_raw.append(data, std::min(n, body_cap - kept));
  }
  // Appends response bytes as they go to the core; `head_end` is where the final head ends in
  // them (0 when it does not end in this piece). Head bytes are always kept (the parser bounds
  // them), body bytes up to body_cap.
  void add_response(const char* data, std::size_t n, bool head_seen_before, std::size_t head_end);
  void reset_response() {
    response_raw.clear();
    response_head_size = 0;
    response_body_size = 0;
  }
};

struct InspectorOptions {
  std::size_t db_size = 50 * 1024 * 1024;   // bytes of captures kept in all
  std::size_t body_cap = 10 * 1024 * 1024;  // body bytes kept per direction and exchange
  // Header fields shown as "[redacted]" in the API (case-insensitive).
  std::vector<std::string> redact = {"Authorization", "Cookie", "Set-Cookie",
                                     "Proxy-Authorization"};
};

// One exchange in the ring.
struct Exchange {
  std::string id;           // "ex_<n>"
  std::string tunnel_name;  // the tunnel's public URL or name
  std::string local;        // where it was forwarded
  std::string error;        // why it did not complete; "" when it did
  std::string replay_of;    // the id of the exchange this one replayed; "" for live traffic
  std::chrono::system_clock::time_point start;
  ExchangeCapture capture;
  std::size_t cost() const;  // bytes counted against db_size
};

// What POST /api/requests/http sends to the app: the original request, or an edited copy.
struct ReplayPlan {
  std::string local;   // where the original went ("127.0.0.1:3000")
  std::string bytes;   // the whole request
  std::string method;  // for reading the response (HEAD has no body)
  std::string tunnel_name;
  std::string replay_of;
};

// A public tunnel as the core confirmed it, for GET /api/tunnels.
struct InspectedTunnel {
  std::string name, public_url, proto, local;
};

// An HTTP answer of the API.
struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class Inspector {
 public:
  explicit Inspector(InspectorOptions options);

  const InspectorOptions& options() const { return options_; }
  // A capture for a new exchange, or nullptr when the inspector keeps nothing (db_size 0).
  std::unique_ptr<ExchangeCapture> begin() const;
  // Keeps a finished exchange; evicts the oldest while over db_size. Returns its id.
  std::string add(Exchange exchange);
  void clear() { ring_.clear(), bytes_ = 0; }

  std::size_t size() const { return ring_.size(); }
  std::size_t bytes() const { return bytes_; }
  std::uint64_t evicted() const { return evicted_; }
  const Exchange* find(std::string_view id) const;

  void set_tunnels(std::vector<InspectedTunnel> tunnels) { tunnels_ = std::move(tunnels); }
  // The name of the session's tunnel number `index` ("" before the core confirmed it).
  std::string tunnel_name(std::size_t index) const {
    return index < tunnels_.size() ? tunnels_[index].name : std::string();
  }
  void set_address(std::string address) { address_ = std::move(address); }
  // Live updates: each kept exchange is published as an SSE event "request" (its summary:
  // the entry without headers and bodies), DELETE as "cleared". Shared: a stream's coroutine
  // may outlive the inspector when the io_context goes away.
  const std::shared_ptr<EventHub>& events() const { return events_; }

  // The API without the network: GET /api/requests/http[?limit=N&tunnel_name=T],
  // GET /api/requests/http/:id, DELETE /api/requests/http, GET /api/tunnels, GET /api/status,
  // GET /api/requests/http.har[?ids=a,b&redact=false] (HAR 1.2, oldest first), and the page
  // (GET /, /inspector.js, /inspector.css). The list's filters: path (the target contains
  // it), method, status (404 or 4xx), min_duration_ms, max_duration_ms, min_size, max_size
  // (request + response body bytes), header (Name or Name:value, value contained), summary=true
  // (entries as the event stream gives them).
  // `target` is the request-target ("/api/requests/http?limit=5").
  ApiResponse handle(std::string_view method, std::string_view target) const;
  // POST /api/requests/http: {"id": ID} replays that exchange as it was; "method", "uri",
  // "headers" ({"Name": "value"} or {"Name": ["v1", "v2"]}: replace those fields; null
  // removes one) and "body" (text) or "body_base64" edit it first. The
  // error's kind says the API answer (problem_response): invalid (400), not_found (404),
  // conflict (409: the original body was cut at the cap, or its head does not parse).
  common::Result<ReplayPlan> plan_replay(std::string_view json_body) const;
  // POST /api/requests/http/import[?local=HOST:PORT]: the entries of a HAR document
  // (agent/inspector_har.hpp) become exchanges, replayable to their "_local" or to `local`.
  // 201 {"imported": N, "ids": [...]}; 400 naming the entry and field that is wrong.
  ApiResponse import_har(std::string_view body, std::string_view target);
  // DELETE needs a mutable inspector: handle_mutating() covers every route.
  ApiResponse handle_mutating(std::string_view method, std::string_view target);

 private:
  InspectorOptions options_;
  std::deque<Exchange> ring_;  // oldest first
  std::size_t bytes_ = 0;
  std::uint64_t next_id_ = 1;
  std::uint64_t evicted_ = 0;
  std::vector<InspectedTunnel> tunnels_;
  std::string address_;
  std::shared_ptr<EventHub> events_ = std::make_shared<EventHub>();
};

// A file of the inspector's page (src/agent/page/*, compiled in): "/" or "/index.html",
// "/inspector.js", "/inspector.css"; nullptr for any other path.
struct PageFile {
  std::string content_type;
  std::string body;
};
const PageFile* inspector_page_file(std::string_view path);

// Helpers, pure, for the API and its tests.
// Whether the captured request asked to switch protocols (Upgrade), so a 101 answers it.
bool asked_upgrade(const ExchangeCapture& capture);
using common::base64_decode;  // common/base64.hpp
using common::base64_encode;
// UTF-8 without control characters other than tab, CR and LF (a cut last character is fine).
bool is_text(std::string_view bytes);
// The API's JSON error answer for an Error, its status by kind (invalid 400, not_found 404,
// conflict 409, unavailable 503, internal 500).
ApiResponse problem_response(const common::Error& error);
using http::dechunk;  // http/chunked.hpp
// ISO 8601 in UTC with microseconds: "2026-12-07T21:40:00.123456Z" (the API's and HAR's times).
std::string iso_time(std::chrono::system_clock::time_point t);

}  // namespace tunnel::agent

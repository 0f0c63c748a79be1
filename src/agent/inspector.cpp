#include "agent/inspector.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <ctime>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>
#include <vector>

#include "agent/body_decode.hpp"
#include "agent/inspector_har.hpp"
#include "agent/websocket_frames.hpp"
#include "common/version.hpp"
#include "http/message_parser.hpp"

namespace tunnel::agent {
namespace {

using http::MessageParser;
using nlohmann::json;
using Step = MessageParser::Step;

constexpr std::string_view kRedacted = "[redacted]";
constexpr std::size_t kDefaultLimit = 50;
constexpr std::size_t kEntryOverhead = 512;  // the Exchange's fields beyond the raw bytes

bool redacted(const InspectorOptions& options, std::string_view name) {
  return std::any_of(options.redact.begin(), options.redact.end(),
                     [&](const std::string& r) { return http::iequals(r, name); });
}

// Header fields as ngrok shows them: {"Name": ["value", ...]}, redacted as configured.
json header_map(const http::HeaderFields& fields, const InspectorOptions& options) {
  json out = json::object();
  for (const auto& h : fields.headers) {
    auto& values = out[h.name];
    if (values.is_null()) values = json::array();
    values.push_back(redacted(options, h.name) ? std::string(kRedacted) : h.value);
  }
  return out;
}

bool needs_redaction(const http::HeaderFields& fields, const InspectorOptions& options) {
  return std::any_of(fields.headers.begin(), fields.headers.end(),
                     [&](const http::Header& h) { return redacted(options, h.name); });
}

template <typename Head>
void redact(Head& head, const InspectorOptions& options) {
  for (auto& h : head.headers) {
    if (redacted(options, h.name)) h.value = kRedacted;
  }
}

std::string proto(int major, int minor) {
  return "HTTP/" + std::to_string(major) + "." + std::to_string(minor);
}

// How a page shows a body: "json", "xml" and "form" pretty-printed, "text" as it is, "binary"
// in hex.
std::string body_kind(std::string_view data, const std::string* type) {
  if (!is_text(data)) return "binary";
  if (type == nullptr) return "text";
  std::string t(*type);
  std::transform(t.begin(), t.end(), t.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (t.find("json") != std::string::npos) return "json";
  if (t.find("xml") != std::string::npos) return "xml";
  if (t.find("application/x-www-form-urlencoded") != std::string::npos) return "form";
  return "text";
}

// The body as the API shows it: its size, what was kept, and the data (chunk framing removed).
// A Content-Encoding body is decoded too, up to `max_decoded` bytes.
json body_json(std::string_view kept, std::uint64_t size, bool chunked,
               const http::HeaderFields& fields, std::size_t max_decoded) {
  const std::string data = chunked ? dechunk(kept) : std::string(kept);
  json out;
  out["size"] = size;  // bytes on the wire, framing included
  out["captured"] = kept.size();
  out["truncated"] = kept.size() < size;
  out["base64"] = base64_encode(data);
  const std::string* type = fields.find("Content-Type");
  const std::string* coding = fields.find("Content-Encoding");
  const bool encoded = coding != nullptr && !http::iequals(*coding, "identity");
  const std::string* shown = &data;
  common::Result<DecodedBody> decoded = DecodedBody{};
  if (encoded) {
    out["content_encoding"] = *coding;
    decoded = decode_body(*coding, data, max_decoded);
    if (!decoded) {
      out["decode_error"] = decoded.error().message;
      out["kind"] = "binary";
      return out;
    }
    const DecodedBody& d = decoded.value();
    out["decoded"] = {{"size", d.data.size()},
                      {"truncated", d.truncated},
                      {"incomplete", d.incomplete},
                      {"base64", base64_encode(d.data)}};
    shown = &d.data;
  }
  const std::string kind = body_kind(*shown, type);
  out["kind"] = kind;
  if (kind != "binary") out["text"] = *shown;
  if (kind == "json" || kind == "xml" || kind == "form") out["pretty"] = true;
  return out;
}

std::int64_t nanos(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// `full`: with the headers, the body and the raw bytes; else the request line and sizes only.
json request_json(const Exchange& e, const InspectorOptions& options, bool full) {
  const ExchangeCapture& c = e.capture;
  const std::string_view head(c.request_raw.data(), c.request_head_size);
  const std::string_view body = std::string_view(c.request_raw).substr(c.request_head_size);
  MessageParser parser(MessageParser::Kind::kRequest);
  const Step step = parser.parse(head);
  json out;
  if (step.type != Step::kHead && step.type != Step::kMessageEnd) {
    out["error"] = "the head does not parse: " + parser.error();
    out["raw"] = base64_encode(c.request_raw);
    return out;
  }
  http::RequestHead& h = parser.request();
  out["method"] = h.method;
  out["proto"] = proto(h.version_major, h.version_minor);
  out["uri"] = h.target;
  if (!full) {
    out["body"] = {{"size", c.request_body_size}};
    if (const std::string* xff = h.find("X-Forwarded-For"); xff != nullptr) {
      out["headers"] = {{"X-Forwarded-For", {*xff}}};  // for remote_addr
    }
    return out;
  }
  out["headers"] = header_map(h, options);
  out["body"] = body_json(body, c.request_body_size, parser.chunked(), h, options.body_cap);
  if (needs_redaction(h, options)) {
    redact(h, options);
    out["raw"] = base64_encode(h.serialize() + std::string(body));
  } else {
    out["raw"] = base64_encode(c.request_raw);
  }
  return out;
}

json response_json(const Exchange& e, std::string_view method, const InspectorOptions& options,
                   bool full) {
  const ExchangeCapture& c = e.capture;
  if (c.response_head_size == 0) return nullptr;
  const std::string_view all(c.response_raw);
  const std::string_view head = all.substr(0, c.response_head_size);
  const std::string_view body = all.substr(c.response_head_size);
  MessageParser parser(MessageParser::Kind::kResponse);
  parser.expect_response_to(method, asked_upgrade(e.capture));
  std::size_t at = 0;
  std::size_t final_start = 0;
  bool found = false;
  while (!found && at <= head.size()) {
    const Step step = parser.parse(head.substr(at));
    if (step.type == Step::kHead && !parser.is_interim()) {
      found = true;
    } else if (step.type == Step::kHead || step.type == Step::kMessageEnd) {
      at += step.consumed;
      if (step.type == Step::kMessageEnd) final_start = at;  // after an interim response
    } else {
      break;
    }
  }
  json out;
  if (!found) {
    out["error"] = "the head does not parse: " + parser.error();
    out["raw"] = base64_encode(all);
    return out;
  }
  http::ResponseHead& h = parser.response();
  out["status_code"] = h.status;
  const std::string line = h.serialize();  // "HTTP/1.1 200 OK\r\n..."
  const std::size_t sp = line.find(' ');
  const std::size_t eol = line.find("\r\n");
  out["status"] = line.substr(sp + 1, eol - sp - 1);
  out["proto"] = proto(h.version_major, h.version_minor);
  if (!full) {
    out["body"] = {{"size", c.response_body_size}};
    return out;
  }
  out["headers"] = header_map(h, options);
  out["body"] = body_json(body, c.response_body_size, parser.chunked(), h, options.body_cap);
  if (needs_redaction(h, options)) {
    redact(h, options);
    out["raw"] =
        base64_encode(std::string(all.substr(0, final_start)) + h.serialize() + std::string(body));
  } else {
    out["raw"] = base64_encode(all);
  }
  return out;
}

// The frames of an upgraded (101) exchange, both ways, in the order they arrived (as far as
// the marks tell), at most kMaxWebSocketFrames of them: {"websocket": summary, "frames": [...]}.
json websocket_json(const Exchange& e) {
  using Mark = ExchangeCapture::ByteMark;
  const ExchangeCapture& c = e.capture;
  const WebSocketLimits limits;
  struct Row {
    bool to_app;
    const WebSocketFrame* frame;
    std::optional<std::int64_t> time;  // ns after the exchange opened
    bool text_message;
  };
  std::vector<Row> rows;
  json summary;
  const auto side = [&](bool to_app, std::string_view bytes, const std::vector<Mark>& marks,
                        WebSocketFrames& parsed) {
    parsed = parse_websocket_frames(bytes, limits);
    json s;
    s["frames"] = parsed.total;
    s["incomplete"] = parsed.incomplete;
    if (!parsed.error.empty()) s["error"] = parsed.error;
    summary[to_app ? "to_app" : "from_app"] = std::move(s);
    bool text_message = false;  // the message a continuation frame continues
    for (const auto& f : parsed.frames) {
      if (f.opcode == 0x1 || f.opcode == 0x2) text_message = f.opcode == 0x1;
      const auto after =
          std::upper_bound(marks.begin(), marks.end(), f.offset,
                           [](std::uint64_t offset, const Mark& m) { return offset < m.offset; });
      std::optional<std::int64_t> time;
      if (after != marks.begin()) time = nanos(std::prev(after)->at - c.opened);
      rows.push_back({to_app, &f, time, text_message});
    }
  };
  WebSocketFrames to_app;
  WebSocketFrames from_app;
  side(true, std::string_view(c.request_raw).substr(c.request_head_size), c.request_marks, to_app);
  side(false, std::string_view(c.response_raw).substr(c.response_head_size), c.response_marks,
       from_app);
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.time.value_or(std::numeric_limits<std::int64_t>::max()) <
           b.time.value_or(std::numeric_limits<std::int64_t>::max());
  });
  if (rows.size() > limits.max_frames) rows.resize(limits.max_frames);
  json frames = json::array();
  for (const Row& r : rows) {
    const WebSocketFrame& f = *r.frame;
    json j;
    j["direction"] = r.to_app ? "to_app" : "from_app";
    j["opcode"] = f.opcode;
    j["opcode_name"] = websocket_opcode_name(f.opcode);
    j["fin"] = f.fin;
    j["size"] = f.size;
    j["time"] = r.time ? json(*r.time) : json(nullptr);
    j["masked"] = f.masked;
    if (f.rsv1) j["compressed"] = true;
    j["truncated"] = f.cut;
    if (f.opcode == 0x8 && f.payload.size() >= 2) {
      j["close_code"] = (static_cast<unsigned char>(f.payload[0]) << 8) |
                        static_cast<unsigned char>(f.payload[1]);
      if (is_text(f.payload.substr(2))) j["close_reason"] = f.payload.substr(2);
    }
    const bool text = (f.opcode == 0x1 || (f.opcode == 0x0 && r.text_message) || f.opcode == 0x9 ||
                       f.opcode == 0xA) &&
                      !f.rsv1 && is_text(f.payload);
    if (text) {
      j["text"] = f.payload;
    } else {
      j["base64"] = base64_encode(f.payload);
    }
    frames.push_back(std::move(j));
  }
  summary["shown"] = frames.size();
  json out;
  out["websocket"] = std::move(summary);
  out["frames"] = std::move(frames);
  return out;
}

json exchange_json(const Exchange& e, const InspectorOptions& options, bool full = true) {
  const ExchangeCapture& c = e.capture;
  json out;
  out["uri"] = "/api/requests/http/" + e.id;
  out["id"] = e.id;
  out["tunnel_name"] = e.tunnel_name;
  out["local"] = e.local;
  out["remote_addr"] = c.client;
  out["start"] = iso_time(e.start);
  out["duration"] = nanos(c.ended - c.opened);  // ns, as ngrok
  json timing;
  timing["to_app_head"] = c.app_head == std::chrono::steady_clock::time_point{}
                              ? json(nullptr)
                              : json(nanos(c.app_head - c.opened));
  timing["total"] = nanos(c.ended - c.opened);
  out["timing"] = timing;
  json request = request_json(e, options, full);
  const std::string method = request.value("method", std::string("GET"));
  if (out["remote_addr"].get<std::string>().empty() && request.contains("headers")) {
    // Without a PROXY line, the core's X-Forwarded-For names the client (its last hop).
    const json& headers = request["headers"];
    for (auto it = headers.begin(); it != headers.end(); ++it) {
      if (http::iequals(it.key(), "X-Forwarded-For") && !it.value().empty()) {
        std::string v = it.value().back().get<std::string>();
        const std::size_t comma = v.rfind(',');
        if (comma != std::string::npos) v = v.substr(comma + 1);
        v.erase(0, v.find_first_not_of(' '));
        out["remote_addr"] = v;
      }
    }
  }
  if (!full) request.erase("headers");
  out["request"] = std::move(request);
  out["response"] = response_json(e, method, options, full);
  if (full && out["response"].is_object() && out["response"].value("status_code", 0) == 101) {
    json ws = websocket_json(e);
    out["websocket"] = std::move(ws["websocket"]);
    out["websocket_frames"] = std::move(ws["frames"]);
  }
  if (!e.error.empty()) out["error"] = e.error;
  if (!e.replay_of.empty()) out["replay_of"] = e.replay_of;
  return out;
}

ApiResponse problem(int status, std::string message) {
  json body;
  body["status_code"] = status;
  body["msg"] = message;
  body["error_code"] = status;
  return {status, "application/json", body.dump()};
}

ApiResponse ok(const json& body) {
  return {200, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

// "a=1&b=2" -> the value of `key` ("" if absent); no percent-decoding beyond what names need.
std::string query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      std::string value(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
      std::string decoded;
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '%' && i + 2 < value.size()) {
          int v = 0;
          std::from_chars(value.data() + i + 1, value.data() + i + 3, v, 16);
          decoded += static_cast<char>(v);
          i += 2;
        } else {
          decoded += value[i] == '+' ? ' ' : value[i];
        }
      }
      return decoded;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

// The final response of an exchange, parsed, with its body data (de-chunked, decoded).
struct FinalResponse {
  bool present = false;
  http::ResponseHead head;
  std::string data;
  bool complete = true;  // the body was kept whole
};

FinalResponse final_response(const Exchange& e, const InspectorOptions& options) {
  FinalResponse out;
  const ExchangeCapture& c = e.capture;
  if (c.response_head_size == 0) return out;
  MessageParser request(MessageParser::Kind::kRequest);
  const Step rs = request.parse(std::string_view(c.request_raw.data(), c.request_head_size));
  const std::string method =
      rs.type == Step::kHead || rs.type == Step::kMessageEnd ? request.request().method : "GET";
  const std::string_view all(c.response_raw);
  const std::string_view head = all.substr(0, c.response_head_size);
  MessageParser parser(MessageParser::Kind::kResponse);
  parser.expect_response_to(method, asked_upgrade(e.capture));
  std::size_t at = 0;
  while (at <= head.size()) {
    const Step step = parser.parse(head.substr(at));
    if (step.type == Step::kHead && !parser.is_interim()) {
      out.present = true;
      break;
    }
    if (step.type != Step::kHead && step.type != Step::kMessageEnd) return out;
    at += step.consumed;
  }
  if (!out.present) return out;
  out.head = parser.response();
  const std::string_view kept = all.substr(c.response_head_size);
  out.complete = kept.size() >= c.response_body_size;
  out.data = parser.chunked() ? dechunk(kept) : std::string(kept);
  if (const std::string* coding = out.head.find("Content-Encoding");
      coding != nullptr && !http::iequals(*coding, "identity")) {
    if (auto decoded = decode_body(*coding, out.data, options.body_cap); decoded) {
      out.data = std::move(decoded.value().data);
    }
  }
  return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

// A line diff (longest common subsequence) of two short texts: [{"op": " "|"-"|"+", "line"}].
json line_diff(std::string_view a, std::string_view b) {
  const auto x = lines_of(a);
  const auto y = lines_of(b);
  const std::size_t n = x.size();
  const std::size_t m = y.size();
  std::vector<std::uint32_t> lcs((n + 1) * (m + 1), 0);
  const auto at = [&](std::size_t i, std::size_t j) -> std::uint32_t& {
    return lcs[i * (m + 1) + j];
  };
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t j = m; j-- > 0;) {
      at(i, j) = x[i] == y[j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    }
  }
  json out = json::array();
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] == y[j]) {
      out.push_back({{"op", " "}, {"line", std::string(x[i])}});
      ++i, ++j;
    } else if (i < n && (j == m || at(i + 1, j) >= at(i, j + 1))) {
      out.push_back({{"op", "-"}, {"line", std::string(x[i])}});
      ++i;
    } else {
      out.push_back({{"op", "+"}, {"line", std::string(y[j])}});
      ++j;
    }
  }
  return out;
}

constexpr std::size_t kMaxDiffLines = 1000;  // per side; longer bodies get sizes and offsets only

json fields_of(const http::HeaderFields& fields) {
  json out = json::object();
  for (const auto& h : fields.headers) {
    std::string name = h.name;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto& v = out[name];
    v = v.is_null() ? h.value : v.get<std::string>() + ", " + h.value;
  }
  return out;
}

// What changed from `original`'s response to `replay`'s: status, header fields, body.
json response_diff(const Exchange& original, const Exchange& replay,
                   const InspectorOptions& options) {
  const FinalResponse a = final_response(original, options);
  const FinalResponse b = final_response(replay, options);
  json out;
  out["id"] = replay.id;
  out["replay_of"] = original.id;
  const int sa = a.present ? a.head.status : 0;
  const int sb = b.present ? b.head.status : 0;
  out["status"] = {{"original", sa}, {"replay", sb}, {"same", sa == sb}};
  json added = json::array();
  json removed = json::array();
  json changed = json::array();
  const json fa = fields_of(a.head);
  const json fb = fields_of(b.head);
  const auto shown = [&](const std::string& name, const json& v) {
    return redacted(options, name) ? json(std::string(kRedacted)) : v;
  };
  for (auto it = fa.begin(); it != fa.end(); ++it) {
    if (!fb.contains(it.key())) {
      removed.push_back({{"name", it.key()}, {"value", shown(it.key(), it.value())}});
    } else if (fb[it.key()] != it.value()) {
      changed.push_back({{"name", it.key()},
                         {"original", shown(it.key(), it.value())},
                         {"replay", shown(it.key(), fb[it.key()])}});
    }
  }
  for (auto it = fb.begin(); it != fb.end(); ++it) {
    if (!fa.contains(it.key())) {
      added.push_back({{"name", it.key()}, {"value", shown(it.key(), it.value())}});
    }
  }
  out["headers"] = {{"added", std::move(added)},
                    {"removed", std::move(removed)},
                    {"changed", std::move(changed)},
                    {"same", fa == fb}};
  json body;
  body["original_size"] = a.data.size();
  body["replay_size"] = b.data.size();
  body["complete"] = a.complete && b.complete;  // false: compared what was kept
  body["same"] = a.data == b.data;
  const auto mismatch = std::mismatch(a.data.begin(), a.data.end(), b.data.begin(), b.data.end());
  body["first_difference"] =
      a.data == b.data ? json(nullptr) : json(mismatch.first - a.data.begin());
  if (a.data != b.data && is_text(a.data) && is_text(b.data)) {
    if (lines_of(a.data).size() <= kMaxDiffLines && lines_of(b.data).size() <= kMaxDiffLines) {
      body["lines"] = line_diff(a.data, b.data);
    }
  }
  out["body"] = std::move(body);
  out["same"] = sa == sb && fa == fb && a.data == b.data;
  return out;
}

// GET /api/requests/http's filters (docs/inspector.md); an empty field does not filter.
struct ListFilter {
  std::string tunnel, path, method, status, header_name, header_value;
  bool header_has_value = false;
  std::optional<std::int64_t> min_duration_ns, max_duration_ns;
  std::optional<std::uint64_t> min_size, max_size;
  bool needs_heads() const {
    return !path.empty() || !method.empty() || !status.empty() || !header_name.empty();
  }
};

bool contains_field(const http::HeaderFields& fields, const ListFilter& f,
                    const InspectorOptions& options) {
  for (const auto& h : fields.headers) {
    if (!http::iequals(h.name, f.header_name)) continue;
    if (!f.header_has_value) return true;
    // A redacted field matches on its mask only: a filter must not probe a credential.
    const std::string_view value = redacted(options, h.name) ? kRedacted : h.value;
    if (value.find(f.header_value) != std::string_view::npos) return true;
  }
  return false;
}

// The final response head of `e` (after any interim ones); false when there is none.
bool final_response_head(const Exchange& e, std::string_view method, http::ResponseHead& out) {
  const ExchangeCapture& c = e.capture;
  if (c.response_head_size == 0) return false;
  const std::string_view head = std::string_view(c.response_raw).substr(0, c.response_head_size);
  MessageParser parser(MessageParser::Kind::kResponse);
  parser.expect_response_to(method, asked_upgrade(e.capture));
  std::size_t at = 0;
  while (at <= head.size()) {
    const Step step = parser.parse(head.substr(at));
    if (step.type == Step::kHead && !parser.is_interim()) {
      out = std::move(parser.response());
      return true;
    }
    if (step.type != Step::kHead && step.type != Step::kMessageEnd) return false;
    at += step.consumed;
  }
  return false;
}

bool status_matches(std::string_view want, int status) {
  // "404", or a class: "4xx" (also "4XX", "4").
  if (want.size() == 3 && (want[1] == 'x' || want[1] == 'X') &&
      (want[2] == 'x' || want[2] == 'X')) {
    want = want.substr(0, 1);
  }
  if (want.size() == 1) return status / 100 == want[0] - '0';
  return std::to_string(status) == want;
}

bool matches(const Exchange& e, const ListFilter& f, const InspectorOptions& options) {
  const ExchangeCapture& c = e.capture;
  if (!f.tunnel.empty() && e.tunnel_name != f.tunnel) return false;
  const std::int64_t duration = nanos(c.ended - c.opened);
  if (f.min_duration_ns && duration < *f.min_duration_ns) return false;
  if (f.max_duration_ns && duration > *f.max_duration_ns) return false;
  const std::uint64_t size = c.request_body_size + c.response_body_size;
  if (f.min_size && size < *f.min_size) return false;
  if (f.max_size && size > *f.max_size) return false;
  if (!f.needs_heads()) return true;
  MessageParser parser(MessageParser::Kind::kRequest);
  const Step step = parser.parse(std::string_view(c.request_raw.data(), c.request_head_size));
  if (step.type != Step::kHead && step.type != Step::kMessageEnd) return false;
  const http::RequestHead& request = parser.request();
  if (!f.method.empty() && !http::iequals(request.method, f.method)) return false;
  if (!f.path.empty() && request.target.find(f.path) == std::string::npos) return false;
  http::ResponseHead response;
  const bool has_response = (!f.status.empty() || !f.header_name.empty()) &&
                            final_response_head(e, request.method, response);
  if (!f.status.empty() && !(has_response && status_matches(f.status, response.status))) {
    return false;
  }
  if (!f.header_name.empty() && !contains_field(request, f, options) &&
      !(has_response && contains_field(response, f, options))) {
    return false;
  }
  return true;
}

// The filters of a GET /api/requests/http query; the error names the parameter that is wrong.
common::Result<ListFilter> parse_filter(std::string_view query) {
  ListFilter f;
  f.tunnel = query_value(query, "tunnel_name");
  f.path = query_value(query, "path");
  f.method = query_value(query, "method");
  f.status = query_value(query, "status");
  if (!f.status.empty()) {
    const bool digits = std::all_of(f.status.begin(), f.status.end(),
                                    [](char ch) { return ch >= '0' && ch <= '9'; });
    const bool class_form = (f.status.size() == 3 && f.status[0] >= '1' && f.status[0] <= '5' &&
                             http::iequals(f.status.substr(1), "xx")) ||
                            (f.status.size() == 1 && f.status[0] >= '1' && f.status[0] <= '5');
    if (!(digits && f.status.size() == 3) && !class_form) {
      return common::fail(
          common::ErrorKind::kInvalid,
          "status: expected a code (404) or a class (4xx), got \"" + f.status + "\"");
    }
  }
  if (const std::string h = query_value(query, "header"); !h.empty()) {
    const std::size_t colon = h.find(':');
    f.header_name = h.substr(0, colon);
    if (colon != std::string::npos) {
      f.header_has_value = true;
      f.header_value = h.substr(colon + 1);
      f.header_value.erase(0, f.header_value.find_first_not_of(' '));
    }
    if (f.header_name.empty()) {
      return common::fail(common::ErrorKind::kInvalid,
                          "header: expected Name or Name:value, got \"" + h + "\"");
    }
  }
  const auto number = [&](const char* name, auto& field) -> common::Status {
    const std::string v = query_value(query, name);
    if (v.empty()) return common::success();
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n > (std::uint64_t{1} << 53)) {
      return common::fail(common::ErrorKind::kInvalid,
                          std::string(name) + ": expected a number, got \"" + v + "\"");
    }
    using T = typename std::remove_reference_t<decltype(field)>::value_type;
    field = static_cast<T>(n);
    return common::success();
  };
  if (auto s = number("min_duration_ms", f.min_duration_ns); !s) return s.error();
  if (auto s = number("max_duration_ms", f.max_duration_ns); !s) return s.error();
  if (f.min_duration_ns) *f.min_duration_ns *= 1'000'000;
  if (f.max_duration_ns) *f.max_duration_ns *= 1'000'000;
  if (auto s = number("min_size", f.min_size); !s) return s.error();
  if (auto s = number("max_size", f.max_size); !s) return s.error();
  return f;
}

}  // namespace

std::string iso_time(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() %
      1'000'000;
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%.*s.%06lldZ", static_cast<int>(n), buf,
                static_cast<long long>(micros));
  return out;
}

bool is_text(std::string_view bytes) {
  // UTF-8 without control characters other than tab, CR and LF.
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') return false;
      if (c == 0x7f) return false;
      ++i;
      continue;
    }
    const std::size_t len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || (c >= 0xf5)) return false;
    if (i + len > bytes.size()) return true;  // cut at the cap inside a character
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(bytes[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

bool asked_upgrade(const ExchangeCapture& capture) {
  MessageParser parser(MessageParser::Kind::kRequest);
  const Step step =
      parser.parse(std::string_view(capture.request_raw.data(), capture.request_head_size));
  return (step.type == Step::kHead || step.type == Step::kMessageEnd ||
          step.type == Step::kUpgrade) &&
         parser.is_upgrade();
}

void ExchangeCapture::add_response(const char* data, std::size_t n, bool head_seen_before,
                                   std::size_t head_end) {
  if (head_seen_before) {
    response_body_size += n;
    const std::size_t kept = response_raw.size() - response_head_size;
    if (kept < body_cap) response_raw.append(data, std::min(n, body_cap - kept));
    return;
  }
  if (head_end == 0) {
    response_raw.append(data, n);  // still in the head(s): bounded by the parser's head limit
    return;
  }
  response_raw.append(data, head_end);
  response_head_size = response_raw.size();
  add_response(data + head_end, n - head_end, true, 0);
}

std::size_t Exchange::cost() const {
  return kEntryOverhead + capture.request_raw.size() + capture.response_raw.size() +
         (capture.request_marks.size() + capture.response_marks.size()) *
             sizeof(ExchangeCapture::ByteMark) +
         id.size() + tunnel_name.size() + local.size() + error.size() + capture.client.size();
}

Inspector::Inspector(InspectorOptions options) : options_(std::move(options)) {}

std::unique_ptr<ExchangeCapture> Inspector::begin() const {
  if (options_.db_size == 0) return nullptr;
  auto capture = std::make_unique<ExchangeCapture>();
  capture->body_cap = options_.body_cap;
  return capture;
}

std::string Inspector::add(Exchange exchange) {
  exchange.id = "ex_" + std::to_string(next_id_++);
  std::string id = exchange.id;
  const std::size_t cost = exchange.cost();
  if (cost > options_.db_size) {
    ++evicted_;  // larger than the whole ring: not kept
    return id;
  }
  while (!ring_.empty() && bytes_ + cost > options_.db_size) {
    bytes_ -= ring_.front().cost();
    ring_.pop_front();
    ++evicted_;
  }
  bytes_ += cost;
  ring_.push_back(std::move(exchange));
  if (!events_->empty()) {
    events_->publish("id: " + id + "\nevent: request\ndata: " +
                     exchange_json(ring_.back(), options_, false)
                         .dump(-1, ' ', false, json::error_handler_t::replace) +
                     "\n\n");
  }
  return id;
}

const Exchange* Inspector::find(std::string_view id) const {
  // Ids grow with position: a binary search would do, but rings are a few thousand long.
  for (const auto& e : ring_) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

ApiResponse Inspector::import_har(std::string_view body, std::string_view target) {
  const std::size_t q = target.find('?');
  const std::string local =
      query_value(q == std::string_view::npos ? "" : target.substr(q + 1), "local");
  auto imported = from_har(body, local, options_.body_cap);
  if (!imported) return problem_response(imported.error());
  json ids = json::array();
  for (auto& e : imported.value()) ids.push_back(add(std::move(e)));
  json answer;
  answer["imported"] = ids.size();
  answer["ids"] = std::move(ids);
  ApiResponse response = ok(answer);
  response.status = 201;
  return response;
}

ApiResponse Inspector::handle_mutating(std::string_view method, std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/api/requests/http" && method == "DELETE") {
    clear();
    if (!events_->empty()) events_->publish("event: cleared\ndata: {}\n\n");
    return {204, "application/json", ""};
  }
  return handle(method, target);
}

ApiResponse Inspector::handle(std::string_view method, std::string_view target) const {
  const std::size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  constexpr std::string_view kRequests = "/api/requests/http";
  if (path == kRequests) {
    if (method != "GET") return problem(405, "use GET or DELETE on " + std::string(kRequests));
    std::size_t limit = kDefaultLimit;
    if (const std::string l = query_value(query, "limit"); !l.empty()) {
      const auto [end, ec] = std::from_chars(l.data(), l.data() + l.size(), limit);
      if (ec != std::errc() || end != l.data() + l.size()) {
        return problem(400, "limit: expected a number, got \"" + l + "\"");
      }
    }
    auto filter = parse_filter(query);
    if (!filter) return problem_response(filter.error());
    // summary=true: each entry as the event stream gives it (no headers, bodies or raw).
    const bool full = query_value(query, "summary") != "true";
    json list = json::array();
    for (auto it = ring_.rbegin(); it != ring_.rend() && list.size() < limit; ++it) {
      if (!matches(*it, filter.value(), options_)) continue;
      list.push_back(exchange_json(*it, options_, full));
    }
    json body;
    body["uri"] = kRequests;
    body["requests"] = std::move(list);
    return ok(body);
  }
  if (path == "/api/requests/http.har") {
    if (method != "GET") return problem(405, "use GET on /api/requests/http.har");
    std::vector<const Exchange*> list;
    const std::string ids = query_value(query, "ids");
    for (const auto& e : ring_) {
      if (!ids.empty() && ("," + ids + ",").find("," + e.id + ",") == std::string::npos) continue;
      list.push_back(&e);
    }
    return {200, "application/json",
            to_har(list, options_, query_value(query, "redact") != "false")};
  }
  if (path.starts_with(std::string(kRequests) + "/")) {
    if (method != "GET") return problem(405, "use GET on " + std::string(path));
    std::string_view id = path.substr(kRequests.size() + 1);
    if (id.ends_with("/diff")) {
      // GET /api/requests/http/:id/diff: a replay's response against its original's.
      id.remove_suffix(5);
      const Exchange* replay = find(id);
      if (replay == nullptr) {
        return problem(404, "no request with id \"" + std::string(id) +
                                "\" (evicted from the ring, cleared, or never seen)");
      }
      if (replay->replay_of.empty()) {
        return problem(409, std::string(id) + " is not a replay: only a replay has a diff");
      }
      const Exchange* original = find(replay->replay_of);
      if (original == nullptr) {
        return problem(409, "the original of " + std::string(id) + ", " + replay->replay_of +
                                ", is no longer kept (evicted or cleared)");
      }
      return ok(response_diff(*original, *replay, options_));
    }
    const Exchange* e = find(id);
    if (e == nullptr) {
      return problem(404, "no request with id \"" + std::string(id) +
                              "\" (evicted from the ring, cleared, or never seen)");
    }
    return ok(exchange_json(*e, options_));
  }
  if (path == "/api/tunnels") {
    if (method != "GET") return problem(405, "use GET on /api/tunnels");
    json list = json::array();
    for (const auto& t : tunnels_) {
      json j;
      j["name"] = t.name;
      j["uri"] = "/api/tunnels/" + t.name;
      j["public_url"] = t.public_url;
      j["proto"] = t.proto;
      j["config"] = {{"addr", t.local}, {"inspect", true}};
      list.push_back(std::move(j));
    }
    json body;
    body["uri"] = "/api/tunnels";
    body["tunnels"] = std::move(list);
    return ok(body);
  }
  if (path == "/api/status") {
    if (method != "GET") return problem(405, "use GET on /api/status");
    json body;
    body["version"] = std::string(common::kVersion);
    body["inspector"] = {
        {"address", address_},         {"entries", ring_.size()},       {"bytes", bytes_},
        {"db_size", options_.db_size}, {"body_cap", options_.body_cap}, {"evicted", evicted_},
        {"redact", options_.redact}};
    body["inspector"]["streams"] = events_->size();
    body["inspector"]["streams_dropped"] = events_->dropped();
    body["tunnels"] = tunnels_.size();
    return ok(body);
  }
  if (const PageFile* file = inspector_page_file(path); file != nullptr) {
    if (method != "GET") return problem(405, "use GET on " + std::string(path));
    return {200, file->content_type, file->body};
  }
  return problem(404, "no such API path: " + std::string(path) +
                          " (see /api/requests/http, /api/tunnels, /api/status)");
}

common::Result<ReplayPlan> Inspector::plan_replay(std::string_view json_body) const {
  using common::ErrorKind;
  ReplayPlan plan;
  const json request = json::parse(json_body, nullptr, false);
  if (request.is_discarded() || !request.is_object()) {
    return common::fail(ErrorKind::kInvalid, "expected a JSON object such as {\"id\": \"ex_1\"}");
  }
  if (!request.contains("id") || !request["id"].is_string()) {
    return common::fail(ErrorKind::kInvalid, "id: required, the id of the request to replay");
  }
  const std::string id = request["id"].get<std::string>();
  const Exchange* e = find(id);
  if (e == nullptr) {
    return common::fail(ErrorKind::kNotFound,
                        "no request with id \"" + id + "\" (evicted, cleared or never seen)");
  }
  const ExchangeCapture& c = e->capture;
  const bool body_edited = request.contains("body") || request.contains("body_base64");
  if (!body_edited && c.request_raw.size() - c.request_head_size < c.request_body_size) {
    return common::fail(ErrorKind::kConflict,
                        "the body of " + id + " was cut at the inspector's body cap (" +
                            std::to_string(c.request_body_size) + " bytes, kept " +
                            std::to_string(c.request_raw.size() - c.request_head_size) +
                            "): give \"body\" to replay it");
  }
  plan.local = e->local;
  plan.tunnel_name = e->tunnel_name;
  plan.replay_of = id;
  const bool edited = body_edited || request.contains("method") || request.contains("uri") ||
                      request.contains("headers");
  MessageParser parser(MessageParser::Kind::kRequest);
  const Step step = parser.parse(std::string_view(c.request_raw.data(), c.request_head_size));
  if (step.type != Step::kHead && step.type != Step::kMessageEnd) {
    return common::fail(ErrorKind::kConflict,
                        "the head of " + id + " does not parse: " + parser.error());
  }
  http::RequestHead& head = parser.request();
  if (!edited) {
    plan.method = head.method;
    plan.bytes = c.request_raw;
    return plan;
  }
  const auto text_field = [&](const char* name, std::string& field) -> common::Status {
    if (!request.contains(name)) return common::success();
    if (!request[name].is_string() || request[name].get<std::string>().empty()) {
      return common::fail(ErrorKind::kInvalid, std::string(name) + ": expected a non-empty string");
    }
    field = request[name].get<std::string>();
    if (field.find_first_of(" \r\n") != std::string::npos) {
      return common::fail(ErrorKind::kInvalid, std::string(name) + ": no spaces or line breaks");
    }
    return common::success();
  };
  if (auto s = text_field("method", head.method); !s) return s.error();
  if (auto s = text_field("uri", head.target); !s) return s.error();
  if (request.contains("headers")) {
    const json& headers = request["headers"];
    if (!headers.is_object()) {
      return common::fail(ErrorKind::kInvalid, "headers: expected an object {\"Name\": \"value\"}");
    }
    for (auto it = headers.begin(); it != headers.end(); ++it) {
      head.remove(it.key());
      if (it.value().is_null()) continue;
      const json values = it.value().is_array() ? it.value() : json::array({it.value()});
      for (const auto& v : values) {
        if (!v.is_string()) {
          return common::fail(ErrorKind::kInvalid,
                              "headers." + it.key() + ": expected a string or strings");
        }
        head.append(it.key(), v.get<std::string>());
      }
    }
  }
  std::string body;
  if (request.contains("body")) {
    if (!request["body"].is_string()) {
      return common::fail(ErrorKind::kInvalid, "body: expected a string (or use body_base64)");
    }
    body = request["body"].get<std::string>();
  } else if (request.contains("body_base64")) {
    if (!request["body_base64"].is_string() ||
        !base64_decode(request["body_base64"].get<std::string>(), body)) {
      return common::fail(ErrorKind::kInvalid, "body_base64: not base64");
    }
  } else {
    const std::string_view kept = std::string_view(c.request_raw).substr(c.request_head_size);
    body = parser.chunked() ? dechunk(kept) : std::string(kept);
  }
  head.remove("Transfer-Encoding");
  head.remove("Content-Length");
  if (!body.empty() || head.method == "POST" || head.method == "PUT" || head.method == "PATCH") {
    head.set("Content-Length", std::to_string(body.size()));
  }
  plan.method = head.method;
  plan.bytes = head.serialize() + body;
  return plan;
}

ApiResponse problem_response(const common::Error& error) {
  switch (error.kind) {
    case common::ErrorKind::kInvalid:
      return problem(400, error.message);
    case common::ErrorKind::kNotFound:
      return problem(404, error.message);
    case common::ErrorKind::kConflict:
      return problem(409, error.message);
    case common::ErrorKind::kUnavailable:
      return problem(503, error.message);
    case common::ErrorKind::kInternal:
      break;
  }
  return problem(500, error.message);
}

}  // namespace tunnel::agent

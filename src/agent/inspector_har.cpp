#include "agent/inspector_har.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/version.hpp"
#include "http/message_parser.hpp"

namespace tunnel::agent {
namespace {

using http::MessageParser;
using nlohmann::json;
using Step = MessageParser::Step;
using Steady = std::chrono::steady_clock;

constexpr std::string_view kRedacted = "[redacted]";

bool redacted(const InspectorOptions& options, std::string_view name) {
  return std::any_of(options.redact.begin(), options.redact.end(),
                     [&](const std::string& r) { return http::iequals(r, name); });
}

json headers_json(const http::HeaderFields& fields, const InspectorOptions& options, bool redact) {
  json out = json::array();
  for (const auto& h : fields.headers) {
    out.push_back(
        {{"name", h.name},
         {"value", redact && redacted(options, h.name) ? std::string(kRedacted) : h.value}});
  }
  return out;
}

std::string http_version(int major, int minor) {
  return "HTTP/" + std::to_string(major) + "." + std::to_string(minor);
}

double millis(Steady::duration d) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()) / 1e6;
}

Steady::duration from_millis(double ms) {
  return std::chrono::nanoseconds(std::llround(ms * 1e6));
}

// "2026-12-07T17:40:01.123456Z" (fraction optional; "Z" or "+00:00").
bool parse_iso_time(const std::string& s, std::chrono::system_clock::time_point& out) {
  std::tm tm{};
  int micros = 0;
  char rest[16] = {};
  const int n = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%15s", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, rest);
  if (n < 6) return false;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::string_view tail(rest);
  if (tail.starts_with('.')) {
    std::size_t digits = 1;
    int scale = 100000;
    while (digits < tail.size() && tail[digits] >= '0' && tail[digits] <= '9') {
      micros += (tail[digits] - '0') * scale;
      scale /= 10;
      ++digits;
    }
    tail.remove_prefix(digits);
  }
  if (!tail.empty() && tail != "Z" && tail != "+00:00") return false;
  out = std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::microseconds(micros);
  return true;
}

// HAR's content/postData for body bytes: text when it is text, else base64.
void put_data(json& out, const std::string& data) {
  if (is_text(data)) {
    out["text"] = data;
  } else {
    out["text"] = base64_encode(data);
    out["encoding"] = "base64";
  }
}

std::string mime_of(const http::HeaderFields& fields) {
  const std::string* type = fields.find("Content-Type");
  return type != nullptr ? *type : "";
}

json query_json(std::string_view target) {
  json out = json::array();
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (!pair.empty()) {
      out.push_back(
          {{"name", std::string(pair.substr(0, eq))},
           {"value", eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1))}});
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

json entry_json(const Exchange& e, const InspectorOptions& options, bool redact) {
  const ExchangeCapture& c = e.capture;
  json entry;
  entry["startedDateTime"] = iso_time(e.start);
  entry["time"] = millis(c.ended - c.opened);
  entry["cache"] = json::object();
  const bool headed = c.app_head != Steady::time_point{};
  const double wait = headed ? millis(c.app_head - c.opened) : millis(c.ended - c.opened);
  entry["timings"] = {{"send", 0}, {"wait", wait}, {"receive", millis(c.ended - c.opened) - wait}};
  entry["_id"] = e.id;
  entry["_tunnel_name"] = e.tunnel_name;
  entry["_local"] = e.local;
  if (!e.replay_of.empty()) entry["_replay_of"] = e.replay_of;
  if (!e.error.empty()) entry["comment"] = e.error;
  if (!c.client.empty()) entry["_client"] = c.client;

  // The request.
  MessageParser request(MessageParser::Kind::kRequest);
  const Step step = request.parse(std::string_view(c.request_raw.data(), c.request_head_size));
  json r;
  std::string method = "GET";
  if (step.type == Step::kHead || step.type == Step::kMessageEnd) {
    const http::RequestHead& h = request.request();
    method = h.method;
    const std::string* host = h.find("Host");
    const std::string scheme = e.tunnel_name.starts_with("https") ? "https" : "http";
    r["method"] = h.method;
    r["url"] = h.target.starts_with("/") ? scheme + "://" + (host ? *host : "localhost") + h.target
                                         : h.target;
    r["httpVersion"] = http_version(h.version_major, h.version_minor);
    r["headers"] = headers_json(h, options, redact);
    r["queryString"] = query_json(h.target);
    r["headersSize"] = static_cast<std::int64_t>(c.request_head_size);
    r["bodySize"] = c.request_body_size;
    const std::string_view kept = std::string_view(c.request_raw).substr(c.request_head_size);
    if (c.request_body_size > 0) {
      json post;
      post["mimeType"] = mime_of(h);
      post["params"] = json::array();
      put_data(post, request.chunked() ? dechunk(kept) : std::string(kept));
      if (post.contains("encoding")) post["_encoding"] = post["encoding"], post.erase("encoding");
      r["postData"] = std::move(post);
    }
  } else {
    r = {{"method", ""},
         {"url", ""},
         {"httpVersion", ""},
         {"headers", json::array()},
         {"queryString", json::array()},
         {"headersSize", -1},
         {"bodySize", -1}};
  }
  r["cookies"] = json::array();
  entry["request"] = std::move(r);

  // The final response (interim ones are not in HAR).
  json s = {{"status", 0},
            {"statusText", ""},
            {"httpVersion", ""},
            {"cookies", json::array()},
            {"headers", json::array()},
            {"content", {{"size", 0}, {"mimeType", ""}}},
            {"redirectURL", ""},
            {"headersSize", -1},
            {"bodySize", -1}};
  if (c.response_head_size > 0) {
    const std::string_view all(c.response_raw);
    const std::string_view head = all.substr(0, c.response_head_size);
    MessageParser response(MessageParser::Kind::kResponse);
    response.expect_response_to(method, asked_upgrade(c));
    std::size_t at = 0;
    bool found = false;
    while (!found && at <= head.size()) {
      const Step st = response.parse(head.substr(at));
      if (st.type == Step::kHead && !response.is_interim()) {
        found = true;
      } else if (st.type == Step::kHead || st.type == Step::kMessageEnd) {
        at += st.consumed;
      } else {
        break;
      }
    }
    if (found) {
      const http::ResponseHead& h = response.response();
      const std::string line = h.serialize();
      const std::size_t sp1 = line.find(' ');
      const std::size_t sp2 = line.find(' ', sp1 + 1);
      const std::size_t eol = line.find("\r\n");
      s["status"] = h.status;
      s["statusText"] = sp2 < eol ? line.substr(sp2 + 1, eol - sp2 - 1) : "";
      s["httpVersion"] = http_version(h.version_major, h.version_minor);
      s["headers"] = headers_json(h, options, redact);
      const std::string* location = h.find("Location");
      s["redirectURL"] = location != nullptr ? *location : "";
      s["headersSize"] = static_cast<std::int64_t>(c.response_head_size - at);
      s["bodySize"] = c.response_body_size;
      const std::string_view kept = all.substr(c.response_head_size);
      const std::string data = response.chunked() ? dechunk(kept) : std::string(kept);
      json content;
      content["size"] = data.size();
      content["mimeType"] = mime_of(h);
      put_data(content, data);
      s["content"] = std::move(content);
    }
  }
  entry["response"] = std::move(s);
  return entry;
}

// Fails with "entries[i].field: why".
common::Error bad(std::size_t i, const std::string& why) {
  return common::Error("entries[" + std::to_string(i) + "]." + why, common::ErrorKind::kInvalid);
}

// The body of postData/content: text, or base64 when `encoding` (or `_encoding`) says so.
common::Result<std::string> data_of(const json& holder, std::size_t i, const std::string& where) {
  if (!holder.contains("text")) return std::string();
  if (!holder["text"].is_string()) return bad(i, where + ".text: expected a string");
  std::string text = holder["text"].get<std::string>();
  const std::string encoding = holder.value("encoding", holder.value("_encoding", std::string()));
  if (encoding.empty()) return text;
  if (encoding != "base64") return bad(i, where + ".encoding: only \"base64\" is known");
  std::string data;
  if (!base64_decode(text, data)) return bad(i, where + ".text: not base64");
  return data;
}

// Header fields from HAR's [{"name", "value"}]; the framing ones as they were.
common::Status add_headers(http::HeaderFields& fields, const json& list, std::size_t i,
                           const std::string& where) {
  if (!list.is_array()) return bad(i, where + ".headers: expected an array");
  for (const auto& h : list) {
    if (!h.is_object() || !h.contains("name") || !h["name"].is_string() || !h.contains("value") ||
        !h["value"].is_string()) {
      return bad(i, where + ".headers: expected {\"name\": \"...\", \"value\": \"...\"} items");
    }
    const std::string name = h["name"].get<std::string>();
    if (name.empty() || name.find_first_of(" :\r\n") != std::string::npos) {
      std::string why = where;
      why += ".headers: \"";
      why += name;
      why += "\" is not a header name";
      return bad(i, why);
    }
    fields.append(name, h["value"].get<std::string>());
  }
  return common::success();
}

bool parse_version(const std::string& v, int& major, int& minor) {
  return std::sscanf(v.c_str(), "HTTP/%d.%d", &major, &minor) == 2;
}

// The body as it goes on the wire: chunked again when the head says so (one chunk).
std::string framed(const http::HeaderFields& fields, const std::string& data) {
  if (!fields.has_token("Transfer-Encoding", "chunked")) return data;
  char size[20];
  std::snprintf(size, sizeof size, "%zx", data.size());
  return data.empty() ? "0\r\n\r\n" : std::string(size) + "\r\n" + data + "\r\n0\r\n\r\n";
}

common::Result<Exchange> exchange_of(const json& entry, std::size_t i,
                                     std::string_view default_local, std::size_t body_cap) {
  if (!entry.is_object()) return bad(i, "expected an object");
  for (const char* field : {"startedDateTime", "time", "request", "response"}) {
    if (!entry.contains(field)) return bad(i, std::string(field) + ": required");
  }
  Exchange e;
  ExchangeCapture& c = e.capture;
  c.body_cap = body_cap;
  if (!entry["startedDateTime"].is_string() ||
      !parse_iso_time(entry["startedDateTime"].get<std::string>(), e.start)) {
    return bad(i, "startedDateTime: expected an ISO 8601 time such as 2026-12-07T17:40:01.123Z");
  }
  if (!entry["time"].is_number() || entry["time"].get<double>() < 0) {
    return bad(i, "time: expected milliseconds (a number, 0 or more)");
  }
  c.opened = Steady::time_point{} + std::chrono::hours(1);
  c.ended = c.opened + from_millis(entry["time"].get<double>());
  e.tunnel_name = entry.value("_tunnel_name", std::string("imported"));
  e.local = entry.value("_local", std::string(default_local));
  if (e.local.empty()) e.local = std::string(default_local);
  e.replay_of = entry.value("_replay_of", std::string());
  e.error = entry.value("comment", std::string());
  c.client = entry.value("_client", std::string());

  const json& r = entry["request"];
  if (!r.is_object() || !r.contains("method") || !r["method"].is_string() || !r.contains("url") ||
      !r["url"].is_string()) {
    return bad(i, "request: expected an object with method and url");
  }
  http::RequestHead head;
  head.method = r["method"].get<std::string>();
  const std::string url = r["url"].get<std::string>();
  const std::size_t scheme = url.find("://");
  const std::size_t path = scheme == std::string::npos ? 0 : url.find('/', scheme + 3);
  head.target = path == std::string::npos ? "/" : url.substr(path);
  if (head.method.empty() || head.method.find_first_of(" \r\n") != std::string::npos ||
      head.target.find_first_of(" \r\n") != std::string::npos) {
    return bad(i, "request: method and url must have no spaces or line breaks");
  }
  if (!parse_version(r.value("httpVersion", std::string("HTTP/1.1")), head.version_major,
                     head.version_minor)) {
    head.version_major = 1;
    head.version_minor = 1;
  }
  if (auto ok = add_headers(head, r.value("headers", json::array()), i, "request"); !ok) {
    return ok.error();
  }
  std::string request_body;
  if (r.contains("postData")) {
    auto data = data_of(r["postData"], i, "request.postData");
    if (!data) return data.error();
    request_body = framed(head, data.value());
  }
  c.request_raw = head.serialize();
  c.request_head_size = c.request_raw.size();
  c.add_request_body(request_body.data(), request_body.size());
  if (r.contains("bodySize") && r["bodySize"].is_number_integer() &&
      r["bodySize"].get<std::int64_t>() >= 0) {
    c.request_body_size = r["bodySize"].get<std::uint64_t>();
  }

  const json& s = entry["response"];
  if (!s.is_object()) return bad(i, "response: expected an object");
  const int status = s.value("status", 0);
  if (status >= 100 && status <= 999) {
    http::ResponseHead rh;
    rh.status = status;
    rh.reason = s.value("statusText", std::string());
    if (!parse_version(s.value("httpVersion", std::string("HTTP/1.1")), rh.version_major,
                       rh.version_minor)) {
      rh.version_major = 1;
      rh.version_minor = 1;
    }
    if (auto ok = add_headers(rh, s.value("headers", json::array()), i, "response"); !ok) {
      return ok.error();
    }
    std::string body;
    if (s.contains("content") && s["content"].is_object()) {
      auto data = data_of(s["content"], i, "response.content");
      if (!data) return data.error();
      body = framed(rh, data.value());
    }
    const std::string raw_head = rh.serialize();
    c.add_response(raw_head.data(), raw_head.size(), false, raw_head.size());
    c.add_response(body.data(), body.size(), true, 0);
    if (s.contains("bodySize") && s["bodySize"].is_number_integer() &&
        s["bodySize"].get<std::int64_t>() >= 0) {
      c.response_body_size = s["bodySize"].get<std::uint64_t>();
    }
    if (entry.contains("timings") && entry["timings"].is_object() &&
        entry["timings"].contains("wait") && entry["timings"]["wait"].is_number()) {
      c.app_head = c.opened + from_millis(entry["timings"].value("send", 0.0) +
                                          entry["timings"]["wait"].get<double>());
    }
  }
  return e;
}

}  // namespace

std::string to_har(const std::vector<const Exchange*>& exchanges, const InspectorOptions& options,
                   bool redact) {
  json entries = json::array();
  for (const Exchange* e : exchanges) entries.push_back(entry_json(*e, options, redact));
  json log;
  log["version"] = "1.2";
  log["creator"] = {{"name", "tunnel-agent"}, {"version", std::string(common::kVersion)}};
  log["pages"] = json::array();
  log["entries"] = std::move(entries);
  json har;
  har["log"] = std::move(log);
  return har.dump(-1, ' ', false, json::error_handler_t::replace);
}

common::Result<std::vector<Exchange>> from_har(std::string_view har, std::string_view default_local,
                                               std::size_t body_cap) {
  const json doc = json::parse(har, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("log") || !doc["log"].is_object() ||
      !doc["log"].contains("entries") || !doc["log"]["entries"].is_array()) {
    return common::fail(common::ErrorKind::kInvalid,
                        "expected a HAR document: {\"log\": {\"entries\": [...]}}");
  }
  std::vector<Exchange> out;
  const json& entries = doc["log"]["entries"];
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto e = exchange_of(entries[i], i, default_local, body_cap);
    if (!e) return e.error();
    out.push_back(std::move(e).value());
  }
  return out;
}

}  // namespace tunnel::agent

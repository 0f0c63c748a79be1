#include "protocol/handshake.hpp"

#include <fmt/format.h>

#include <limits>
#include <nlohmann/json.hpp>

namespace tunnel::protocol {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Walks a parsed JSON document and records the first error, prefixed with what is parsed
// ("auth" or "auth response") and the path of the key at fault.
class Reader {
 public:
  explicit Reader(std::string_view what) : what_(what) {}

  const std::string& error() const { return error_; }

  bool fail(std::string_view path, std::string_view problem) {
    if (error_.empty()) {
      error_ = fmt::format("{}: \"{}\" {}", what_, path, problem);
    }
    return false;
  }

  bool fail_message(std::string message) {
    if (error_.empty()) {
      error_ = fmt::format("{}: {}", what_, message);
    }
    return false;
  }

  // Parses `text` into `out`; false (with the error set) when it is not a JSON object.
  bool parse_object(std::string_view text, Json& out) {
    if (text.size() > kMaxAuthPayload) {
      return fail_message(
          fmt::format("payload of {} bytes is above the maximum {}", text.size(), kMaxAuthPayload));
    }
    try {
      out = Json::parse(text.begin(), text.end());
    } catch (const Json::exception& e) {
      // Drop nlohmann's "[json.exception.parse_error.101] " prefix: readers want the position.
      std::string_view detail = e.what();
      if (auto end = detail.find("] "); detail.starts_with("[json.") && end != detail.npos) {
        detail.remove_prefix(end + 2);
      }
      return fail_message(fmt::format("invalid JSON: {}", detail));
    }
    if (!out.is_object()) {
      return fail_message("payload must be a JSON object");
    }
    return true;
  }

  // Finds `key` in `object`; a null value counts as absent (Go encoders write null for nil).
  static const Json* find(const Json& object, const char* key) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) {
      return nullptr;
    }
    return &*it;
  }

  bool read_string(const Json& object, const char* key, const std::string& path, std::string& out) {
    const Json* v = find(object, key);
    if (v == nullptr) {
      return true;
    }
    if (!v->is_string()) {
      return fail(path, "must be a string");
    }
    out = v->get<std::string>();
    return true;
  }

  bool read_bool(const Json& object, const char* key, const std::string& path, bool& out) {
    const Json* v = find(object, key);
    if (v == nullptr) {
      return true;
    }
    if (!v->is_boolean()) {
      return fail(path, "must be true or false");
    }
    out = v->get<bool>();
    return true;
  }

  // Reads an integer in [min, max] from `v`. Fractions and numbers in strings are refused.
  template <typename T>
  bool read_int_value(const Json& v, const std::string& path, T& out,
                      std::int64_t min = std::numeric_limits<T>::min(),
                      std::uint64_t max = std::numeric_limits<T>::max()) {
    bool in_range = false;
    if (v.is_number_unsigned()) {
      const auto n = v.get<std::uint64_t>();
      in_range = n <= max && (min <= 0 || n >= static_cast<std::uint64_t>(min));
      if (in_range) {
        out = static_cast<T>(n);
      }
    } else if (v.is_number_integer()) {
      const auto n = v.get<std::int64_t>();
      in_range = n >= min && (n < 0 || static_cast<std::uint64_t>(n) <= max);
      if (in_range) {
        out = static_cast<T>(n);
      }
    }
    if (!in_range) {
      if constexpr (std::is_same_v<T, std::int64_t>) {
        return fail(path, "must be an integer");
      } else {
        return fail(path, fmt::format("must be an integer {}..{}", min, max));
      }
    }
    return true;
  }

  template <typename T>
  bool read_int(const Json& object, const char* key, const std::string& path, T& out) {
    const Json* v = find(object, key);
    return v == nullptr || read_int_value(*v, path, out);
  }

  // At most `max_items` strings of at most `max_length` bytes each.
  bool read_string_array(const Json& object, const char* key, const std::string& path,
                         std::vector<std::string>& out, std::size_t max_items = 256,
                         std::size_t max_length = 1024) {
    const Json* v = find(object, key);
    if (v == nullptr) {
      return true;
    }
    if (!v->is_array()) {
      return fail(path, "must be an array of strings");
    }
    if (v->size() > max_items) {
      return fail(path, fmt::format("has {} items, at most {}", v->size(), max_items));
    }
    out.clear();
    for (std::size_t i = 0; i < v->size(); ++i) {
      const Json& item = (*v)[i];
      if (!item.is_string() || item.get_ref<const std::string&>().size() > max_length) {
        return fail(fmt::format("{}[{}]", path, i),
                    fmt::format("must be a string of at most {} bytes", max_length));
      }
      out.push_back(item.get<std::string>());
    }
    return true;
  }

 private:
  std::string_view what_;
  std::string error_;
};

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = s.find_first_not_of(kSpace);
  if (first == s.npos) {
    return {};
  }
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

void add_http_tunnel(std::vector<TunnelRequest>& tunnels, std::string_view name) {
  name = trim(name);
  if (name.empty()) {
    return;
  }
  for (const auto& t : tunnels) {
    if (t.subdomain == name) {
      return;
    }
  }
  TunnelRequest tunnel;
  tunnel.subdomain = std::string(name);
  tunnels.push_back(std::move(tunnel));
}

// v1 agents name their subdomains in metadata: "subdomains" (comma-separated) or "subdomain".
bool read_v1_metadata(Reader& r, const Json& root, std::vector<TunnelRequest>& tunnels) {
  const Json* metadata = Reader::find(root, "metadata");
  if (metadata == nullptr) {
    return true;
  }
  if (!metadata->is_object()) {
    return r.fail("metadata", "must be an object");
  }
  std::string list;
  std::string single;
  if (!r.read_string(*metadata, "subdomains", "metadata.subdomains", list) ||
      !r.read_string(*metadata, "subdomain", "metadata.subdomain", single)) {
    return false;
  }
  std::string_view rest = list;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    add_http_tunnel(tunnels, rest.substr(0, comma));
    rest = comma == rest.npos ? std::string_view{} : rest.substr(comma + 1);
  }
  add_http_tunnel(tunnels, single);
  return true;
}

// Reads "tunnels": an array of objects, each read by `read_one(path, item, out)`.
template <typename T, typename ReadOne>
bool read_tunnel_list(Reader& r, const Json& list, std::vector<T>& tunnels, ReadOne read_one) {
  if (!list.is_array()) {
    return r.fail("tunnels", "must be an array of objects");
  }
  for (std::size_t i = 0; i < list.size(); ++i) {
    const Json& item = list[i];
    const std::string path = fmt::format("tunnels[{}]", i);
    if (!item.is_object()) {
      return r.fail(path, "must be an object");
    }
    T t;
    if (!read_one(path, item, t)) {
      return false;
    }
    tunnels.push_back(std::move(t));
  }
  return true;
}

bool read_tunnel_requests(Reader& r, const Json& list, std::vector<TunnelRequest>& tunnels) {
  return read_tunnel_list(
      r, list, tunnels, [&r](const std::string& path, const Json& item, TunnelRequest& t) {
        if (!r.read_string(item, "type", path + ".type", t.type) ||
            !r.read_string(item, "subdomain", path + ".subdomain", t.subdomain) ||
            !r.read_string(item, "hostname", path + ".hostname", t.hostname) ||
            !r.read_int(item, "remote_port", path + ".remote_port", t.remote_port) ||
            !r.read_string(item, "local", path + ".local", t.local) ||
            !r.read_int(item, "bandwidth", path + ".bandwidth", t.bandwidth) ||
            !r.read_string(item, "proxy_protocol", path + ".proxy_protocol", t.proxy_protocol) ||
            !r.read_string_array(item, "cidr_allow", path + ".cidr_allow", t.cidr_allow,
                                 kMaxAccessEntries, 64) ||
            !r.read_string_array(item, "cidr_deny", path + ".cidr_deny", t.cidr_deny,
                                 kMaxAccessEntries, 64) ||
            !r.read_string_array(item, "basic_auth", path + ".basic_auth", t.basic_auth,
                                 kMaxBasicAuthUsers, 512)) {
          return false;
        }
        if (t.type.empty()) {
          return r.fail(path + ".type", "must be a non-empty string");
        }
        return true;
      });
}

bool read_tunnel_results(Reader& r, const Json& list, std::vector<TunnelResult>& tunnels) {
  return read_tunnel_list(
      r, list, tunnels, [&r](const std::string& path, const Json& item, TunnelResult& t) {
        return r.read_string(item, "type", path + ".type", t.type) &&
               r.read_string(item, "name", path + ".name", t.name) &&
               r.read_string(item, "url", path + ".url", t.url) &&
               r.read_bool(item, "ok", path + ".ok", t.ok) &&
               r.read_string(item, "error", path + ".error", t.error) &&
               r.read_string(item, "code", path + ".code", t.code) &&
               r.read_int(item, "bandwidth", path + ".bandwidth", t.bandwidth) &&
               r.read_string(item, "local", path + ".local", t.local);
      });
}

// Strings set by callers may hold invalid UTF-8 (e.g. an error naming a received byte);
// replacing it keeps dump() from throwing and the output valid JSON.
template <typename J>
std::string dump(const J& j) {
  return j.dump(-1, ' ', false, J::error_handler_t::replace);
}

}  // namespace

common::Status check_agent_name(std::string_view name) {
  if (name.empty() || name.size() > 63) {
    return common::fail(common::ErrorKind::kInvalid,
                        fmt::format("expected 1 to 63 characters, got {}", name.size()));
  }
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name.front())) {
    return common::fail(common::ErrorKind::kInvalid, "must start with a letter or a digit");
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!alnum(c) && c != '.' && c != '_' && c != '-') {
      return common::fail(
          common::ErrorKind::kInvalid,
          fmt::format("character {} is not a letter, digit, '.', '_' or '-'", i + 1));
    }
  }
  return common::success();
}

common::Result<AuthRequest> parse_auth_request(std::string_view json) {
  Reader r("auth");
  Json root;
  AuthRequest req;
  bool ok = r.parse_object(json, root);
  if (ok) {
    const Json* token = Reader::find(root, "token");
    if (token == nullptr) {
      ok = r.fail("token", "is required");
    } else if (!token->is_string() || token->get_ref<const std::string&>().empty()) {
      ok = r.fail("token", "must be a non-empty string");
    } else {
      req.token = token->get<std::string>();
    }
  }
  ok = ok && r.read_string(root, "agent_id", "agent_id", req.agent_id) &&
       r.read_string(root, "version", "version", req.version) &&
       r.read_string_array(root, "capabilities", "capabilities", req.capabilities) &&
       r.read_int(root, "initial_window", "initial_window", req.initial_window) &&
       r.read_string(root, "name", "name", req.name) &&
       r.read_string(root, "group", "group", req.group);
  if (ok) {
    if (const Json* versions = Reader::find(root, "protocol_versions"); versions != nullptr) {
      if (!versions->is_array()) {
        ok = r.fail("protocol_versions", "must be an array of integers 1..255");
      }
      for (std::size_t i = 0; ok && i < versions->size(); ++i) {
        std::uint8_t v = 0;
        ok = r.read_int_value((*versions)[i], fmt::format("protocol_versions[{}]", i), v, 1, 255);
        req.protocol_versions.push_back(v);
      }
    }
  }
  if (ok) {
    if (const Json* tunnels = Reader::find(root, "tunnels"); tunnels != nullptr) {
      ok = read_tunnel_requests(r, *tunnels, req.tunnels);
    } else {
      ok = read_v1_metadata(r, root, req.tunnels);
    }
  }
  if (!ok) return common::fail(r.error());
  return req;
}

std::string serialize(const AuthRequest& request) {
  OrderedJson j;
  j["token"] = request.token;
  if (!request.agent_id.empty()) {
    j["agent_id"] = request.agent_id;
  }
  if (!request.version.empty()) {
    j["version"] = request.version;
  }
  if (!request.capabilities.empty()) {
    j["capabilities"] = request.capabilities;
  }
  if (!request.protocol_versions.empty()) {
    auto& versions = j["protocol_versions"] = OrderedJson::array();
    for (auto v : request.protocol_versions) {
      versions.push_back(static_cast<unsigned>(v));
    }
  }
  if (request.initial_window != 0) {
    j["initial_window"] = request.initial_window;
  }
  if (!request.name.empty()) j["name"] = request.name;
  if (!request.group.empty()) j["group"] = request.group;
  auto& tunnels = j["tunnels"] = OrderedJson::array();
  std::string subdomains;  // for servers that only read v1 metadata
  for (const auto& t : request.tunnels) {
    OrderedJson item;
    item["type"] = t.type;
    if (!t.subdomain.empty()) {
      item["subdomain"] = t.subdomain;
    }
    if (!t.hostname.empty()) {
      item["hostname"] = t.hostname;
    }
    if (t.remote_port != 0) {
      item["remote_port"] = t.remote_port;
    }
    if (!t.local.empty()) {
      item["local"] = t.local;
    }
    if (t.bandwidth != 0) {
      item["bandwidth"] = t.bandwidth;
    }
    if (!t.proxy_protocol.empty()) {
      item["proxy_protocol"] = t.proxy_protocol;
    }
    if (!t.cidr_allow.empty()) {
      item["cidr_allow"] = t.cidr_allow;
    }
    if (!t.cidr_deny.empty()) {
      item["cidr_deny"] = t.cidr_deny;
    }
    if (!t.basic_auth.empty()) {
      item["basic_auth"] = t.basic_auth;
    }
    tunnels.push_back(std::move(item));
    if (t.type == "http" && !t.subdomain.empty()) {
      subdomains += (subdomains.empty() ? "" : ",") + t.subdomain;
    }
  }
  if (!subdomains.empty()) {
    j["metadata"]["subdomains"] = subdomains;
  }
  return dump(j);
}

common::Result<AuthResponse> parse_auth_response(std::string_view json) {
  Reader r("auth response");
  Json root;
  AuthResponse resp;
  bool ok = r.parse_object(json, root) && r.read_bool(root, "success", "success", resp.success) &&
            r.read_string(root, "agent_id", "agent_id", resp.agent_id) &&
            r.read_int(root, "server_time", "server_time", resp.server_time) &&
            r.read_string(root, "error", "error", resp.error) &&
            r.read_string(root, "code", "code", resp.code) &&
            r.read_int(root, "heartbeat_interval_ms", "heartbeat_interval_ms",
                       resp.heartbeat_interval_ms) &&
            r.read_int(root, "initial_window", "initial_window", resp.initial_window);
  if (ok) {
    if (const Json* v = Reader::find(root, "protocol_version"); v != nullptr) {
      ok = r.read_int_value(*v, "protocol_version", resp.protocol_version, 1, 255);
    }
  }
  if (ok) {
    if (const Json* tunnels = Reader::find(root, "tunnels"); tunnels != nullptr) {
      ok = read_tunnel_results(r, *tunnels, resp.tunnels);
    }
  }
  if (!ok) return common::fail(r.error());
  return resp;
}

std::string serialize(const AuthResponse& response) {
  OrderedJson j;
  j["success"] = response.success;
  j["agent_id"] = response.agent_id;
  j["server_time"] = response.server_time;
  if (!response.error.empty()) {
    j["error"] = response.error;
  }
  if (!response.code.empty()) {
    j["code"] = response.code;
  }
  j["protocol_version"] = response.protocol_version;
  j["heartbeat_interval_ms"] = response.heartbeat_interval_ms;
  j["initial_window"] = response.initial_window;
  auto& tunnels = j["tunnels"] = OrderedJson::array();
  for (const auto& t : response.tunnels) {
    OrderedJson item;
    item["type"] = t.type;
    item["name"] = t.name;
    item["url"] = t.url;
    item["ok"] = t.ok;
    if (!t.error.empty()) {
      item["error"] = t.error;
    }
    if (!t.code.empty()) {
      item["code"] = t.code;
    }
    if (t.bandwidth != 0) {
      item["bandwidth"] = t.bandwidth;
    }
    if (!t.local.empty()) {
      item["local"] = t.local;
    }
    tunnels.push_back(std::move(item));
  }
  return dump(j);
}

RefusalKind refusal_kind(std::string_view code) {
  if (code == refusal::kBadRequest || code == refusal::kBadToken || code == refusal::kNotAllowed) {
    return RefusalKind::kFinal;
  }
  if (code == refusal::kNameTaken || code == refusal::kLimit || code == refusal::kUnavailable ||
      code == refusal::kShuttingDown || code == refusal::kThrottled) {
    return RefusalKind::kRetry;
  }
  return RefusalKind::kUnknown;
}

}  // namespace tunnel::protocol

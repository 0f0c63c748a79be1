#include "ctl/render.hpp"

#include <algorithm>
#include <ctime>
#include <string_view>

namespace tunnel::ctl {
namespace {

using nlohmann::json;

struct Column {
  const char* header;
  const char* field;
  bool time = false;
};

std::vector<Column> columns(Kind kind) {
  switch (kind) {
    case Kind::tunnel:
      return {{"ID", "id"},         {"TYPE", "type"},   {"NAME", "name"},
              {"DOMAIN", "domain"}, {"PORT", "port"},   {"URL", "url"},
              {"AGENT", "agent"},   {"LOCAL", "local"}, {"ACCOUNT", "account"}};
    case Kind::agent:
      return {
          {"ID", "id"}, {"NAME", "name"}, {"ACCOUNT", "account"}, {"CREATED", "created_at", true}};
    case Kind::key:
      return {{"ID", "id"},
              {"NAME", "name"},
              {"USER", "user"},
              {"ACCOUNT", "account"},
              {"ROLE", "role"},
              {"EXPIRES", "expires_at", true},
              {"REVOKED", "revoked_at", true}};
    case Kind::account:
      return {{"ID", "id"},
              {"NAME", "name"},
              {"CONFIGURED", "configured"},
              {"CREATED", "created_at", true}};
    case Kind::usage:
      return {{"START", "start", true}, {"TUNNEL", "tunnel"},       {"REQUESTS", "requests"},
              {"BYTES_IN", "bytes_in"}, {"BYTES_OUT", "bytes_out"}, {"ERRORS", "errors"}};
    case Kind::quota:
      return {};
  }
  return {};
}

std::string cell(const json& v, bool time = false) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (time && v.is_number_integer()) return format_time(v.get<std::int64_t>());
  if (v.is_array()) return v.empty() ? "-" : std::to_string(v.size());
  return v.dump();
}

bool is_time_field(std::string_view name) {
  return name.ends_with("_at") || name == "from" || name == "to";
}

// One object: "field  value" per line; arrays of objects (sessions) as a table below.
std::string render_object(const json& obj, Kind kind) {
  std::vector<std::vector<std::string>> rows;
  std::string below;
  // The id first, then the fields in the API's (alphabetical) order.
  std::vector<std::pair<std::string, const json*>> fields;
  if (obj.contains("id")) fields.emplace_back("id", &obj.at("id"));
  for (const auto& [name, value] : obj.items()) {
    if (name != "id") fields.emplace_back(name, &value);
  }
  for (const auto& [name, pointer] : fields) {
    const json& value = *pointer;
    if (value.is_array() && !value.empty() && value.front().is_object()) {
      std::vector<std::vector<std::string>> sub;
      std::vector<std::string> header;
      for (const auto& [field, _] : value.front().items()) header.push_back(field);
      sub.push_back(header);
      for (const auto& item : value) {
        std::vector<std::string> row;
        row.reserve(header.size());
        for (const auto& field : header) {
          row.push_back(item.contains(field) ? cell(item.at(field), is_time_field(field)) : "-");
        }
        sub.push_back(std::move(row));
      }
      below += "\n" + name + ":\n" + align(sub);
      rows.push_back({name, std::to_string(value.size())});
    } else if (value.is_object()) {
      std::string inner;
      for (const auto& [field, v] : value.items()) {
        inner += (inner.empty() ? "" : " ") + field + "=" + cell(v);
      }
      rows.push_back({name, inner});
    } else {
      rows.push_back({name, cell(value, is_time_field(name) && kind != Kind::quota)});
    }
  }
  return align(rows) + below;
}

}  // namespace

std::string format_time(std::int64_t unix_seconds) {
  const std::time_t t = unix_seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::string align(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string render_table(Kind kind, const json& doc) {
  const json* items = nullptr;
  if (doc.is_object() && doc.contains("items") && doc.at("items").is_array()) {
    items = &doc.at("items");
  } else if (kind == Kind::usage && doc.is_object() && doc.contains("buckets")) {
    items = &doc.at("buckets");
  }
  if (items == nullptr) return doc.is_object() ? render_object(doc, kind) : doc.dump() + "\n";

  const auto cols = columns(kind);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header;
  header.reserve(cols.size());
  for (const auto& c : cols) header.emplace_back(c.header);
  rows.push_back(std::move(header));
  for (const auto& item : *items) {
    std::vector<std::string> row;
    row.reserve(cols.size());
    for (const auto& c : cols) {
      row.push_back(item.is_object() && item.contains(c.field) ? cell(item.at(c.field), c.time)
                                                               : "-");
    }
    rows.push_back(std::move(row));
  }
  std::string out = align(rows);
  if (kind == Kind::usage && doc.contains("total") && doc.at("total").is_object()) {
    const auto& t = doc.at("total");
    out += "total: ";
    std::string parts;
    for (const auto& [name, v] : t.items())
      parts += (parts.empty() ? "" : ", ") + name + " " + cell(v);
    out += parts + "\n";
  }
  return out;
}

std::string render_problem(int status, const std::string& body, const std::string& key_source) {
  std::string head = "tunnelctl: " + std::to_string(status);
  json doc = json::parse(body, nullptr, false);
  std::string out;
  if (doc.is_object() && (doc.contains("title") || doc.contains("detail"))) {
    if (doc.contains("title") && doc.at("title").is_string()) {
      head += " " + doc.at("title").get<std::string>();
    }
    const json* errors =
        doc.contains("errors") && doc.at("errors").is_array() && !doc.at("errors").empty()
            ? &doc.at("errors")
            : nullptr;
    if (errors != nullptr) {
      for (const auto& e : *errors) {
        const std::string field = e.contains("field") && e.at("field").is_string()
                                      ? e.at("field").get<std::string>()
                                      : "";
        const std::string problem = e.contains("problem") && e.at("problem").is_string()
                                        ? e.at("problem").get<std::string>()
                                        : e.dump();
        out += head;
        out += ": ";
        if (!field.empty()) out += field + ": ";
        out += problem;
        out += '\n';
      }
    } else if (doc.contains("detail") && doc.at("detail").is_string()) {
      out += head + ": " + doc.at("detail").get<std::string>() + "\n";
    } else {
      out += head + "\n";
    }
  } else {
    std::string shown = body.substr(0, 200);
    std::replace(shown.begin(), shown.end(), '\n', ' ');
    out += head + (shown.empty() ? std::string(" (no body)") : ": " + shown) + "\n";
  }
  if (status == 401) out += "tunnelctl: the key used: " + key_source + "\n";
  return out;
}

std::string render_agent_created(const json& agent, const std::string& agent_server,
                                 const std::string& guess) {
  const std::string token = agent.value("token", std::string());
  std::string server = agent_server;
  if (server.empty()) server = agent.value("server", std::string());
  if (server.empty()) server = guess;
  const std::string fingerprint = agent.value("fingerprint", std::string());
  std::string out = "agent " + cell(agent.value("id", json())) + " (" +
                    agent.value("name", std::string()) +
                    ") registered. Its token, shown once:\n  " + token + "\n";
  if (fingerprint.empty()) {
    out += "Run the agent with (--ca FILE if the core's certificate is not publicly trusted):\n";
  } else {
    out +=
        "Run the agent with (--fingerprint pins the core's current certificate; with a publicly "
        "trusted one, leave it out):\n";
  }
  out += "  TUNNEL_TOKEN=" + token + " tunnel-agent start --server " + server;
  if (!fingerprint.empty()) out += " --fingerprint " + fingerprint;
  out += "\n";
  return out;
}

}  // namespace tunnel::ctl

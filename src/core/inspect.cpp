#include "core/inspect.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "core/agents/agent_gateway.hpp"
#include "ctl/render.hpp"
#include "observability/log.hpp"

namespace tunnel::core {
namespace {

using nlohmann::json;

asio::awaitable<mux::SessionInfo> inspect_on_its_executor(std::shared_ptr<mux::Session> session) {
  co_return session->inspect();
}

std::int64_t seconds_since(MonotonicTime then, MonotonicTime now) {
  if (then >= now) return 0;
  return std::chrono::duration_cast<std::chrono::seconds>(now - then).count();
}

std::string tunnel_name(const AgentSession& agent, std::uint16_t index) {
  if (index < agent.hostnames.size()) return agent.hostnames[index];
  return "#" + std::to_string(index);
}

json stream_json(const AgentSession& agent, const mux::StreamInfo& s, MonotonicTime now) {
  return json{{"id", s.id},
              {"tunnel", tunnel_name(agent, s.tunnel_index)},
              {"age_seconds", seconds_since(s.opened_at, now)},
              {"bytes_sent", s.bytes_sent},
              {"bytes_received", s.bytes_received},
              {"receive_window", s.receive_window},
              {"send_credit", s.send_credit},
              {"buffered_bytes", s.buffered},
              {"sent_end", s.write_closed},
              {"received_end", s.read_closed}};
}

// "3s", "4m05s", "2h03m", "5d02h".
std::string format_age(std::int64_t seconds) {
  char buf[32];
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  } else if (seconds < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(seconds / 3600),
                  static_cast<long long>(seconds % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(seconds / 86400),
                  static_cast<long long>(seconds % 86400 / 3600));
  }
  return buf;
}

std::string text(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  return it->dump();
}

std::string age_text(const json& j) {
  const auto it = j.find("age_seconds");
  return it == j.end() || !it->is_number_integer() ? "-" : format_age(it->get<std::int64_t>());
}

// %XX decoded; nullopt for a bad escape.
std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    unsigned value = 0;
    if (in.size() - i < 3 ||
        std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16).ptr != in.data() + i + 3) {
      return std::nullopt;
    }
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

}  // namespace

common::Result<InspectQuery> parse_inspect_query(std::string_view query) {
  InspectQuery out;
  while (!query.empty()) {
    const std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (key == "agent") {
      auto decoded = percent_decode(value);
      if (!decoded || decoded->empty() || decoded->size() > 200) {
        return common::fail("agent: expected an agent id (1-200 characters)");
      }
      out.agent = std::move(*decoded);
      continue;
    }
    if (key == "limit" || key == "oldest") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      const std::size_t max = key == "limit" ? kInspectMaxLimit : kInspectMaxOldest;
      if (ec != std::errc{} || end != value.data() + value.size() || n > max ||
          (key == "limit" && n == 0)) {
        return common::fail(std::string(key) + ": expected a number from " +
                            (key == "limit" ? "1" : "0") + " to " + std::to_string(max));
      }
      (key == "limit" ? out.limit : out.oldest) = n;
      continue;
    }
    return common::fail("unknown parameter \"" + observability::escape_for_text_log(key) +
                        "\" (expected agent, limit and oldest)");
  }
  return out;
}

bool agent_matches(const AgentSession& agent, const std::string& name) {
  if (name.empty() || agent.agent_id == name) return true;
  return name.size() == agent.account.size() + 1 + agent.agent_id.size() &&
         name.starts_with(agent.account) && name[agent.account.size()] == '/' &&
         name.ends_with(agent.agent_id);
}

asio::awaitable<std::vector<SessionSnapshot>> snapshot_sessions(
    std::vector<std::shared_ptr<AgentSession>> agents, std::string matching, bool& truncated) {
  std::vector<SessionSnapshot> out;
  // The oldest sessions first, so that a cut keeps the same ones from one answer to the next.
  std::stable_sort(agents.begin(), agents.end(),
                   [](const auto& a, const auto& b) { return a->connected_at < b->connected_at; });
  for (auto& agent : agents) {
    if (agent == nullptr || agent->session == nullptr || !agent_matches(*agent, matching)) continue;
    if (out.size() == kInspectMaxSessions) {
      truncated = true;
      break;
    }
    auto session = agent->session;
    mux::SessionInfo info = co_await asio::co_spawn(
        session->get_executor(), inspect_on_its_executor(session), asio::use_awaitable);
    out.push_back(SessionSnapshot{std::move(agent), std::move(info)});
  }
  co_return out;
}

nlohmann::json connections_json(const std::vector<SessionSnapshot>& sessions,
                                const InspectQuery& query, bool truncated, MonotonicTime now,
                                std::int64_t now_unix, std::uint64_t public_connections) {
  const bool one_agent = !query.agent.empty();
  json agents = json::array();
  std::map<std::pair<std::string, std::string>, std::size_t> agent_at;  // (account, id) -> index
  std::size_t listed = 0;
  struct Oldest {
    std::int64_t age;
    json row;
  };
  struct TunnelTotals {
    std::set<std::pair<std::string, std::string>> agents;
    std::uint64_t connections = 0, bytes_sent = 0, bytes_received = 0;
    std::vector<Oldest> oldest;  // at most query.oldest, oldest first
  };
  std::map<std::string, TunnelTotals> tunnels;
  for (const auto& snap : sessions) {
    const AgentSession& agent = *snap.agent;
    const auto key = std::make_pair(agent.account, agent.agent_id);
    for (const auto& name : agent.hostnames) tunnels[name].agents.insert(key);
    for (const auto& s : snap.info.streams) {
      TunnelTotals& t = tunnels[tunnel_name(agent, s.tunnel_index)];
      ++t.connections;
      t.bytes_sent += s.bytes_sent;
      t.bytes_received += s.bytes_received;
      const std::int64_t age = seconds_since(s.opened_at, now);
      if (t.oldest.size() < query.oldest || (!t.oldest.empty() && age > t.oldest.back().age)) {
        json row{{"agent_id", agent.agent_id},
                 {"stream", s.id},
                 {"age_seconds", age},
                 {"bytes_sent", s.bytes_sent},
                 {"bytes_received", s.bytes_received}};
        const auto at = std::upper_bound(t.oldest.begin(), t.oldest.end(), age,
                                         [](std::int64_t a, const Oldest& o) { return a > o.age; });
        t.oldest.insert(at, Oldest{age, std::move(row)});
        if (t.oldest.size() > query.oldest) t.oldest.pop_back();
      }
    }
    if (listed == query.limit && !one_agent) {
      truncated = true;
      continue;
    }
    ++listed;
    json session{{"peer", agent.peer},
                 {"version", agent.version},
                 {"protocol", snap.info.version},
                 {"connected_at", ctl::format_time(agent.connected_at)},
                 {"age_seconds", std::max<std::int64_t>(0, now_unix - agent.connected_at)},
                 {"rtt_ms", static_cast<double>(snap.info.rtt.count()) / 1000.0},
                 {"streams", snap.info.streams.size()},
                 {"bytes_sent", snap.info.bytes_sent},
                 {"bytes_received", snap.info.bytes_received},
                 {"queued_bytes", snap.info.queued_bytes},
                 {"stream_send_window", snap.info.peer_window},
                 {"window_growth", snap.info.window_growth},
                 {"draining", snap.info.draining},
                 {"open", snap.info.open},
                 {"tunnels", agent.hostnames}};
    if (one_agent) {
      json streams = json::array();
      for (const auto& s : snap.info.streams) {
        if (streams.size() == query.limit) {
          session["streams_truncated"] = true;
          truncated = true;
          break;
        }
        streams.push_back(stream_json(agent, s, now));
      }
      session["stream_list"] = std::move(streams);
    }
    auto [it, added] = agent_at.emplace(key, agents.size());
    if (added) {
      agents.push_back(json{
          {"account", agent.account}, {"agent_id", agent.agent_id}, {"sessions", json::array()}});
    }
    agents[it->second]["sessions"].push_back(std::move(session));
  }
  json tunnel_list = json::array();
  for (auto& [name, t] : tunnels) {
    if (tunnel_list.size() == kInspectMaxTunnels) {
      truncated = true;
      break;
    }
    json oldest = json::array();
    for (auto& o : t.oldest) oldest.push_back(std::move(o.row));
    tunnel_list.push_back(json{{"tunnel", name},
                               {"agents", t.agents.size()},
                               {"connections", t.connections},
                               {"bytes_sent", t.bytes_sent},
                               {"bytes_received", t.bytes_received},
                               {"oldest", std::move(oldest)}});
  }
  json doc{{"sessions", sessions.size()},
           {"agents", std::move(agents)},
           {"tunnels", std::move(tunnel_list)},
           {"public_connections", public_connections},
           {"truncated", truncated}};
  if (one_agent) doc["agent"] = query.agent;
  return doc;
}

std::string render_connections(const nlohmann::json& doc) {
  std::string out;
  std::vector<std::vector<std::string>> rows{{"AGENT", "ACCOUNT", "PEER", "VERSION", "AGE", "RTT",
                                              "STREAMS", "SENT", "RECEIVED", "QUEUED", "STATE"}};
  std::vector<std::vector<std::string>> streams{{"AGENT", "STREAM", "TUNNEL", "AGE", "SENT",
                                                 "RECEIVED", "WINDOW", "CREDIT", "BUFFERED",
                                                 "ENDED"}};
  const json empty = json::array();
  const json& agents = doc.contains("agents") ? doc["agents"] : empty;
  for (const auto& agent : agents) {
    if (!agent.contains("sessions")) continue;
    for (const auto& s : agent["sessions"]) {
      char rtt[32];
      std::snprintf(rtt, sizeof rtt, "%.1fms", s.value("rtt_ms", 0.0));
      const std::string state = !s.value("open", true)       ? "closed"
                                : s.value("draining", false) ? "draining"
                                                             : "open";
      rows.push_back({text(agent, "agent_id"), text(agent, "account"), text(s, "peer"),
                      text(s, "version"), age_text(s), rtt, text(s, "streams"),
                      text(s, "bytes_sent"), text(s, "bytes_received"), text(s, "queued_bytes"),
                      state});
      if (!s.contains("stream_list")) continue;
      for (const auto& st : s["stream_list"]) {
        std::string ended = st.value("sent_end", false) ? "sent" : "";
        if (st.value("received_end", false)) ended += ended.empty() ? "received" : ",received";
        streams.push_back({text(agent, "agent_id"), text(st, "id"), text(st, "tunnel"),
                           age_text(st), text(st, "bytes_sent"), text(st, "bytes_received"),
                           text(st, "receive_window"), text(st, "send_credit"),
                           text(st, "buffered_bytes"), ended.empty() ? "-" : ended});
      }
    }
  }
  if (rows.size() == 1) {
    out += doc.contains("agent") ? "No session of agent " + text(doc, "agent") + ".\n"
                                 : "No agent is connected.\n";
  } else {
    out += ctl::align(rows);
  }
  if (streams.size() > 1) {
    out += "\n";
    out += ctl::align(streams);
  } else if (doc.contains("agent") && rows.size() > 1) {
    out += "\nNo open streams.\n";
  }
  std::vector<std::vector<std::string>> tunnels{
      {"TUNNEL", "AGENTS", "CONNECTIONS", "SENT", "RECEIVED", "OLDEST"}};
  const json& tunnel_list = doc.contains("tunnels") ? doc["tunnels"] : empty;
  for (const auto& t : tunnel_list) {
    std::string oldest = "-";
    if (t.contains("oldest") && !t["oldest"].empty()) {
      const auto& o = t["oldest"][0];
      oldest = age_text(o) + " (" + text(o, "agent_id") + " stream " + text(o, "stream") + ")";
    }
    tunnels.push_back({text(t, "tunnel"), text(t, "agents"), text(t, "connections"),
                       text(t, "bytes_sent"), text(t, "bytes_received"), oldest});
  }
  if (tunnels.size() > 1) {
    out += "\n";
    out += ctl::align(tunnels);
  }
  out += "\n" + text(doc, "public_connections") + " public connections open";
  if (doc.value("truncated", false)) out += "; the answer was cut (see --limit)";
  out += ".\n";
  return out;
}

}  // namespace tunnel::core

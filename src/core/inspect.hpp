// Connection inspection (issue 18): the connected agents, their sessions and streams, and the
// public connections each tunnel carries now, as JSON for the admin listener's
// GET /debug/connections and as tables for `tunnel-core inspect`.
// Each session is read on its own executor (mux::Session::inspect), one after the other: the
// workers never stop for it, each pays a few microseconds per session it owns.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/time_source.hpp"
#include "mux/session.hpp"

namespace tunnel::core {

namespace asio = boost::asio;
class AgentSession;

struct InspectQuery {
  std::string agent;        // "" = the overview; else an agent id (or "account/agent-id")
  std::size_t limit = 100;  // sessions listed (overview) or streams per session (one agent)
  std::size_t oldest = 5;   // the oldest connections listed per tunnel
};

// Hard bounds whatever the query says: the answer of an admin request stays small.
inline constexpr std::size_t kInspectMaxLimit = 1000;
inline constexpr std::size_t kInspectMaxOldest = 50;
// Sessions read for one answer (the per-tunnel counts cover these; "truncated" says so).
inline constexpr std::size_t kInspectMaxSessions = 4096;
// Tunnels listed in the overview.
inline constexpr std::size_t kInspectMaxTunnels = 500;

// Parses "agent=ID&limit=N&oldest=N" (the part after '?'); an error names the bad parameter.
common::Result<InspectQuery> parse_inspect_query(std::string_view query);

struct SessionSnapshot {
  std::shared_ptr<const AgentSession> agent;
  mux::SessionInfo info;
};

// Reads each agent's session on the session's executor and comes back to the caller's; at most
// kInspectMaxSessions, `matching` (agent ids as in InspectQuery::agent; "" = all) only.
asio::awaitable<std::vector<SessionSnapshot>> snapshot_sessions(
    std::vector<std::shared_ptr<AgentSession>> agents, std::string matching, bool& truncated);

// True when `agent` is what InspectQuery::agent names.
bool agent_matches(const AgentSession& agent, const std::string& name);

// The answer (pure). `now`/`now_unix`: the clock the sessions' streams were stamped with.
// `public_connections`: the core's open public connections (all listeners).
nlohmann::json connections_json(const std::vector<SessionSnapshot>& sessions,
                                const InspectQuery& query, bool truncated, MonotonicTime now,
                                std::int64_t now_unix, std::uint64_t public_connections);

// The tables `tunnel-core inspect` prints for that JSON (pure).
std::string render_connections(const nlohmann::json& doc);

}  // namespace tunnel::core

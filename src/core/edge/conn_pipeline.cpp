#include "core/edge/conn_pipeline.hpp"

#include "protocol/proxy_header.hpp"

namespace tunnel::core {

ConnectionDecision decide_connection(const ConnectionFacts& facts, const LimitsConfig& limits,
                                     const PortLookup& lookup) {
  ConnectionDecision decision;
  if (lookup(decision.route) != LookupStatus::kFound) {
    decision.route = {};
    decision.refusal = "no agent serves the port";
    return decision;
  }
  if (facts.protocol == PortProtocol::kTcp) {
    if (facts.open >= limits.max_connections_per_tcp_tunnel) {
      decision.route = {};
      decision.refusal = "the tunnel has " + std::to_string(limits.max_connections_per_tcp_tunnel) +
                         " connections open (limits.max_connections_per_tcp_tunnel)";
      return decision;
    }
  } else {
    decision.evict_oldest = facts.open >= limits.max_clients_per_udp_tunnel;
  }
  decision.open_payload = protocol::format_addresses(facts.peer, facts.local);
  return decision;
}

std::string_view end_name(ConnectionEnd end) {
  switch (end) {
    case ConnectionEnd::kRefused:
      return "refused";
    case ConnectionEnd::kClosed:
      return "closed";
    case ConnectionEnd::kClient:
      return "client";
    case ConnectionEnd::kAgent:
      return "agent";
    case ConnectionEnd::kIdle:
      return "idle";
    case ConnectionEnd::kEvicted:
      return "evicted";
  }
  return "?";
}

ConnectionFilterChain::ConnectionFilterChain(std::vector<std::shared_ptr<ConnectionFilter>> filters)
    : filters_(std::move(filters)) {
  for (const auto& filter : filters_) hooks_ |= filter->hooks();
}

ConnectionVerdict ConnectionFilterChain::accept(const ConnectionInfo& connection) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & conn_hook::kAccept) == 0) continue;
    ConnectionVerdict verdict = filter->on_accept(connection);
    if (!verdict.proceed()) {
      verdict.by = filter->name();
      return verdict;
    }
  }
  return {};
}

ConnectionVerdict ConnectionFilterChain::new_source(const ConnectionInfo& client) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & conn_hook::kNewSource) == 0) continue;
    ConnectionVerdict verdict = filter->on_new_source(client);
    if (!verdict.proceed()) {
      verdict.by = filter->name();
      return verdict;
    }
  }
  return {};
}

void ConnectionFilterChain::complete(const ConnectionInfo& connection,
                                     const ConnectionSummary& summary) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & conn_hook::kComplete) != 0) filter->on_complete(connection, summary);
  }
}

ConnectionVerdict admit(const ConnectionFilterChain* listener, const ConnectionFilterChain* tunnel,
                        unsigned hook, const ConnectionInfo& connection) {
  for (const ConnectionFilterChain* chain : {listener, tunnel}) {
    if (chain == nullptr || !chain->wants(hook)) continue;
    ConnectionVerdict verdict =
        hook == conn_hook::kAccept ? chain->accept(connection) : chain->new_source(connection);
    if (!verdict.proceed()) return verdict;
  }
  return {};
}

void complete(const ConnectionFilterChain* listener, const ConnectionFilterChain* tunnel,
              const ConnectionInfo& connection, const ConnectionSummary& summary) {
  for (const ConnectionFilterChain* chain : {listener, tunnel}) {
    if (chain != nullptr && chain->wants(conn_hook::kComplete)) {
      chain->complete(connection, summary);
    }
  }
}

std::shared_ptr<const ConnectionFilterChain> port_listener_filters(const Config& /*config*/) {
  return nullptr;
}

std::shared_ptr<const ConnectionFilterChain> tunnel_connection_filters(
    const protocol::TunnelRequest& /*request*/) {
  return nullptr;
}

}  // namespace tunnel::core

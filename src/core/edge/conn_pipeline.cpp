#include "core/edge/conn_pipeline.hpp"

#include "core/edge/access.hpp"
#include "protocol/proxy_header.hpp"

namespace tunnel::core {

SourceKey source_key(const boost::asio::ip::address& address) {
  if (address.is_v4()) return {address.to_v4().to_uint(), false};
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    return {boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_uint(), false};
  }
  const auto bytes = v6.to_bytes();
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < 8; ++i) bits = (bits << 8) | bytes[i];
  return {bits, true};
}

std::string to_string(const SourceKey& key) {
  if (!key.v6) {
    return boost::asio::ip::address_v4(static_cast<std::uint32_t>(key.bits)).to_string();
  }
  boost::asio::ip::address_v6::bytes_type bytes{};
  for (std::size_t i = 0; i < 8; ++i)
    bytes[i] = static_cast<unsigned char>(key.bits >> (56 - 8 * i));
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

std::uint32_t SourceCounts::count(const SourceKey& key) const {
  std::lock_guard lock(mutex_);
  const auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

void SourceCounts::add(const SourceKey& key) {
  std::lock_guard lock(mutex_);
  ++counts_[key];
}

void SourceCounts::remove(const SourceKey& key) {
  std::lock_guard lock(mutex_);
  const auto it = counts_.find(key);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
}

std::size_t SourceCounts::sources() const {
  std::lock_guard lock(mutex_);
  return counts_.size();
}

ConnectionDecision decide_connection(const ConnectionFacts& facts, const LimitsConfig& limits,
                                     const PortLookup& lookup) {
  ConnectionDecision decision;
  if (lookup(decision.route) != LookupStatus::kFound) {
    decision.route = {};
    decision.refusal = "no agent serves the port";
    decision.refusal_reason = "no_agent";
    return decision;
  }
  if (facts.protocol == PortProtocol::kTcp) {
    const std::uint32_t per_address = limits.max_connections_per_tcp_tunnel_per_address;
    if (per_address != 0 && facts.open_from_source >= per_address) {
      decision.route = {};
      decision.refusal = "the client's address has " + std::to_string(per_address) +
                         " connections open to the tunnel "
                         "(limits.max_connections_per_tcp_tunnel_per_address)";
      decision.refusal_reason = "address_limit";
      return decision;
    }
    if (facts.open >= limits.max_connections_per_tcp_tunnel) {
      decision.route = {};
      decision.refusal = "the tunnel has " + std::to_string(limits.max_connections_per_tcp_tunnel) +
                         " connections open (limits.max_connections_per_tcp_tunnel)";
      decision.refusal_reason = "tunnel_limit";
      return decision;
    }
  } else {
    const std::uint32_t per_address = limits.max_clients_per_udp_tunnel_per_address;
    if (per_address != 0 && facts.open_from_source >= per_address) {
      decision.evict = UdpEviction::kOldestOfSource;  // makes room in the port's count too
    } else if (facts.open >= limits.max_clients_per_udp_tunnel) {
      decision.evict = UdpEviction::kOldest;
    }
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

ConnectionVerdict QuotaConnectionFilter::on_accept(const ConnectionInfo& /*connection*/) {
  if (const auto refusal = quota_->admit()) return ConnectionVerdict::refuse(refusal->describe());
  return ConnectionVerdict::next();
}

ConnectionVerdict QuotaConnectionFilter::on_new_source(const ConnectionInfo& client) {
  return on_accept(client);
}

void QuotaConnectionFilter::on_complete(const ConnectionInfo& /*connection*/,
                                        const ConnectionSummary& summary) {
  quota_->release(summary.bytes_in + summary.bytes_out);
}

common::Result<std::shared_ptr<const ConnectionFilterChain>> tunnel_connection_filters(
    const protocol::TunnelRequest& request, const std::shared_ptr<AccountQuota>& quota,
    const AccessScope* access) {
  std::vector<std::shared_ptr<ConnectionFilter>> filters;
  if (access != nullptr) {  // first: a refused address holds no quota slot
    auto filter = tunnel_access_connection_filter(*access, request);
    if (!filter) return std::move(filter).error();
    if (filter.value()) filters.push_back(std::move(filter).value());
  } else if (!request.cidr_allow.empty() || !request.cidr_deny.empty() ||
             !request.basic_auth.empty()) {
    return common::fail("access rules need the core's configuration (no AccessScope given)");
  }
  if (quota) filters.push_back(std::make_shared<QuotaConnectionFilter>(quota));
  if (filters.empty()) return std::shared_ptr<const ConnectionFilterChain>{};
  return std::make_shared<const ConnectionFilterChain>(std::move(filters));
}

}  // namespace tunnel::core

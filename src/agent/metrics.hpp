// The agent's own metrics (issue 18), served on --metrics-addr (metrics_addr in the config file;
// off by default): requests to the local apps per tunnel (status class, duration, errors), the
// session to the core (connected, reconnects, round-trip time from PING) and the process.
//
// Everything runs on the agent's one thread: the series are created there and the /metrics
// server renders there, so nothing here needs a lock beyond the registry's own.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <map>
#include <memory>
#include <string>

#include "observability/metrics.hpp"

namespace tunnel::agent {

struct ForwardResult;

// The series of one tunnel of this agent.
class AgentTunnelMetrics {
 public:
  AgentTunnelMetrics(observability::Registry& registry, const std::string& tunnel);

  // One exchange with the local app, when it ended.
  void count(const ForwardResult& result);

  observability::Gauge& active;  // requests at the local app now

 private:
  observability::Registry& registry_;
  std::string tunnel_;
  observability::Histogram& duration_;
  std::array<observability::Counter*, 5> requests_{};  // by status class, created when used
  std::array<observability::Counter*, 3> errors_{};    // app_refused, app_error, bad_request
};

class AgentMetrics {
 public:
  // Tunnels with their own series; more (a core assigning many) share tunnel="_other".
  static constexpr std::size_t kMaxTunnels = 256;

  explicit AgentMetrics(observability::Registry& registry);

  // The series of the tunnel named `name` (its public hostname or address); the same object
  // for the same name, across reconnects.
  AgentTunnelMetrics* tunnel(const std::string& name);

  observability::Registry& registry;
  observability::Counter& sessions;          // sessions established
  observability::Counter& reconnects;        // sessions established after the first
  observability::Counter& connect_failures;  // dials or AUTHs that failed (retried)

 private:
  std::map<std::string, std::unique_ptr<AgentTunnelMetrics>> tunnels_;
};

// Serves GET /metrics (and /healthz) on `acceptor` until it is closed: one request per
// connection, at most 16 connections at once, a head of at most 8 KiB within 5 s.
boost::asio::awaitable<void> serve_metrics(boost::asio::ip::tcp::acceptor& acceptor,
                                           observability::Registry& registry);

}  // namespace tunnel::agent

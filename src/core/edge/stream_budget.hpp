// Stream budgets of tcp and udp tunnels (issue 25 "idle tcp connections and UDP sources count
// against the agent's shared stream limit", issue 16 section 5).
//
// An agent's streams are shared by all its tunnels (limits.max_streams_per_agent). Without
// budgets, 1,000 idle tcp connections or datagrams from 1,000 (spoofed) source addresses took
// every stream and the agent's http tunnels answered 503. Now each tcp tunnel has its own
// connection budget, each udp tunnel its own client budget (the least recently active client
// makes room for a new one), and the tcp/udp streams of one agent together leave
// limits.streams_reserved_for_http to its http tunnels (raw_stream_budget()).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "common/result.hpp"
#include "common/time_source.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/control/config.hpp"

namespace tunnel::core {

// Takes one of `agent`'s raw-tunnel stream slots, or says why not (naming the config key).
// Call on the agent session's executor; give it back there with release_raw_stream().
inline common::Status take_raw_stream(AgentSession& agent, const LimitsConfig& limits) {
  const std::uint32_t budget = raw_stream_budget(limits);
  if (agent.raw_streams >= budget) {
    return common::fail("the agent's tcp/udp tunnels hold " + std::to_string(agent.raw_streams) +
                        " streams; the other " +
                        std::to_string(limits.max_streams_per_agent - budget) +
                        " are kept for its http tunnels (limits.streams_reserved_for_http)");
  }
  ++agent.raw_streams;
  return common::success();
}

inline void release_raw_stream(AgentSession& agent) {
  if (agent.raw_streams > 0) --agent.raw_streams;
}

// Lets one log line through per `interval` and counts the ones held back, so a flood of
// refusals (one per spoofed datagram) costs one line every 10 s. Thread-safe. The caller says
// when it is (the core's TimeSource), so tests decide on a simulated clock.
class LogGate {
 public:
  explicit LogGate(std::chrono::seconds interval = std::chrono::seconds(10))
      : interval_(interval) {}

  // True when a line may be written at `now`; `suppressed` gets how many were held back since.
  bool allow(std::uint64_t& suppressed, MonotonicTime now) {
    const auto at = now.time_since_epoch().count();
    auto next = next_.load(std::memory_order_relaxed);
    if (at < next || !next_.compare_exchange_strong(
                         next, at + std::chrono::steady_clock::duration(interval_).count())) {
      held_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    suppressed = held_.exchange(0, std::memory_order_relaxed);
    return true;
  }

 private:
  std::chrono::seconds interval_;
  std::atomic<std::chrono::steady_clock::rep> next_{0};
  std::atomic<std::uint64_t> held_{0};
};

}  // namespace tunnel::core

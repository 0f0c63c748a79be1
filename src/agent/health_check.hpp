// Active health checks of a tunnel's local app (issue 19; frp's healthCheck and Envoy's active
// health checking are the models): every `interval` the agent connects to the app (tcp), or
// sends it `GET path` and wants a 2xx or 3xx answer (http), within `timeout`. `fall` failed
// checks in a row make the tunnel unhealthy, `rise` passed checks in a row healthy again. An
// unhealthy tunnel is withdrawn from the cores (a health NOTICE on every session,
// protocol/health_notice.hpp): they route its name to the agent's healthy peers, or answer 503
// naming the reason when none is left.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/net_address.hpp"
#include "common/result.hpp"

namespace tunnel::agent {

struct HealthCheckSpec {
  enum class Kind { kNone, kTcp, kHttp };
  Kind kind = Kind::kNone;
  std::string path = "/";  // http
  std::chrono::milliseconds interval{10'000};
  std::chrono::milliseconds timeout{2'000};
  std::uint32_t rise = 2;
  std::uint32_t fall = 3;

  bool enabled() const { return kind != Kind::kNone; }
  std::string describe() const;  // "tcp", "http GET /healthz"
};

// "tcp", "http" (GET /) or "http:/path"; "" or "none" = no health check.
common::Result<HealthCheckSpec> parse_health_check(std::string_view text);

// The rise and fall thresholds. A tunnel starts healthy (its first check runs at once).
class HealthState {
 public:
  HealthState(std::uint32_t rise, std::uint32_t fall) : rise_(rise), fall_(fall) {}
  // Counts one check; true when it changed healthy().
  bool observe(bool passed);
  bool healthy() const { return healthy_; }

 private:
  std::uint32_t rise_;
  std::uint32_t fall_;
  bool healthy_ = true;
  std::uint32_t streak_ = 0;  // checks in a row that disagree with healthy_
};

// One check of `target`: "" when it passed, else why not ("connect 127.0.0.1:3000: Connection
// refused", "GET /healthz answered 503", "no answer within 2 s").
boost::asio::awaitable<std::string> run_health_check(boost::asio::any_io_executor executor,
                                                     HealthCheckSpec spec,
                                                     common::NetAddress target);

}  // namespace tunnel::agent

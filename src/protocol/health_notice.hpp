// The health of an agent's tunnel, as the agent tells the core (issue 19): a NOTICE frame
// (version 2) from the agent, on stream 0, with the tunnel's index and one of
//   "tunnel-health: healthy"
//   "tunnel-health: unhealthy: <reason>"
// A core that does not know it ignores it, as every NOTICE from an agent before it (so the
// protocol version does not change); docs/protocol.md, "NOTICE".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tunnel::protocol {

inline constexpr std::string_view kHealthNoticePrefix = "tunnel-health: ";

struct HealthNotice {
  bool healthy = true;
  std::string_view reason;  // unhealthy: why ("connect to 127.0.0.1:3000: Connection refused")
  bool operator==(const HealthNotice&) const = default;
};

std::string health_notice(bool healthy, std::string_view reason);
// The health a NOTICE message reports, or nullopt for any other message. An empty reason reads
// as "health check failing".
std::optional<HealthNotice> parse_health_notice(std::string_view message);

}  // namespace tunnel::protocol

#include "protocol/health_notice.hpp"

namespace tunnel::protocol {

std::string health_notice(bool healthy, std::string_view reason) {
  std::string out(kHealthNoticePrefix);
  if (healthy) return out + "healthy";
  out += "unhealthy: ";
  out += reason.empty() ? std::string_view("health check failing") : reason;
  return out;
}

std::optional<HealthNotice> parse_health_notice(std::string_view message) {
  if (!message.starts_with(kHealthNoticePrefix)) return std::nullopt;
  message.remove_prefix(kHealthNoticePrefix.size());
  if (message == "healthy") return HealthNotice{true, {}};
  constexpr std::string_view kUnhealthy = "unhealthy";
  if (!message.starts_with(kUnhealthy)) return std::nullopt;
  message.remove_prefix(kUnhealthy.size());
  if (message.starts_with(": ")) message.remove_prefix(2);
  return HealthNotice{false, message.empty() ? std::string_view("health check failing") : message};
}

}  // namespace tunnel::protocol

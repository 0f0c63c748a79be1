#include "protocol/health_notice.hpp"

#include <gtest/gtest.h>

namespace tunnel::protocol {
namespace {

// Issue 19: the agent's health report travels as a NOTICE with a fixed prefix.
TEST(HealthNotice, RoundTripAndOtherNotices) {
  EXPECT_EQ(health_notice(true, "ignored"), "tunnel-health: healthy");
  EXPECT_EQ(health_notice(false, "GET /healthz answered 503"),
            "tunnel-health: unhealthy: GET /healthz answered 503");
  EXPECT_EQ(parse_health_notice(health_notice(true, "")), (HealthNotice{true, {}}));
  EXPECT_EQ(parse_health_notice(health_notice(false, "refused")), (HealthNotice{false, "refused"}));
  EXPECT_EQ(parse_health_notice(health_notice(false, "")),
            (HealthNotice{false, "health check failing"}));
  EXPECT_EQ(parse_health_notice("tunnel-health: unhealthy"),
            (HealthNotice{false, "health check failing"}));
  EXPECT_FALSE(parse_health_notice("app.example was taken over by another account"));
  EXPECT_FALSE(parse_health_notice("tunnel-health: maybe"));
  EXPECT_FALSE(parse_health_notice(""));
}

}  // namespace
}  // namespace tunnel::protocol

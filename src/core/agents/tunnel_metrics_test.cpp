#include "core/agents/tunnel_metrics.hpp"

#include <gtest/gtest.h>

namespace tunnel::core {
namespace {

TEST(TunnelMetrics, MethodsOutsideTheFixedSetAreOther) {
  EXPECT_EQ(method_label(method_index("GET")), "GET");
  EXPECT_EQ(method_label(method_index("DELETE")), "DELETE");
  EXPECT_EQ(method_label(method_index("OPTIONS")), "OPTIONS");
  EXPECT_EQ(method_label(method_index("get")), "other");
  EXPECT_EQ(method_label(method_index("PROPFIND")), "other");
  EXPECT_EQ(method_label(method_index("")), "other");
}

TEST(TunnelMetrics, StatusClasses) {
  EXPECT_EQ(status_class_index(101), 0u);
  EXPECT_EQ(status_class_index(204), 1u);
  EXPECT_EQ(status_class_index(499), 3u);
  EXPECT_EQ(status_class_index(500), 4u);
  EXPECT_EQ(status_class_index(0), 4u);
  EXPECT_EQ(status_class_index(999), 4u);
}

TEST(TunnelMetrics, LocalAnswersHaveACause) {
  EXPECT_EQ(cause_of_local_answer(404, false), ErrorCause::kNoTunnel);
  EXPECT_EQ(cause_of_local_answer(503, false), ErrorCause::kAgentOffline);
  EXPECT_EQ(cause_of_local_answer(503, true), ErrorCause::kAgentUnavailable);
  EXPECT_EQ(cause_of_local_answer(429, true), ErrorCause::kQuota);
  EXPECT_EQ(cause_of_local_answer(413, true), ErrorCause::kTooLarge);
  EXPECT_EQ(cause_of_local_answer(431, false), ErrorCause::kBadRequest);
  EXPECT_EQ(cause_of_local_answer(403, true), ErrorCause::kFiltered);
  EXPECT_EQ(error_cause_name(ErrorCause::kAppRefused), "app_refused");
}

TEST(TunnelMetrics, RequestsAreCountedByTunnelMethodAndClass) {
  observability::Registry registry;
  TunnelMetricsBook book(registry, 10);
  auto app = book.series("app.example.com", "team");
  for (int i = 0; i < 100; ++i) app->count_request(method_index("GET"), 200);
  app->count_request(method_index("POST"), 500);
  app->count_error(ErrorCause::kTimeout);
  app->duration.observe(0.00015);
  const std::string text = registry.render();
  EXPECT_NE(text.find("tunnel_requests_total{tunnel=\"app.example.com\",account=\"team\","
                      "method=\"GET\",class=\"2xx\"} 100\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("method=\"POST\",class=\"5xx\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("tunnel_request_errors_total{tunnel=\"app.example.com\",account=\"team\","
                      "cause=\"timeout\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("tunnel_request_duration_seconds_bucket{tunnel=\"app.example.com\","
                      "account=\"team\",le=\"0.0001\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("tunnel_request_duration_seconds_bucket{tunnel=\"app.example.com\","
                      "account=\"team\",le=\"0.0002\"} 1\n"),
            std::string::npos);
  // Only the series used are there: no other method or class.
  EXPECT_EQ(text.find("method=\"PUT\""), std::string::npos);
}

TEST(TunnelMetrics, TunnelsPastTheCapShareTheOtherSeries) {
  observability::Registry registry;
  TunnelMetricsBook book(registry, 2);
  auto a = book.series("a.example.com", "one");
  auto b = book.series("b.example.com", "one");
  EXPECT_EQ(book.series("a.example.com", "one"), a);  // again: the same series, no overflow
  auto c = book.series("c.example.com", "two");
  auto d = book.series("d.example.com", "two");
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  EXPECT_EQ(c, d);
  EXPECT_EQ(c->tunnel(), "_other");
  EXPECT_EQ(book.tracked(), 2u);
  c->count_request(method_index("GET"), 200);
  d->count_request(method_index("GET"), 200);
  const std::string text = registry.render();
  EXPECT_NE(text.find("tunnel_metrics_overflow_total 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tunnel_requests_total{tunnel=\"_other\",account=\"_other\",method=\"GET\","
                      "class=\"2xx\"} 2\n"),
            std::string::npos);
  EXPECT_EQ(text.find("c.example.com"), std::string::npos);
}

TEST(TunnelMetrics, ACapOfZeroPutsEveryTunnelInOther) {
  observability::Registry registry;
  TunnelMetricsBook book(registry, 0);
  EXPECT_EQ(book.series("a.example.com", "one")->tunnel(), "_other");
  EXPECT_EQ(book.none().tunnel(), "_none");
}

}  // namespace
}  // namespace tunnel::core

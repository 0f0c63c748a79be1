#include "observability/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <thread>

namespace tunnel::observability {
namespace {

TEST(Metrics, EmptyRegistryRendersNothing) {
  Registry r;
  EXPECT_EQ(r.render(), "");
}

TEST(Metrics, CounterWithoutLabels) {
  Registry r;
  Counter& c = r.counter("tunnel_connections_total", "Agent connections accepted.");
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);
  EXPECT_EQ(r.render(),
            "# HELP tunnel_connections_total Agent connections accepted.\n"
            "# TYPE tunnel_connections_total counter\n"
            "tunnel_connections_total 42\n");
}

TEST(Metrics, LabelledSeriesShareOneFamily) {
  Registry r;
  Counter& ok = r.counter("requests_total", "HTTP requests.", {{"code", "200"}});
  Counter& missing = r.counter("requests_total", "HTTP requests.", {{"code", "404"}});
  EXPECT_EQ(&r.counter("requests_total", "HTTP requests.", {{"code", "200"}}), &ok);
  ok.inc(3);
  missing.inc();
  EXPECT_EQ(r.render(),
            "# HELP requests_total HTTP requests.\n"
            "# TYPE requests_total counter\n"
            "requests_total{code=\"200\"} 3\n"
            "requests_total{code=\"404\"} 1\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry r;
  r.gauge("tunnel_info", "Help with \\ and\nnewline \"quoted\".",
          {{"host", "a\"b\\c\nd"}, {"v", "é"}})
      .set(1);
  EXPECT_EQ(r.render(),
            "# HELP tunnel_info Help with \\\\ and\\nnewline \"quoted\".\n"
            "# TYPE tunnel_info gauge\n"
            "tunnel_info{host=\"a\\\"b\\\\c\\nd\",v=\"é\"} 1\n");
}

TEST(Metrics, GaugeValues) {
  Registry r;
  Gauge& g = r.gauge("tunnel_streams_open", "Open streams.");
  g.inc();
  g.inc(2.5);
  g.dec();
  EXPECT_EQ(g.value(), 2.5);
  Gauge& neg = r.gauge("tunnel_neg", "Negative.");
  neg.set(-0.25);
  Gauge& inf = r.gauge("tunnel_inf", "Infinite.");
  inf.set(INFINITY);
  Gauge& nan = r.gauge("tunnel_nan", "Not a number.");
  nan.set(NAN);
  Gauge& big = r.gauge("tunnel_big", "Large.");
  big.set(1e21);
  EXPECT_EQ(r.render(),
            "# HELP tunnel_streams_open Open streams.\n"
            "# TYPE tunnel_streams_open gauge\n"
            "tunnel_streams_open 2.5\n"
            "# HELP tunnel_neg Negative.\n"
            "# TYPE tunnel_neg gauge\n"
            "tunnel_neg -0.25\n"
            "# HELP tunnel_inf Infinite.\n"
            "# TYPE tunnel_inf gauge\n"
            "tunnel_inf +Inf\n"
            "# HELP tunnel_nan Not a number.\n"
            "# TYPE tunnel_nan gauge\n"
            "tunnel_nan NaN\n"
            "# HELP tunnel_big Large.\n"
            "# TYPE tunnel_big gauge\n"
            "tunnel_big 1e+21\n");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInclusiveBounds) {
  Registry r;
  const double bounds[] = {0.1, 1, 2.5};
  Histogram& h =
      r.histogram("tunnel_request_seconds", "Request latency.", bounds, {{"tunnel", "app"}});
  h.observe(0.1);  // le is inclusive
  h.observe(0.5);
  h.observe(2.5);
  h.observe(30);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(r.render(),
            "# HELP tunnel_request_seconds Request latency.\n"
            "# TYPE tunnel_request_seconds histogram\n"
            "tunnel_request_seconds_bucket{tunnel=\"app\",le=\"0.1\"} 1\n"
            "tunnel_request_seconds_bucket{tunnel=\"app\",le=\"1\"} 2\n"
            "tunnel_request_seconds_bucket{tunnel=\"app\",le=\"2.5\"} 3\n"
            "tunnel_request_seconds_bucket{tunnel=\"app\",le=\"+Inf\"} 4\n"
            "tunnel_request_seconds_sum{tunnel=\"app\"} 33.1\n"
            "tunnel_request_seconds_count{tunnel=\"app\"} 4\n");
}

TEST(Metrics, HistogramDefaultsToLatencyBuckets) {
  Registry r;
  r.histogram("lat_seconds", "Latency.").observe(0.003);
  EXPECT_EQ(r.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{le=\"0.005\"} 1\n"
            "lat_seconds_bucket{le=\"0.01\"} 1\n"
            "lat_seconds_bucket{le=\"0.025\"} 1\n"
            "lat_seconds_bucket{le=\"0.05\"} 1\n"
            "lat_seconds_bucket{le=\"0.1\"} 1\n"
            "lat_seconds_bucket{le=\"0.25\"} 1\n"
            "lat_seconds_bucket{le=\"0.5\"} 1\n"
            "lat_seconds_bucket{le=\"1\"} 1\n"
            "lat_seconds_bucket{le=\"2.5\"} 1\n"
            "lat_seconds_bucket{le=\"5\"} 1\n"
            "lat_seconds_bucket{le=\"10\"} 1\n"
            "lat_seconds_bucket{le=\"+Inf\"} 1\n"
            "lat_seconds_sum 0.003\n"
            "lat_seconds_count 1\n");
}

TEST(Metrics, FunctionSeriesAreReadAtRenderTime) {
  Registry r;
  double queued = 1;
  r.gauge_fn("tunnel_queue_bytes", "Bytes queued.", [&] { return queued; });
  r.counter_fn("tunnel_cpu_seconds_total", "CPU.", [] { return 0.5; });
  queued = 7;
  EXPECT_EQ(r.render(),
            "# HELP tunnel_queue_bytes Bytes queued.\n"
            "# TYPE tunnel_queue_bytes gauge\n"
            "tunnel_queue_bytes 7\n"
            "# HELP tunnel_cpu_seconds_total CPU.\n"
            "# TYPE tunnel_cpu_seconds_total counter\n"
            "tunnel_cpu_seconds_total 0.5\n");
}

TEST(Metrics, RejectsMisuseAtRegistration) {
  Registry r;
  r.counter("x_total", "X.");
  EXPECT_THROW(r.gauge("x_total", "X."), std::invalid_argument);
  EXPECT_THROW(r.counter("1x", "bad name"), std::invalid_argument);
  EXPECT_THROW(r.counter("a-b", "bad name"), std::invalid_argument);
  EXPECT_THROW(r.counter("", "bad name"), std::invalid_argument);
  EXPECT_THROW(r.counter("ok", "bad label", {{"a-b", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok", "reserved label", {{"__x", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "le is reserved", kLatencyBuckets, {{"le", "1"}}),
               std::invalid_argument);
  const double unsorted[] = {1, 0.5};
  EXPECT_THROW(r.histogram("h2", "unsorted", unsorted), std::invalid_argument);
  r.counter_fn("f_total", "F.", [] { return 1.0; });
  EXPECT_THROW(r.counter("f_total", "F."), std::invalid_argument);
  EXPECT_NO_THROW(r.counter("ns:sub_total", "colons are allowed in names"));
}

TEST(Metrics, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter& c = r.counter("hits_total", "Hits.");
  Gauge& g = r.gauge("level", "Level.");
  Histogram& h = r.histogram("obs_seconds", "Observations.");
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        g.inc();
        h.observe(0.001);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(c.value(), 40000u);
  EXPECT_EQ(g.value(), 40000);
  EXPECT_EQ(h.count(), 40000u);
  EXPECT_NEAR(h.sum(), 40.0, 1e-6);
}

TEST(Metrics, ProcessMetricsReadProc) {
  Registry r;
  register_process_metrics(r);
  const std::string text = r.render();
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE process_resident_memory_bytes gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE process_open_fds gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE process_start_time_seconds gauge\n"), std::string::npos);
  // A running test binary holds at least stdin/stdout/stderr and some resident memory.
  const auto value_of = [&](const std::string& name) {
    const auto pos = text.find("\n" + name + " ");
    EXPECT_NE(pos, std::string::npos) << name;
    return std::strtod(text.c_str() + pos + name.size() + 2, nullptr);
  };
  EXPECT_GE(value_of("process_open_fds"), 3);
  EXPECT_GT(value_of("process_resident_memory_bytes"), 1e6);
  EXPECT_GT(value_of("process_virtual_memory_bytes"), value_of("process_resident_memory_bytes"));
  EXPECT_GT(value_of("process_start_time_seconds"), 1.5e9);
  EXPECT_GE(value_of("process_cpu_seconds_total"), 0);
}

TEST(Metrics, DefaultRegistryIsSharedAndHasProcessMetrics) {
  Registry& r = default_registry();
  EXPECT_EQ(&r, &default_registry());
  EXPECT_NE(r.render().find("process_resident_memory_bytes "), std::string::npos);
}

TEST(Metrics, FormatValue) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(0.005), "0.005");
  EXPECT_EQ(format_value(10), "10");
  EXPECT_EQ(format_value(123456789), "123456789");
  EXPECT_EQ(format_value(-INFINITY), "-Inf");
}

}  // namespace
}  // namespace tunnel::observability

namespace tunnel::observability {
namespace {

TEST(Metrics, BucketBoundsAreWrittenInFixedNotation) {
  Registry registry;
  const double bounds[] = {0.0001, 0.0002, 60};
  registry.histogram("h_seconds", "help", bounds).observe(0.00015);
  EXPECT_NE(registry.render().find(
                "h_seconds_bucket{le=\"0.0001\"} 0\nh_seconds_bucket{le=\"0.0002\"} 1\n"
                "h_seconds_bucket{le=\"60\"} 1\n"),
            std::string::npos)
      << registry.render();
}

}  // namespace
}  // namespace tunnel::observability

// tunnel_micro_counts: the deterministic side of the micro-benchmarks, for
// scripts/perf-regress.sh. Runs every workload a fixed number of times after a warm-up and prints
// one JSON object with the iterations and heap counts of each measured region. Under
// `valgrind --tool=callgrind --instr-atstart=no` each region is also instrumented on its own and
// dumped with its name (callgrind.out.<pid>.<n>, "desc: Trigger: Client Request: <name>"), so
// instructions per iteration = the dump's total / iterations.
//
//   tunnel_micro_counts            full counts (a few seconds natively, about a minute under
//                                  callgrind)
//   tunnel_micro_counts --quick    a smoke test with small counts (ctest runs it)
//   tunnel_micro_counts --concurrent N
//                                  only proxied GETs, N client connections at once (region
//                                  http_get_cN): what a request costs with N in flight. For
//                                  studies by hand, e.g. under callgrind with --cache-sim=yes
//                                  (docs/performance.md); not part of the baselines.
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "alloc_hook.hpp"
#include "workloads.hpp"

#if TUNNEL_HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(name) (void)(name)
#define RUNNING_ON_VALGRIND 0
#endif

namespace {

using tunnel::bench::HeapStats;

struct Region {
  std::string name;
  std::string unit;
  std::uint64_t iterations = 0;
  HeapStats before;
  HeapStats after;
};

// Keeps results alive without costing more than a store.
volatile std::uint64_t g_sink = 0;

// Runs `body` as one measured region: instrumented and counted from zero, dumped with `name`.
template <typename Body>
Region measure(std::string name, std::string unit, std::uint64_t iterations, Body&& body) {
  Region r{std::move(name), std::move(unit), iterations, {}, {}};
  r.before = tunnel::bench::heap_stats();
  CALLGRIND_START_INSTRUMENTATION;
  CALLGRIND_ZERO_STATS;
  body();
  CALLGRIND_DUMP_STATS_AT(r.name.c_str());
  CALLGRIND_STOP_INSTRUMENTATION;
  r.after = tunnel::bench::heap_stats();
  return r;
}

void print_json(const std::vector<Region>& regions, const tunnel::bench::IdleSessionCost& idle) {
  std::printf("{\n  \"under_valgrind\": %s,\n  \"heap_hook\": %s,\n  \"regions\": [\n",
              RUNNING_ON_VALGRIND ? "true" : "false",
              tunnel::bench::heap_hook_active() ? "true" : "false");
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const Region& r = regions[i];
    std::printf(
        "    {\"name\": \"%s\", \"unit\": \"%s\", \"iterations\": %llu, \"allocations\": %llu, "
        "\"frees\": %llu, \"live_bytes_change\": %lld}%s\n",
        r.name.c_str(), r.unit.c_str(), static_cast<unsigned long long>(r.iterations),
        static_cast<unsigned long long>(r.after.allocations - r.before.allocations),
        static_cast<unsigned long long>(r.after.frees - r.before.frees),
        static_cast<long long>(r.after.live_bytes - r.before.live_bytes),
        i + 1 < regions.size() ? "," : "");
  }
  std::printf(
      "  ],\n  \"idle_sessions\": {\"sessions\": %zu, \"core_bytes\": %.1f, \"agent_bytes\": "
      "%.1f, \"core_blocks\": %.2f, \"agent_blocks\": %.2f}\n}\n",
      idle.sessions, idle.core_bytes, idle.agent_bytes, idle.core_blocks, idle.agent_blocks);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::size_t concurrent = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--concurrent" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      concurrent = static_cast<std::size_t>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick | --concurrent N]\n"
                   "Prints instruction-count regions (under callgrind) and heap counts as JSON.\n",
                   argv[0]);
      return 2;
    }
  }
  // A hung rig must not hang CI: the default action of SIGALRM ends the process.
  alarm(quick ? 60 : 1800);
  // Two descriptors per idle session pair.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  spdlog::set_level(spdlog::level::warn);

  const std::size_t frames = 4096;
  const std::size_t frame_reps = quick ? 2 : 50;
  const std::size_t warmup_requests = quick ? 5 : 200;
  const std::size_t requests = quick ? 20 : 1000;
  const std::size_t idle_sessions = quick ? 16 : 256;

  std::vector<Region> regions;

  if (concurrent > 0) {
    // The same number of requests at every N (at least 4 per connection), after a warm-up that
    // opens the connections and fills the agent's pool.
    const std::size_t per_client = std::max<std::size_t>(4, 2048 / concurrent);
    const std::string name = "http_get_c" + std::to_string(concurrent);
    tunnel::bench::ProxyRig rig(tunnel::bench::Workload::kGet);
    bool ok = rig.run_concurrent(concurrent, 4);
    if (ok) {
      regions.push_back(measure(name, "request", concurrent * per_client,
                                [&] { ok = rig.run_concurrent(concurrent, per_client); }));
    }
    if (!ok) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), rig.error().c_str());
      return 1;
    }
    print_json(regions, tunnel::bench::IdleSessionCost{});
    return 0;
  }

  for (const std::uint8_t version : {tunnel::protocol::kVersion1, tunnel::protocol::kVersion2}) {
    tunnel::bench::FrameCorpus corpus(version, frames);
    if (!corpus.round_trips()) {
      std::fprintf(stderr, "frame corpus v%d does not round-trip\n", version);
      return 1;
    }
    const std::string v = "_v" + std::to_string(version);
    for (int i = 0; i < 3; ++i) g_sink = g_sink + corpus.encode_all() + corpus.decode_all();
    regions.push_back(measure("frame_encode" + v, "frame", frames * frame_reps, [&] {
      for (std::size_t i = 0; i < frame_reps; ++i) g_sink = g_sink + corpus.encode_all();
    }));
    regions.push_back(measure("frame_decode" + v, "frame", frames * frame_reps, [&] {
      for (std::size_t i = 0; i < frame_reps; ++i) g_sink = g_sink + corpus.decode_all();
    }));
    if ((corpus.decode_all() & 0xffff) != 0) {
      std::fprintf(stderr, "frame corpus v%d: headers failed to decode\n", version);
      return 1;
    }
  }

  using Path = tunnel::bench::ProxyRig::Path;
  for (const auto workload :
       {tunnel::bench::Workload::kGet, tunnel::bench::Workload::kPost1k,
        tunnel::bench::Workload::kGetLimits, tunnel::bench::Workload::kGetQuota,
        tunnel::bench::Workload::kGetQuotaSet}) {
    for (const auto path : {Path::kTunnel, Path::kDirect}) {
      if (workload != tunnel::bench::Workload::kGet &&
          workload != tunnel::bench::Workload::kPost1k && path == Path::kDirect) {
        continue;
      }
      const std::string name = std::string(tunnel::bench::workload_name(workload)) +
                               (path == Path::kDirect ? "_direct" : "");
      tunnel::bench::ProxyRig rig(workload, path);
      if (!rig.ok() || !rig.run(warmup_requests)) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), rig.error().c_str());
        return 1;
      }
      bool ok = true;
      regions.push_back(measure(name, "request", requests, [&] { ok = rig.run(requests); }));
      if (!ok) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), rig.error().c_str());
        return 1;
      }
    }
  }

  const auto idle = tunnel::bench::measure_idle_sessions(idle_sessions);
  if (!idle.error.empty()) {
    std::fprintf(stderr, "%s\n", idle.error.c_str());
    return 1;
  }

  print_json(regions, idle);
  return 0;
}

// tunnel_micro_bench: Google Benchmark timings of the hot paths (frame codec, one proxied
// request through core and agent in process). For timing on a developer machine; CI checks the
// deterministic counts of the same workloads instead (tunnel_micro_counts,
// scripts/perf-regress.sh). Extra counter: heap allocations per item.
//
//   build/<dir>/bench/micro/tunnel_micro_bench [--benchmark_filter=http]
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <cstdint>

#include "alloc_hook.hpp"
#include "workloads.hpp"

namespace {

using tunnel::bench::heap_stats;

void set_alloc_counter(benchmark::State& state, std::uint64_t allocations, std::uint64_t items) {
  state.counters["allocs/item"] = benchmark::Counter(
      items == 0 ? 0.0 : static_cast<double>(allocations) / static_cast<double>(items));
}

void BM_FrameEncode(benchmark::State& state) {
  tunnel::bench::FrameCorpus corpus(static_cast<std::uint8_t>(state.range(0)), 4096);
  const auto before = heap_stats().allocations;
  for (auto _ : state) benchmark::DoNotOptimize(corpus.encode_all());
  const auto items = static_cast<std::uint64_t>(state.iterations()) * corpus.size();
  set_alloc_counter(state, heap_stats().allocations - before, items);
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
}
BENCHMARK(BM_FrameEncode)->ArgName("version")->Arg(1)->Arg(2);

void BM_FrameDecode(benchmark::State& state) {
  tunnel::bench::FrameCorpus corpus(static_cast<std::uint8_t>(state.range(0)), 4096);
  const auto before = heap_stats().allocations;
  for (auto _ : state) benchmark::DoNotOptimize(corpus.decode_all());
  const auto items = static_cast<std::uint64_t>(state.iterations()) * corpus.size();
  set_alloc_counter(state, heap_stats().allocations - before, items);
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
}
BENCHMARK(BM_FrameDecode)->ArgName("version")->Arg(1)->Arg(2);

// One item = one request and its complete response, in batches of 200 on one connection.
void BM_ProxiedRequest(benchmark::State& state) {
  const auto workload = static_cast<tunnel::bench::Workload>(state.range(0));
  state.SetLabel(tunnel::bench::workload_name(workload));
  tunnel::bench::ProxyRig rig(workload);
  if (!rig.ok() || !rig.run(200)) {
    state.SkipWithError(rig.error().c_str());
    return;
  }
  constexpr std::size_t kBatch = 200;
  const auto before = heap_stats().allocations;
  while (state.KeepRunningBatch(kBatch)) {
    if (!rig.run(kBatch)) {
      state.SkipWithError(rig.error().c_str());
      return;
    }
  }
  const auto items = static_cast<std::uint64_t>(state.iterations());
  set_alloc_counter(state, heap_stats().allocations - before, items);
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
}
BENCHMARK(BM_ProxiedRequest)
    ->ArgName("workload")
    ->Arg(static_cast<int>(tunnel::bench::Workload::kGet))
    ->Arg(static_cast<int>(tunnel::bench::Workload::kPost1k))
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

#include "common/heap_trim.hpp"

#include <gtest/gtest.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace tunnel {
namespace {

// RssAnon of this process in KiB, from /proc/self/status.
long rss_anon_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stol(line.substr(8));
  }
  return -1;
}

// Under AddressSanitizer the sanitizer's allocator replaces glibc's malloc and its arenas.
#if defined(__SANITIZE_ADDRESS__)
#define TUNNEL_OWN_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TUNNEL_OWN_MALLOC 1
#endif
#endif

TEST(HeapTrim, ReturnsFreePagesInsideTheHeap) {
#if !defined(__GLIBC__) || defined(TUNNEL_OWN_MALLOC)
  GTEST_SKIP() << "needs glibc's malloc (not a sanitizer's allocator)";
#endif
  // 64 MiB in 4 KiB blocks, then free all but the last: the freed pages sit below a block in
  // use, where free() alone cannot give them back.
  constexpr std::size_t kBlocks = 16 * 1024;
  std::vector<char*> blocks;
  blocks.reserve(kBlocks);
  for (std::size_t i = 0; i < kBlocks; ++i) {
    blocks.push_back(new char[4096]);
    for (std::size_t j = 0; j < 4096; j += 512) blocks.back()[j] = static_cast<char>(i);
  }
  for (std::size_t i = 0; i + 1 < kBlocks; ++i) delete[] blocks[i];
  const long before = rss_anon_kib();
  EXPECT_GT(trim_heap(1024 * 1024), 32u * 1024 * 1024);  // free bytes it saw in the arenas
  const long after = rss_anon_kib();
  EXPECT_LT(after, before - 32 * 1024)
      << "RssAnon " << before << " KiB before, " << after << " KiB after";
  // Below the threshold it does nothing (and says how much is free).
  EXPECT_GT(trim_heap(std::size_t{1} << 40), 0u);
  delete[] blocks.back();
}

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

TEST(HeapTrim, TunedHeapReusesABurstsBuffersWithoutFaultingThemIn) {
#if !defined(__GLIBC__) || defined(TUNNEL_OWN_MALLOC)
  GTEST_SKIP() << "needs glibc's malloc (not a sanitizer's allocator)";
#endif
  tune_heap();
  // A busy stream's pattern: 8 MiB of 64 KiB buffers filled and freed, again and again. With
  // glibc's defaults every round hands the top of the heap back and faults 2,048 pages in again.
  constexpr std::size_t kBuffers = 128;
  constexpr std::size_t kSize = 64 * 1024;
  const auto round = [] {
    std::vector<char*> buffers;
    for (std::size_t i = 0; i < kBuffers; ++i) {
      buffers.push_back(new char[kSize]);
      std::memset(buffers.back(), static_cast<int>(i), kSize);
    }
    while (!buffers.empty()) {  // newest first
      delete[] buffers.back();
      buffers.pop_back();
    }
  };
  round();  // the heap grows once
  const long before = minor_faults();
  for (int i = 0; i < 10; ++i) round();
  const long faults = minor_faults() - before;
  EXPECT_LT(faults, 500) << faults << " page faults in 10 rounds of 8 MiB";
  // The periodic trim still gives it back.
  EXPECT_GT(trim_heap(1024 * 1024), 4u * 1024 * 1024);
}

// The arenas glibc's malloc has now: one <heap> element each in malloc_info()'s report.
int arena_count() {
#if defined(__GLIBC__)
  char* text = nullptr;
  std::size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  if (out == nullptr) return -1;
  malloc_info(0, out);
  std::fclose(out);
  int count = 0;
  for (const char* p = text; (p = std::strstr(p, "<heap nr=")) != nullptr; ++p) ++count;
  std::free(text);
  return count;
#else
  return -1;
#endif
}

TEST(HeapTrim, ThreadsShareOneArena) {
#if !defined(__GLIBC__) || defined(TUNNEL_OWN_MALLOC)
  GTEST_SKIP() << "needs glibc's malloc (not a sanitizer's allocator)";
#endif
  if (arena_count_from_environment()) GTEST_SKIP() << "the environment sets the arena count";
  if (arena_count() != 1) {
    GTEST_SKIP() << "threads of an earlier test made arenas already (ctest runs each test alone)";
  }
  tune_heap();
  // Threads that allocate at the same time would each get an arena of their own by default.
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> ready{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&ready] {
      std::vector<std::unique_ptr<char[]>> held;
      ++ready;
      while (ready.load() < kThreads) {
        held.push_back(std::make_unique<char[]>(4096));
        if (held.size() > 64) held.clear();
      }
      for (int j = 0; j < 1000; ++j) held.push_back(std::make_unique<char[]>(4096));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(arena_count(), kHeapArenas);
}

}  // namespace
}  // namespace tunnel

// Heap accounting for the micro-benchmarks: alloc_hook.cpp replaces malloc and friends in the
// executable that links it (every operator new, coroutine frame and C allocation ends there) and
// counts calls and live bytes. Link it into an executable, never into a library: two
// definitions of malloc in one program do not link.
//
// Live bytes are malloc_usable_size() of each block: what the program asked for rounded up to
// glibc's chunk size, without the 8-byte chunk header.
#pragma once

#include <cstdint>

namespace tunnel::bench {

struct HeapStats {
  std::uint64_t allocations = 0;  // successful malloc/calloc/realloc(moved or new)/aligned calls
  std::uint64_t frees = 0;
  std::int64_t live_bytes = 0;
  std::int64_t live_blocks = 0;
};

// A snapshot of the counters (relaxed atomics: exact when one thread allocates).
HeapStats heap_stats();

// False when the hook is not linked in (then every count stays 0).
bool heap_hook_active();

}  // namespace tunnel::bench

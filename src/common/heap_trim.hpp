// Hands the heap's free pages back to the operating system now and then.
//
// glibc's malloc keeps what a burst freed (a load spike, thousands of agent sessions gone)
// inside its arenas, so a process's RSS stays at its peak: the core held 60 MiB after the
// benchmark's load runs, and RSS crept up during a long connect/disconnect churn. Every
// `interval`, when more than `min_free` bytes lie free in the arenas, trim_heap_every() calls
// malloc_trim(0), which returns the free whole pages inside every arena (madvise) and the top
// of each heap. Its cost grows with the number of free chunks, not with the heap's size.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>

namespace tunnel {

// Fixes malloc's thresholds for a long-running relay: buffers up to kHeapMmapThreshold come
// from the heap (not a fresh mmap each time), and the top of a heap is returned only past
// kHeapTopTrimThreshold. glibc's defaults (128 KiB, adjusted on the fly) made it hand back and
// fault in again the 64-80 KiB buffers of a busy stream on every frame: 86,000 page faults in
// 4 s of one TLS bulk stream. Memory freed below the threshold goes back with trim_heap_every().
//
// It also caps malloc at kHeapArenas arena, unless the environment sets the count
// (MALLOC_ARENA_MAX, or arena_max in GLIBC_TUNABLES). glibc gives each thread its own arena,
// and memory freed in one serves only that arena's threads: agent sessions that close on one
// worker and reopen on another left both arenas at their own peak, and the core's RSS grew
// 1.6 MiB over a 5-minute churn of 1,000 sessions (two workers); with one arena, 0.7 MiB.
// Call once at start-up, before other threads allocate; no effect where the C library is not
// glibc.
void tune_heap();

// True when MALLOC_ARENA_MAX or GLIBC_TUNABLES's glibc.malloc.arena_max chooses the arena count.
bool arena_count_from_environment();

inline constexpr int kHeapArenas = 1;

inline constexpr std::size_t kHeapMmapThreshold = 1024 * 1024;
inline constexpr std::size_t kHeapTopTrimThreshold = 32 * 1024 * 1024;

// Trims once if more than `min_free` bytes are free in malloc's arenas; returns the free bytes
// seen (0 where the C library has no mallinfo2/malloc_trim).
std::size_t trim_heap(std::size_t min_free);

// Runs trim_heap(min_free) every `interval`, forever (spawn it detached on an executor).
boost::asio::awaitable<void> trim_heap_every(std::chrono::steady_clock::duration interval,
                                             std::size_t min_free);

inline constexpr auto kHeapTrimInterval = std::chrono::seconds(30);
inline constexpr std::size_t kHeapTrimMinFree = 512 * 1024;

}  // namespace tunnel

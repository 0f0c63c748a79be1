// Replaces the C allocation functions of the program with counting wrappers around glibc's own
// (__libc_malloc and friends, exported for exactly this). A definition in the executable takes
// precedence over libc's for every caller, libstdc++'s operator new and asio's aligned_alloc of
// coroutine frames included. Not for sanitizer builds: ASan replaces malloc itself.
#include "alloc_hook.hpp"

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>

// NOLINTBEGIN(bugprone-reserved-identifier): glibc's own entry points, reserved names by design
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* ptr, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void* __libc_valloc(std::size_t size);
void* __libc_pvalloc(std::size_t size);
void __libc_free(void* ptr);
}
// NOLINTEND(bugprone-reserved-identifier)

namespace {

std::atomic<std::uint64_t> g_allocations{0};
std::atomic<std::uint64_t> g_frees{0};
std::atomic<std::int64_t> g_live_bytes{0};
std::atomic<std::int64_t> g_live_blocks{0};

void* counted(void* p) {
  if (p != nullptr) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    g_live_blocks.fetch_add(1, std::memory_order_relaxed);
    g_live_bytes.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)),
                           std::memory_order_relaxed);
  }
  return p;
}

void uncount(void* p) {
  if (p != nullptr) {
    g_frees.fetch_add(1, std::memory_order_relaxed);
    g_live_blocks.fetch_sub(1, std::memory_order_relaxed);
    g_live_bytes.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)),
                           std::memory_order_relaxed);
  }
}

bool valid_alignment(std::size_t alignment) {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

}  // namespace

extern "C" {

void* malloc(std::size_t size) noexcept {
  return counted(__libc_malloc(size));
}

void* calloc(std::size_t count, std::size_t size) noexcept {
  return counted(__libc_calloc(count, size));
}

void* realloc(void* ptr, std::size_t size) noexcept {
  if (ptr == nullptr) return counted(__libc_malloc(size));
  const auto old_size = static_cast<std::int64_t>(malloc_usable_size(ptr));
  void* p = __libc_realloc(ptr, size);
  if (p == nullptr) {
    if (size == 0) {  // glibc frees the block and returns nullptr
      g_frees.fetch_add(1, std::memory_order_relaxed);
      g_live_blocks.fetch_sub(1, std::memory_order_relaxed);
      g_live_bytes.fetch_sub(old_size, std::memory_order_relaxed);
    }
    return nullptr;  // failure: the old block is untouched
  }
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)) - old_size,
                         std::memory_order_relaxed);
  return p;
}

void free(void* ptr) noexcept {
  uncount(ptr);
  __libc_free(ptr);
}

void* memalign(std::size_t alignment, std::size_t size) noexcept {
  return counted(__libc_memalign(alignment, size));
}

void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  if (!valid_alignment(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return counted(__libc_memalign(alignment, size));
}

int posix_memalign(void** out, std::size_t alignment, std::size_t size) noexcept {
  if (!valid_alignment(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  void* p = counted(__libc_memalign(alignment, size));
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(std::size_t size) noexcept {
  return counted(__libc_valloc(size));
}

void* pvalloc(std::size_t size) noexcept {
  return counted(__libc_pvalloc(size));
}

void* reallocarray(void* ptr, std::size_t count, std::size_t size) noexcept {
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(count, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(ptr, bytes);
}

}  // extern "C"

namespace tunnel::bench {

HeapStats heap_stats() {
  return HeapStats{
      g_allocations.load(std::memory_order_relaxed), g_frees.load(std::memory_order_relaxed),
      g_live_bytes.load(std::memory_order_relaxed), g_live_blocks.load(std::memory_order_relaxed)};
}

bool heap_hook_active() {
  return g_allocations.load(std::memory_order_relaxed) > 0;
}

}  // namespace tunnel::bench

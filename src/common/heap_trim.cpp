#include "common/heap_trim.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <string_view>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tunnel {

bool arena_count_from_environment() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return true;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr &&
         std::string_view(tunables).find("arena_max") != std::string_view::npos;
}

void tune_heap() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHeapMmapThreshold));
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(kHeapTopTrimThreshold));
  if (!arena_count_from_environment()) mallopt(M_ARENA_MAX, kHeapArenas);
#endif
}

std::size_t trim_heap(std::size_t min_free) {
#if defined(__GLIBC__)
  const struct mallinfo2 info = mallinfo2();
  if (info.fordblks > min_free) {
    malloc_trim(0);
    spdlog::debug("heap: {} KiB free in malloc's arenas; returned their free pages",
                  info.fordblks / 1024);
  }
  return info.fordblks;
#else
  (void)min_free;
  return 0;
#endif
}

boost::asio::awaitable<void> trim_heap_every(std::chrono::steady_clock::duration interval,
                                             std::size_t min_free) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    timer.expires_after(interval);
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
    trim_heap(min_free);
  }
}

}  // namespace tunnel

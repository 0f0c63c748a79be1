// Debug-build checks that code runs on the executor it belongs to.
//
// Objects pinned to one executor (a mux::Session and its Streams live on their connection's
// worker, see docs/architecture.md, "Threading model") take no locks: a call from another thread
// is a data race that may only show up under load. In debug builds (NDEBUG not defined: the asan
// preset, whose integration tests CI runs) each such entry point calls assert_on_executor(), which
// aborts with the function's name when the calling thread is not running the executor. Release
// builds compile the checks to nothing.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <cstdio>
#include <cstdlib>

namespace tunnel {

namespace asio = boost::asio;

// True when the calling thread is running `executor` (inside its io_context's run(), or inside
// the strand). An executor type this does not know is assumed to be right: the check must never
// refuse correct code.
inline bool running_in_this_thread(const asio::any_io_executor& executor) {
  using Plain = asio::io_context::executor_type;
  using Tracked =
      decltype(asio::prefer(std::declval<Plain>(), asio::execution::outstanding_work.tracked));
  if (const auto* ex = executor.target<Plain>()) return ex->running_in_this_thread();
  if (const auto* ex = executor.target<Tracked>()) return ex->running_in_this_thread();
  if (const auto* ex = executor.target<asio::strand<Plain>>()) return ex->running_in_this_thread();
  if (const auto* ex = executor.target<asio::strand<asio::any_io_executor>>()) {
    return ex->running_in_this_thread();
  }
  return true;
}

// Aborts, naming `function`, unless the calling thread runs `executor`. Call it through
// TUNNEL_ASSERT_ON_EXECUTOR so that release builds do not even evaluate the executor.
[[maybe_unused]] inline void assert_on_executor(const asio::any_io_executor& executor,
                                                const char* function) {
  if (running_in_this_thread(executor)) return;
  std::fprintf(stderr,
               "%s called off its executor: it must run on the thread that runs its session's "
               "io_context (see docs/architecture.md, Threading model)\n",
               function);
  std::fflush(stderr);
  std::abort();
}

}  // namespace tunnel

#ifdef NDEBUG
#define TUNNEL_ASSERT_ON_EXECUTOR(executor, function) static_cast<void>(0)
#else
#define TUNNEL_ASSERT_ON_EXECUTOR(executor, function) \
  ::tunnel::assert_on_executor((executor), (function))
#endif

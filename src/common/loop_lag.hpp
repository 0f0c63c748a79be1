// Event-loop lag: how late a timer fires on an event loop, measured by the loop itself. A loop
// that runs long handlers (a slow TLS handshake, a big render, CPU starvation) delays every
// connection it serves by as much; a timer that asks to wake every `interval` sees it as its
// own lateness.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace tunnel {

// Every `interval`, calls report(seconds late) on the loop that runs it, until the loop stops.
template <class Report>
boost::asio::awaitable<void> watch_loop_lag(std::chrono::steady_clock::duration interval,
                                            Report report) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    const auto due = std::chrono::steady_clock::now() + interval;
    timer.expires_at(due);
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
    const auto late = std::chrono::steady_clock::now() - due;
    report(std::chrono::duration<double>(late).count());
  }
}

}  // namespace tunnel

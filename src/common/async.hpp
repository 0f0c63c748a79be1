// Small coroutine helpers shared by every part that waits: timeouts and a wake-up signal.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>
#include <type_traits>
#include <variant>

namespace tunnel {

namespace asio = boost::asio;

namespace detail {
// `op`'s value in an optional: the awaitable operators need a default-constructible result
// (asio builds one when an operation throws), which common::Result is not.
template <typename T>
asio::awaitable<std::optional<T>> as_optional(asio::awaitable<T> op) {
  co_return co_await std::move(op);
}
}  // namespace detail

// Runs `op`; if it has not finished after `timeout`, cancels it and returns nullopt.
template <typename T>
asio::awaitable<std::optional<T>> with_timeout(asio::awaitable<T> op,
                                               std::chrono::steady_clock::duration timeout) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  // as_tuple: a cancelled timer must not throw; exceptions cost a global unwinder lock.
  if constexpr (std::is_default_constructible_v<T>) {
    auto result = co_await (std::move(op) || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (result.index() == 0) co_return std::get<0>(std::move(result));
  } else {
    auto result = co_await (detail::as_optional(std::move(op)) ||
                            timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (result.index() == 0) co_return std::get<0>(std::move(result));
  }
  co_return std::nullopt;
}

// As above for an operation with no result: true when it finished in time.
inline asio::awaitable<bool> with_timeout(asio::awaitable<void> op,
                                          std::chrono::steady_clock::duration timeout) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto result = co_await (std::move(op) || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  co_return result.index() == 0;
}

// A level-free wake-up for coroutines on one executor: waiters re-check their condition after
// each wake-up, so a notify with no waiter is harmless. Not thread-safe (one executor).
class Signal {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Signal(const asio::any_io_executor& executor)
      : timer_(executor, Clock::time_point::max()) {}

  asio::awaitable<void> wait() {
    if (timer_.expiry() != Clock::time_point::max()) timer_.expires_at(Clock::time_point::max());
    auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;
  }
  // Waits for notify() (true) or until `deadline` (false). The deadline is the timer's own
  // expiry, so it costs no second coroutine; but it wakes any other waiter too: use it on a
  // Signal with one waiter.
  asio::awaitable<bool> wait_until(Clock::time_point deadline) {
    timer_.expires_at(deadline);
    auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    timer_.expires_at(Clock::time_point::max());
    co_return ec || Clock::now() < deadline;
  }
  // Waits at most `timeout`; returns false when it timed out.
  asio::awaitable<bool> wait_for(std::chrono::steady_clock::duration timeout) {
    co_return co_await with_timeout(wait(), timeout);
  }
  void notify() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

}  // namespace tunnel

#include "core/control/store/change_follower.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/control/store/connection.hpp"

namespace tunnel::core::store {
namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// Waits until `fd` is ready for `want`. asio gets a duplicate of the descriptor: libpq owns
// (and closes) its own.
asio::awaitable<bool> wait_for(int fd, Want want) {
  const int copy = ::dup(fd);
  if (copy < 0) co_return false;
  asio::posix::stream_descriptor descriptor(co_await asio::this_coro::executor, copy);
  auto [ec] =
      co_await descriptor.async_wait(want == Want::kWrite ? asio::posix::descriptor_base::wait_write
                                                          : asio::posix::descriptor_base::wait_read,
                                     kNoThrow);
  co_return !ec;
}

// Connects and LISTENs, or says why it cannot.
asio::awaitable<common::Result<std::unique_ptr<ChangeFeed>>> connect(const FollowOptions& options) {
  auto started = start_change_feed(options.url, options.channel);
  if (!started) co_return started.error();
  std::unique_ptr<ChangeFeed> feed = std::move(started).value();
  Want want = Want::kWrite;
  while (want != Want::kDone) {
    if (feed->socket() < 0 || !co_await wait_for(feed->socket(), want)) {
      co_return common::fail("the listening connection has no socket");
    }
    auto step = feed->connect_step();
    if (!step) co_return step.error();
    want = step.value();
  }
  co_return std::move(feed);
}

void reload(Store& store, const std::function<void()>& changed) {
  if (auto reloaded = store.reload(); !reloaded) {
    spdlog::warn("store: a change by another core is not applied here: {}",
                 reloaded.error().message);
    return;
  }
  changed();
}

}  // namespace

asio::awaitable<void> follow_changes(Store& store, FollowOptions options,
                                     std::function<void()> changed) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::chrono::milliseconds delay = options.first_retry;
  bool lost = false;  // a drop was logged: say when it is back
  for (;;) {
    std::string error;
    auto connected = co_await connect(options);
    if (!connected) {
      error = std::move(connected).error().message;
    } else {
      std::unique_ptr<ChangeFeed> feed = std::move(connected).value();
      if (lost) spdlog::info("store: listening for other cores' changes again");
      lost = false;
      delay = options.first_retry;
      // Notifications sent while nobody listened are gone: catch up once.
      reload(store, changed);
      for (;;) {
        if (!co_await wait_for(feed->socket(), Want::kRead)) {
          error = "cannot wait on the listening connection";
          break;
        }
        auto received = feed->receive();
        if (!received) {
          error = received.error().message;
          break;
        }
        const auto& payloads = received.value();
        if (std::any_of(payloads.begin(), payloads.end(), [&](const std::string& origin) {
              return origin != store.change_origin();
            })) {
          reload(store, changed);
        }
      }
    }
    if (!lost) {
      spdlog::warn("store: not following other cores' changes (retrying every {} ms or more): {}",
                   delay.count(), error);
      lost = true;
    }
    timer.expires_after(delay);
    auto [ec] = co_await timer.async_wait(kNoThrow);
    if (ec) co_return;
    delay = std::min(delay * 2, options.max_retry);
  }
}

}  // namespace tunnel::core::store

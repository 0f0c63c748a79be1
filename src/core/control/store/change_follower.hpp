// Several cores on one PostgreSQL store (issue 17): each core LISTENs on the store's change
// channel and, when another core commits a change, rebuilds its snapshot and tells the running
// core (LiveControl::store_changed), so that a tunnel or agent made through one core's API is
// served or refused by every core within a second.
//
// The listening connection is a libpq connection of its own, driven without blocking by
// waiting for its socket on the control thread's executor (the thread that owns the Store).
// When it drops (the database restarts, the network breaks) it reconnects with backoff and,
// since notifications sent meanwhile are lost, reloads once after every (re)connect.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "core/control/store/store.hpp"

namespace tunnel::core::store {

namespace asio = boost::asio;

struct FollowOptions {
  std::string url;  // the store's postgres:// URL
  std::string channel = kChangeChannel;
  // Reconnect delays: the first, doubled after each failure up to the last.
  std::chrono::milliseconds first_retry{250};
  std::chrono::milliseconds max_retry{10'000};
};

// Runs until its executor stops. After a reload, calls `changed` (on the same executor). A
// notification whose payload is `store.change_origin()` (this core's own change, already
// applied) is skipped.
asio::awaitable<void> follow_changes(Store& store, FollowOptions options,
                                     std::function<void()> changed);

}  // namespace tunnel::core::store

// The accept loop every TCP listener of the project runs: hands each accepted socket to
// `on_socket` (synchronously; it spawns whatever serves the connection) and keeps the listener
// alive through transient errors such as running out of file descriptors.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <string_view>

namespace tunnel::transport {

// Returns when the acceptor is closed. `what` names the listener in log lines.
template <typename OnSocket>
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor,
                                         std::string_view what, OnSocket on_socket) {
  namespace asio = boost::asio;
  constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      spdlog::warn("{}: accept failed: {}", what, ec.message());
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    on_socket(std::move(socket));
  }
}

}  // namespace tunnel::transport

// The public HTTP/1.1 front: reads requests from clients, routes them by Host to an agent, and
// relays each exchange over one mux stream with bodies streamed both ways.
//
// Pipeline per request: read head (header timeout, 64 KiB limit) -> route by Host -> rewrite
// head (X-Forwarded-*, X-Request-Id, hop-by-hop removed) -> OPEN_STREAM -> request body and
// response relayed concurrently (raw bytes, message ends found by llhttp) -> next request.
// A connection is served on the worker of the agent that serves it: when the route lives on
// another worker, the connection moves there, so a stream's bytes never cross threads.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "core/context.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {

class HttpFront {
 public:
  explicit HttpFront(CoreContext& context) : context_(context) {}

  // Serves one client connection until it closes. `pending` holds bytes already read from it;
  // `route`, when set, is the route already chosen for the first request in `pending`;
  // `already_counted`: the connection was counted in the metrics by the serve() that moved it.
  asio::awaitable<void> serve(std::unique_ptr<transport::Conn> conn, bool tls,
                              std::string pending = {}, std::optional<Route> route = {},
                              bool already_counted = false);

  // Requests being relayed now (the drain waits for this to reach 0).
  std::size_t active_requests() const { return active_requests_.load(); }

 private:
  struct Exchange;
  asio::awaitable<bool> relay(transport::Conn& conn, Exchange& ex);
  asio::awaitable<void> upload(transport::Conn& conn, Exchange& ex);
  // Ends an exchange whose request body is refused: cancels the stream and, unless the app's
  // response has begun, answers `status` with a page saying `sentence`.
  asio::awaitable<void> refuse_body(transport::Conn& conn, Exchange& ex, int status,
                                    std::string_view reason, const std::string& sentence);
  asio::awaitable<void> download(transport::Conn& conn, Exchange& ex);

  CoreContext& context_;
  std::atomic<std::size_t> active_requests_{0};
};

}  // namespace tunnel::core

// The public HTTP/1.1 front: reads requests from clients, routes them by host to an agent, and
// relays each exchange over one mux stream with bodies streamed both ways.
//
// The stages of a request (the pure ones and the filter interface are in http_pipeline.hpp):
//   1. read the head (limits.header_timeout, limits.max_header_bytes; 400/408 on failure);
//   2. decide(): the tunnel, or a local answer (400, 404, 503);
//   3. hop: when the agent's session lives on another worker, the connection moves there and
//      the serve() on that worker takes over with the decision made, so a stream's bytes never
//      cross threads and nothing before the hop runs twice;
//   4. request filters (the listener's chain, then the tunnel's): limits, PROXY addresses...;
//   5. rewrite_request() and OPEN_STREAM;
//   6. relay: the request body and the response run concurrently (raw bytes; llhttp finds the
//      message ends); body and response-head filters run here when a chain asks for them;
//   7. finish: complete filters, the log line, metrics. Then the next request on the connection.
//
// A visitor that closes its connection while the app has not answered yet is noticed (after
// limits.client_watch_delay, so fast exchanges pay nothing for it): the stream is reset at once,
// which frees the agent's stream and closes the app's connection, and the exchange counts as 499.
// A connection closed while the client may still be sending (a refused or early-answered
// upload) is closed lingering, as nginx's lingering_close: unread bytes are read and dropped for
// a bounded time so that the kernel does not reset the connection under the answer.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "core/agents/context.hpp"
#include "core/edge/http_pipeline.hpp"
#include "http/message_parser.hpp"
#include "mux/session.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {

struct ConnBuffers;

class HttpFront {
 public:
  // Lingering close: at most this long in all, this long without a byte, and this many bytes.
  static constexpr auto kLingerTime = std::chrono::seconds(30);
  static constexpr auto kLingerIdle = std::chrono::seconds(5);
  static constexpr std::size_t kLingerBytes = 64 * 1024 * 1024;

  explicit HttpFront(CoreContext& context);

  // Serves one client connection until it closes. `pending` holds bytes already read from it;
  // `decided`, when set, is the decision already made for the first request in `pending` (by
  // the serve() that moved the connection here); `already_counted`: the connection was counted
  // in the metrics by that serve().
  asio::awaitable<void> serve(std::unique_ptr<transport::Conn> conn, bool tls,
                              std::string pending = {}, std::optional<Decision> decided = {},
                              bool already_counted = false);

  // After an upgrade: until `until`, a request for a name not served here (yet) waits for its
  // agent (which is moving over from the old process) instead of getting 404/503 at once.
  void hold_names_until(std::chrono::steady_clock::time_point until) {
    hold_names_until_.store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count());
  }

  // Requests being relayed now (the drain waits for this to reach 0).
  std::size_t active_requests() const { return active_requests_.load(); }

  // The filters every request of this front passes (from the configuration).
  const FilterChain& listener_filters() const { return *listener_filters_; }

 private:
  struct Exchange;

  // Stages 4-5, synchronous: the request filters (listener's, then tunnel's), the rewrite and
  // OPEN_STREAM into filtered.open_prefix. The stream, or null with `refusal` saying why (a
  // filter's answer or stop, or 503 when the agent cannot take a stream).
  std::shared_ptr<mux::Stream> open_exchange(FilterRequest& filtered, const std::string& ip,
                                             bool trusted, const std::string& request_id,
                                             bool upgrade, FilterVerdict& refusal);
  // Stage 6: the two halves of the exchange (a small frame: the state is in serve()'s).
  asio::awaitable<void> relay(transport::Conn& conn, Exchange& ex);
  asio::awaitable<void> upload(transport::Conn& conn, Exchange& ex);
  asio::awaitable<void> download(transport::Conn& conn, Exchange& ex);
  // Reads the client while the app prepares its answer: bytes are kept for the next request;
  // the end of the connection resets the stream (the visitor left).
  asio::awaitable<void> watch_client(transport::Conn& conn, Exchange& ex);
  // After an upgrade (CoreContext::hold_names_until): waits until `host` is served here or the
  // hold ends, polling the registry. True when it is served now.
  asio::awaitable<bool> wait_for_agents(const std::string& host);
  // Steady clock, ns since its epoch; 0 = no hold.
  std::atomic<std::int64_t> hold_names_until_{0};
  // Ends watch_client() (precondition: ex.watching) and waits until it has returned.
  asio::awaitable<void> stop_watching(transport::Conn& conn, Exchange& ex);
  // Ends an exchange a filter or the parser refused mid-body: cancels the stream and, unless
  // the app's response has begun, answers with a page.
  asio::awaitable<void> refuse_body(transport::Conn& conn, Exchange& ex, const LocalAnswer& answer,
                                    std::string_view reason);
  // Writes an error page for a request that was not forwarded, and counts it.
  // Counted per tunnel under `tunnel` (null: the request reached no tunnel, "_none").
  asio::awaitable<void> answer(transport::Conn& conn, const LocalAnswer& reply,
                               const std::string& request_id, std::string_view method,
                               TunnelSeries* tunnel);
  // The log line of a request answered here (decide() or a filter refused it).
  // `trace_id`: the request's trace when tracing is on (logged as trace=), else null.
  static void log_local_answer(std::string_view ip, std::string_view host,
                               const http::RequestHead& head, const LocalAnswer& reply,
                               const std::string& request_id, const tracing::TraceId* trace_id);
  // The detailed line of a finished request, when its tunnel or agent is selected (or the edge
  // logs at debug): the agent, the local target and where the time went.
  void log_details(const Exchange& ex, int status);
  void finish(const transport::Conn& conn, Exchange& ex);

  CoreContext& context_;
  ForwardingPolicy forwarding_;
  std::shared_ptr<const FilterChain> listener_filters_;
  std::atomic<std::size_t> active_requests_{0};
};

// Closes a connection the way nginx's lingering_close does: the send side is shut down, then
// what the client still sends is read and dropped until it closes, `idle` passes without a
// byte, `total` passes, or `max_bytes` were read. `buffer` is scratch space.
asio::awaitable<void> linger_close(transport::Conn& conn, std::span<char> buffer,
                                   std::chrono::steady_clock::duration total,
                                   std::chrono::steady_clock::duration idle, std::size_t max_bytes);

}  // namespace tunnel::core

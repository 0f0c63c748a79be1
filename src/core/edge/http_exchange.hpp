// The state HttpFront's relay shares between the halves of one exchange (private to
// http_front.cpp and http_exchange.cpp).
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "core/edge/http_front.hpp"
#include "http/message_parser.hpp"
#include "mux/session.hpp"

namespace tunnel::core {

inline constexpr std::size_t kReadBuffer = 32 * 1024;

// Buffers of one client connection, reused by each of its requests (no per-request
// allocation on the hot path).
struct ConnBuffers {
  std::unique_ptr<char[]> in{new char[kReadBuffer]};    // client -> core
  std::unique_ptr<char[]> down{new char[kReadBuffer]};  // agent -> core
  std::string out;                                      // core -> client, one write per read
  std::string open;                                     // the OPEN_STREAM payload
  http::MessageParser response{http::MessageParser::Kind::kResponse};  // reset per exchange
};

// One request/response exchange, shared by the upload and download halves (one worker).
struct HttpFront::Exchange {
  using Clock = std::chrono::steady_clock;

  Exchange(http::MessageParser& parser_in, std::string& pending_in, ConnBuffers& buffers_in,
           std::shared_ptr<mux::Stream> stream_in, std::string request_id_in,
           FilterRequest& filtered_in, const FilterChain& listener_in, const FilterChain* tunnel_in,
           const std::string& local_in, bool keep_alive, const Throttle* throttle_in)
      : parser(parser_in),
        pending(pending_in),
        buffers(buffers_in),
        stream(std::move(stream_in)),
        request_id(std::move(request_id_in)),
        filtered(filtered_in),
        listener(listener_in),
        tunnel(tunnel_in),
        local(local_in),
        client_keep_alive(keep_alive),
        start(Clock::now()),
        throttle(throttle_in) {}

  http::MessageParser& parser;  // the connection's request parser, positioned after the head
  std::string& pending;         // client bytes read and not yet parsed
  ConnBuffers& buffers;
  std::shared_ptr<mux::Stream> stream;
  std::string request_id;
  FilterRequest& filtered;  // what the filters see (head, decision, body count)
  const FilterChain& listener;
  const FilterChain* tunnel;  // null: the tunnel has no filters
  const std::string& local;   // the agent's local target, for 502 pages
  bool client_keep_alive;
  Clock::time_point start;
  const Throttle* throttle;  // bandwidth limits of the tunnel; null = none

  int status = 0;  // what the client got (0: nothing yet)
  bool response_started = false;
  bool request_done = false;  // the whole request body went to the agent
  bool response_done = false;
  bool close_after = false;    // the client connection cannot carry another request
  bool client_gone = false;    // the client closed before the response began (499)
  std::uint64_t bytes_in = 0;  // request body bytes, and after an upgrade all bytes up
  std::uint64_t bytes_out = 0;
  Clock::time_point last_activity{};  // after a 101: the last byte either way
  bool upgraded = false;
  bool upgrade_requested = false;  // the request asked to switch protocols (or is a CONNECT)
  bool bodiless = false;           // no body and no upgrade: the request ends with its head
  bool watching = false;           // watch_client() is reading the client
  std::optional<asio::steady_timer> watch_done;  // cancelled when watch_client() returns
  TunnelSeries* metrics = nullptr;        // the tunnel's series; null = not counted per tunnel
  Clock::time_point head_at{};            // the request head was complete
  Clock::time_point response_head_at{};   // the response head arrived (unset: it did not)
  ErrorCause cause = ErrorCause::kCount;  // why the app did not answer (kCount: it did)

  // Bytes written to the client for this exchange: counted at once, per tunnel and in all.
  void sent(std::uint64_t n, observability::Counter& total) {
    bytes_out += n;
    total.inc(n);
    if (metrics != nullptr) metrics->bytes_out.inc(n);
  }

  bool request_filters() const {
    return listener.wants(hook::kRequestBody) ||
           (tunnel != nullptr && tunnel->wants(hook::kRequestBody));
  }
  bool response_head_filters() const {
    return listener.wants(hook::kResponseHead) ||
           (tunnel != nullptr && tunnel->wants(hook::kResponseHead));
  }
  bool response_body_filters() const {
    return listener.wants(hook::kResponseBody) ||
           (tunnel != nullptr && tunnel->wants(hook::kResponseBody));
  }

  // How long the next read may wait: `normal` until the exchange is upgraded; then what is left
  // of limits.tunnel_idle_timeout since the last byte in either direction (a day at a time when
  // that timeout is off).
  Clock::duration read_budget(std::chrono::milliseconds tunnel_idle, Clock::duration normal) const {
    if (!upgraded) return normal;
    if (tunnel_idle.count() == 0) return std::chrono::hours(24);
    return std::max<Clock::duration>(last_activity + tunnel_idle - Clock::now(),
                                     std::chrono::milliseconds(1));
  }
  // After a read timed out: true if the exchange is upgraded and the other direction moved
  // bytes recently enough that the connection is not idle yet.
  bool still_active(std::chrono::milliseconds tunnel_idle) const {
    return upgraded && (tunnel_idle.count() == 0 || Clock::now() - last_activity < tunnel_idle);
  }
};

}  // namespace tunnel::core

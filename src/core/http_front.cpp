#include "core/http_front.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <chrono>

#include "core/agent_gateway.hpp"
#include "http/error_page.hpp"
#include "http/host.hpp"
#include "http/message_parser.hpp"
#include "protocol/proxy_header.hpp"

namespace tunnel::core {
namespace {

using Clock = std::chrono::steady_clock;
using http::MessageParser;
using Step = MessageParser::Step;
constexpr std::size_t kReadBuffer = 32 * 1024;
constexpr auto kDrainPoll = std::chrono::milliseconds(250);
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 1024 * 1024;

std::string client_ip(const transport::Conn& conn) {
  const std::string& peer = conn.peer();
  const auto colon = peer.rfind(':');
  std::string ip = colon == std::string::npos ? peer : peer.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

// A request id from the client is kept if it is short and plain; otherwise we make one.
bool acceptable_request_id(const std::string* id) {
  if (id == nullptr || id->empty() || id->size() > 128) return false;
  for (char c : *id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::string_view chars(std::span<const char> s) {
  return {s.data(), s.size()};
}

}  // namespace

// Buffers of one client connection, reused by each of its requests (no per-request
// allocation on the hot path).
struct ConnBuffers {
  std::unique_ptr<char[]> in{new char[kReadBuffer]};       // client -> core
  std::unique_ptr<char[]> down{new char[kReadBuffer]};     // agent -> core
  std::string out;                                         // core -> client, one write per read
  std::string open;                                        // the OPEN_STREAM payload
  MessageParser response{MessageParser::Kind::kResponse};  // reset for each exchange
};

// State of one request/response exchange, shared by the upload and download halves.
struct HttpFront::Exchange {
  MessageParser& parser;  // the connection's request parser, positioned after the head
  std::string& pending;   // client bytes read and not yet parsed
  ConnBuffers& buffers;
  std::shared_ptr<mux::Stream> stream;
  std::string request_id;
  std::string host;
  std::string method;
  std::string local;  // the agent's local target, for 502 pages
  bool client_keep_alive = true;
  Clock::time_point start;
  const Throttle* throttle = nullptr;  // bandwidth limits of the tunnel; null = none

  int status = 0;  // what the client got (0: nothing yet)
  bool response_started = false;
  bool request_done = false;  // the whole request body went to the agent
  bool response_done = false;
  bool close_after = false;  // the client connection cannot carry another request
  std::uint64_t body_in = 0;
  std::uint64_t bytes_out = 0;
  Clock::time_point last_activity{};  // after a 101: the last byte either way
  bool upgraded = false;
  bool upgrade_requested = false;  // the request asked to switch protocols (or is a CONNECT)
  bool bodiless = false;           // no body and no upgrade: the request ends with its head

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

asio::awaitable<void> HttpFront::serve(std::unique_ptr<transport::Conn> conn, bool tls,
                                       std::string pending, std::optional<Route> preselected,
                                       bool already_counted) {
  const auto executor = co_await asio::this_coro::executor;
  const auto& limits = context_.config.limits;
  // Counts the connection once, from its first serve() until the last one (after moves).
  struct Counted {
    observability::Gauge& gauge;
    bool owner;
    ~Counted() {
      if (owner) gauge.dec();
    }
  } counted{context_.metrics.public_connections, true};
  if (!already_counted) counted.gauge.inc();
  MessageParser parser(MessageParser::Kind::kRequest,
                       MessageParser::Limits{limits.max_header_bytes, 100});
  ConnBuffers buffers;
  transport::error_code ec;
  bool first = true;

  const auto reply_error = [&](int status, std::string_view detail, const std::string& id,
                               bool close) -> asio::awaitable<void> {
    spdlog::info("{} -> {} {} id={}", conn->peer(), status, detail, id);
    const std::string response = http::error_response(status, detail, id, close);
    transport::error_code wec;
    co_await conn->write(asio::buffer(response), wec);
    context_.metrics.count_request(status);
    context_.metrics.bytes_out.inc(response.size());
    if (close) {
      co_await conn->shutdown_send();
      // Lingering close (as nginx does): closing with unread request bytes makes the kernel
      // send RST, and the client may lose the error page. Read and drop them for a moment.
      conn->set_read_deadline(Clock::now() + kLingerTime);
      std::size_t drained = 0;
      while (drained < kLingerBytes) {
        transport::error_code rec;
        const std::size_t n =
            co_await conn->read_some(asio::buffer(buffers.in.get(), kReadBuffer), rec);
        if (rec) break;  // the end, an error, or kLingerTime is over
        drained += n;
      }
    }
  };

  // After an error answered on a kept-alive connection: the request had no body, so its message
  // end comes next; consume it so the parser is ready for the next head.
  const auto skip_message_end = [&] {
    const Step end = parser.parse(pending);
    pending.erase(0, end.consumed);
  };

  for (;;) {
    // ---- the request head
    const auto head_started = Clock::now();
    bool partial = !pending.empty();
    Step step{Step::kNeedMore, 0};
    for (;;) {
      step = parser.parse(pending);
      if (step.type == Step::kHead) {
        pending.erase(0, step.consumed);
        break;
      }
      if (step.type == Step::kError) {
        spdlog::info("{}: bad request: {}", conn->peer(), parser.error());
        co_await reply_error(parser.error_status(), parser.error(), "", true);
        co_return;
      }
      if (step.type != Step::kNeedMore) co_return;  // raw bytes after an upgrade: nothing to do
      pending.clear();
      const auto limit = partial || first ? limits.header_timeout : limits.idle_timeout;
      const auto elapsed = Clock::now() - head_started;
      if (elapsed >= limit) {
        if (partial) {
          spdlog::info("{}: request head not complete after {} ms; closing", conn->peer(),
                       limit.count());
          co_await reply_error(408, "The request head did not arrive in time.", "", true);
        }
        co_return;
      }
      if (context_.draining && !partial) co_return;  // idle keep-alive connection: close now
      conn->set_read_deadline(Clock::now() +
                              std::min<Clock::duration>(limit - elapsed, kDrainPoll));
      const std::size_t n =
          co_await conn->read_some(asio::buffer(buffers.in.get(), kReadBuffer), ec);
      if (ec == asio::error::timed_out) continue;  // poll: re-check the deadline and the drain
      if (ec) co_return;
      context_.metrics.bytes_in.inc(n);
      pending.assign(buffers.in.get(), n);
      partial = true;
    }
    first = false;

    // ---- route
    const http::RequestHead& request = parser.request();
    const std::string* id_header = request.find("X-Request-Id");
    std::string request_id = acceptable_request_id(id_header) ? *id_header : new_request_id();
    const bool has_body = parser.has_body();
    const bool keep_alive = parser.keep_alive();
    const std::string* host_header = request.find("Host");
    std::optional<std::string> host;
    if (host_header != nullptr) host = http::normalize_host(*host_header);
    if (!host) {
      const std::string detail =
          host_header == nullptr
              ? std::string("The request has no Host header.")
              : "The Host header \"" + *host_header + "\" is not a valid host name.";
      co_await reply_error(400, detail, request_id, true);
      co_return;
    }
    Route route;
    LookupStatus found = LookupStatus::kFound;
    if (preselected) {
      route = std::move(*preselected);
      preselected.reset();
    } else {
      found = context_.registry.lookup(*host, route);
    }
    if (found != LookupStatus::kFound) {
      const bool unknown = found == LookupStatus::kUnknown;
      spdlog::info("{} {} {} {} -> {} (no agent) id={}", client_ip(*conn), *host, request.method,
                   request.target, unknown ? 404 : 503, request_id);
      // Named, not inline: GCC 12 destroys conditional temporaries in a co_await twice.
      const std::string detail =
          unknown ? "No tunnel is serving " + *host + "."
                  : "The agent serving " + *host +
                        " is not connected right now. Try again when it reconnects.";
      co_await reply_error(unknown ? 404 : 503, detail, request_id, has_body || !keep_alive);
      if (has_body || !keep_alive) co_return;
      skip_message_end();
      continue;
    }
    if (!context_.rate_limiter.allow(route.agent->account)) {
      const std::string detail = "Too many requests for " + *host + "; slow down.";
      co_await reply_error(429, detail, request_id, has_body || !keep_alive);
      if (has_body || !keep_alive) co_return;
      skip_message_end();
      continue;
    }
    if (limits.max_body_bytes != 0 && parser.content_length().value_or(0) > limits.max_body_bytes) {
      co_await reply_error(413,
                           "The request body of " + std::to_string(*parser.content_length()) +
                               " bytes is larger than the limit of " +
                               std::to_string(limits.max_body_bytes) + " bytes.",
                           request_id, true);
      co_return;
    }
    auto session = route.agent->session;
    if (session->get_executor() != executor) {
      // Move the connection to the agent's worker (its socket is re-registered with that
      // worker's event loop; TLS state goes along); it re-reads this head from `pending`.
      std::string moved = request.serialize() + pending;
      conn->move_to(session->get_executor(), ec);
      if (ec) co_return;
      counted.owner = false;  // the serve() on the other worker takes the count over
      asio::co_spawn(session->get_executor(),
                     serve(std::move(conn), tls, std::move(moved), std::move(route), true),
                     asio::detached);
      co_return;
    }

    // ---- forward
    // Rewritten in place: the parser's copy of the head is not needed as it was any more
    // (only its method and target, which stay). The Host value is kept aside first: removing
    // fields moves the others.
    const std::string host_value = *host_header;
    http::RequestHead& forwarded = parser.request();
    forwarded.remove_hop_by_hop(parser.is_upgrade());
    forwarded.remove("Expect");
    const std::string ip = client_ip(*conn);
    if (const std::string* xff = forwarded.find("X-Forwarded-For")) {
      forwarded.set("X-Forwarded-For", *xff + ", " + ip);
    } else {
      forwarded.set("X-Forwarded-For", ip);
    }
    forwarded.set("X-Forwarded-Proto", tls ? "https" : "http");
    forwarded.set("X-Forwarded-Host", host_value);
    forwarded.set("X-Request-Id", request_id);
    forwarded.version_major = 1;
    forwarded.version_minor = 1;
    std::string error;
    std::string& open_payload = buffers.open;
    open_payload.clear();
    if (route.send_addresses) {
      // The agent sends PROXY headers to its app: tell it where this connection came from.
      transport::error_code local_ec;
      open_payload = protocol::format_addresses(
          conn->peer(), transport::endpoint_string(conn->socket().local_endpoint(local_ec)));
      open_payload += '\n';
    }
    forwarded.serialize_to(open_payload);
    auto stream = session->open_stream(route.tunnel_index, open_payload, error);
    if (!stream) {
      const std::string detail = "The agent serving " + *host + " cannot take requests: " + error;
      co_await reply_error(503, detail, request_id, has_body || !keep_alive);
      if (has_body || !keep_alive) co_return;
      skip_message_end();
      continue;
    }
    if (parser.expects_continue()) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await conn->write(asio::buffer(kContinue), ec);
    }
    Exchange ex{parser,
                pending,
                buffers,
                std::move(stream),
                std::move(request_id),
                std::move(*host),
                request.method,
                std::move(route.local),
                keep_alive,
                Clock::now(),
                route.throttle.get()};
    ex.upgrade_requested = parser.is_upgrade();
    ex.bodiless = !has_body && !ex.upgrade_requested;
    const bool reuse = co_await relay(*conn, ex);
    if (!reuse) {
      co_await conn->shutdown_send();
      co_return;
    }
  }
}

asio::awaitable<bool> HttpFront::relay(transport::Conn& conn, Exchange& ex) {
  using namespace asio::experimental::awaitable_operators;
  ++active_requests_;
  context_.metrics.streams.inc();
  if (ex.bodiless) {
    // Nothing to read from the client until the response is out: upload only sends END_STREAM
    // and returns, so the halves run one after the other (no parallel group per request).
    co_await upload(conn, ex);
    co_await download(conn, ex);
  } else {
    co_await (upload(conn, ex) && download(conn, ex));
  }
  context_.metrics.streams.dec();
  --active_requests_;
  const auto elapsed = Clock::now() - ex.start;
  const double seconds = std::chrono::duration<double>(elapsed).count();
  context_.metrics.request_duration.observe(seconds);
  context_.metrics.count_request(ex.status == 0 ? 499 : ex.status);
  context_.metrics.bytes_out.inc(ex.bytes_out);
  spdlog::info("{} {} {} {} {} {:.1f}ms in={} out={} id={}", conn.peer(), ex.host, ex.method,
               ex.parser.request().target, ex.status == 0 ? 499 : ex.status, seconds * 1000,
               ex.body_in, ex.bytes_out, ex.request_id);
  co_return ex.request_done&& ex.response_done && !ex.close_after && ex.client_keep_alive &&
      !context_.draining;
}

asio::awaitable<void> HttpFront::refuse_body(transport::Conn& conn, Exchange& ex, int status,
                                             std::string_view reason, const std::string& sentence) {
  ex.stream->reset(protocol::ErrorCode::kCancel, reason);
  ex.close_after = true;
  if (ex.response_started) co_return;
  ex.response_started = true;  // the download half must not answer 502 now
  ex.status = status;
  const std::string page = http::error_response(status, sentence, ex.request_id, true);
  transport::error_code ec;
  co_await conn.write(asio::buffer(page), ec);
  ex.bytes_out += page.size();
}

asio::awaitable<void> HttpFront::upload(transport::Conn& conn, Exchange& ex) {
  transport::error_code ec;
  const auto& limits = context_.config.limits;
  bool raw = false;
  for (;;) {
    if (ex.response_done && !ex.request_done) co_return;  // the app answered early: stop
    if (!raw) {
      const Step step = ex.parser.parse(ex.pending);
      const auto bytes = std::span<const std::uint8_t>(
          reinterpret_cast<const std::uint8_t*>(ex.pending.data()), step.consumed);
      switch (step.type) {
        case Step::kBody:
        case Step::kMessageEnd: {
          // An upgrade request's message ends at its head, but the stream stays open for the
          // raw bytes that follow the 101.
          const bool end = step.type == Step::kMessageEnd && !ex.parser.is_upgrade();
          ex.body_in += step.consumed;
          if (limits.max_body_bytes != 0 && ex.body_in > limits.max_body_bytes) {
            co_await refuse_body(conn, ex, 413, "request body too large",
                                 "The request body is larger than the limit of " +
                                     std::to_string(limits.max_body_bytes) + " bytes.");
            co_return;
          }
          if (ex.throttle != nullptr) co_await throttle(ex.throttle, Direction::kIn, step.consumed);
          co_await ex.stream->write(bytes, ec, end);
          ex.pending.erase(0, step.consumed);
          if (ec) {
            ex.close_after = true;
            co_return;
          }
          if (step.type == Step::kMessageEnd) {
            ex.request_done = true;
            if (end) co_return;
            raw = true;
          }
          continue;
        }
        case Step::kUpgrade:
          raw = true;
          continue;
        case Step::kError:
          spdlog::info("{}: bad request body: {}", conn.peer(), ex.parser.error());
          co_await refuse_body(conn, ex, ex.parser.error_status(), "invalid request body",
                               "The request body is not valid HTTP/1.1: " + ex.parser.error());
          co_return;
        case Step::kNeedMore:
          ex.pending.clear();
          break;
        case Step::kHead:
          co_return;  // cannot happen: a head follows only a message end
      }
    }
    if (raw && !ex.pending.empty()) {
      if (ex.throttle != nullptr) co_await throttle(ex.throttle, Direction::kIn, ex.pending.size());
      co_await ex.stream->write(
          {reinterpret_cast<const std::uint8_t*>(ex.pending.data()), ex.pending.size()}, ec);
      ex.pending.clear();
      if (ec) co_return;
    }
    if (raw && ex.response_done) co_return;
    conn.set_read_deadline(Clock::now() +
                           ex.read_budget(limits.tunnel_idle_timeout, limits.idle_timeout));
    const std::size_t n =
        co_await conn.read_some(asio::buffer(ex.buffers.in.get(), kReadBuffer), ec);
    const bool timed_out = ec == asio::error::timed_out;
    if (timed_out && ex.still_active(limits.tunnel_idle_timeout)) continue;
    if (ec) {
      if (raw) {
        transport::error_code ignored;
        co_await ex.stream->close_write(ignored);
      } else if (!ex.response_done) {
        // The client went away (or stalled) in the middle of its request.
        ex.stream->reset(protocol::ErrorCode::kCancel, "the client closed the connection");
      }
      ex.close_after = true;
      co_return;
    }
    context_.metrics.bytes_in.inc(n);
    ex.pending.assign(ex.buffers.in.get(), n);
    ex.last_activity = Clock::now();
  }
}

asio::awaitable<void> HttpFront::download(transport::Conn& conn, Exchange& ex) {
  const auto& limits = context_.config.limits;
  MessageParser& parser = ex.buffers.response;
  parser.reset();
  parser.expect_response_to(ex.method, ex.upgrade_requested);
  char* const buf = ex.buffers.down.get();
  std::string& out = ex.buffers.out;
  transport::error_code ec;
  bool raw = false;
  bool head_seen = false;

  const auto fail = [&](int status, std::string detail) -> asio::awaitable<void> {
    ex.close_after = true;
    if (!ex.stream->is_reset()) ex.stream->reset(protocol::ErrorCode::kCancel, detail);
    if (!ex.response_started) {
      spdlog::warn("{} {}: {} ({})", ex.host, ex.request_id, detail, status);
      const std::string page = http::error_response(status, detail, ex.request_id, true);
      transport::error_code wec;
      co_await conn.write(asio::buffer(page), wec);
      ex.status = status;
      ex.bytes_out += page.size();
      ex.response_started = true;
    }
    conn.socket().cancel();  // stops an upload still reading the client
  };

  for (;;) {
    const auto timeout = head_seen ? limits.idle_timeout : limits.response_timeout;
    const std::size_t n = co_await ex.stream->read_some(
        asio::buffer(buf, kReadBuffer), ec,
        Clock::now() + ex.read_budget(limits.tunnel_idle_timeout, timeout));
    const bool timed_out = ec == asio::error::timed_out;
    if (timed_out && ex.still_active(limits.tunnel_idle_timeout)) continue;
    if (timed_out && ex.upgraded) {
      spdlog::info("{} {}: upgraded connection idle for {} s (limits.tunnel_idle_timeout); closing",
                   ex.host, ex.request_id, limits.tunnel_idle_timeout.count() / 1000);
      ex.close_after = true;
      ex.stream->reset(protocol::ErrorCode::kCancel, "idle (limits.tunnel_idle_timeout)");
      conn.socket().cancel();
      co_return;
    }
    if (timed_out) {
      const std::string detail = head_seen
                                     ? std::string("The app stopped sending its response.")
                                     : "The app behind " + ex.host + " did not answer within " +
                                           std::to_string(timeout.count() / 1000) + " s.";
      co_await fail(504, detail);
      co_return;
    }
    if (ec) {
      std::string detail;
      int status = 502;
      if (ex.stream->reset_code() == protocol::ErrorCode::kLocalUnreachable ||
          ex.stream->reset_code() == protocol::ErrorCode::kLocalError) {
        detail = "The agent could not get a response from its local app" +
                 (ex.local.empty() ? std::string() : " at " + ex.local) + ": " +
                 ex.stream->reset_message();
      } else if (ex.stream->reset_code() == protocol::ErrorCode::kTimeout) {
        status = 504;
        detail = "The agent's local app timed out: " + ex.stream->reset_message();
      } else {
        detail = "The agent serving " + ex.host + " dropped the request (" +
                 (ex.stream->is_reset()
                      ? std::string(protocol::error_code_name(ex.stream->reset_code())) + " " +
                            ex.stream->reset_message()
                      : ec.message()) +
                 ").";
      }
      co_await fail(status, detail);
      co_return;
    }
    if (n == 0) {  // END_STREAM from the agent
      if (raw) {
        co_await conn.shutdown_send();
        ex.response_done = true;
        co_return;
      }
      const Step step = parser.finish();
      if (step.type == Step::kMessageEnd && head_seen) {
        ex.response_done = true;
        ex.close_after = true;  // close-delimited body: the client learns the end by EOF
      } else {
        co_await fail(502, "The agent ended the response before it was complete.");
      }
      co_return;
    }
    std::span<const char> data(buf, n);
    out.clear();
    while (!data.empty() && !raw) {
      const Step step = parser.parse(data);
      switch (step.type) {
        case Step::kHead: {
          http::ResponseHead& head = parser.response();  // rewritten in place
          head.version_major = 1;  // we speak HTTP/1.1 to the client whatever the app speaks
          head.version_minor = 1;
          if (!parser.is_interim()) {
            head_seen = true;
            ex.status = head.status;
            head.remove_hop_by_hop(head.status == 101);
            if (!ex.client_keep_alive || parser.body_is_close_delimited() || context_.draining) {
              ex.close_after = true;
            }
            if (ex.close_after && head.status != 101) head.set("Connection", "close");
          }
          if (head.find("X-Request-Id") == nullptr) head.set("X-Request-Id", ex.request_id);
          head.serialize_to(out);
          ex.response_started = true;
          break;
        }
        case Step::kBody:
          out.append(data.data(), step.consumed);
          break;
        case Step::kMessageEnd:
          out.append(data.data(), step.consumed);
          if (head_seen) ex.response_done = !parser.is_upgrade();
          break;
        case Step::kUpgrade:
          raw = true;
          ex.upgraded = true;
          ex.last_activity = Clock::now();
          break;
        case Step::kError:
          if (out.empty() && !ex.response_started) {
            co_await fail(502, "The app sent an invalid HTTP response: " + parser.error());
            co_return;
          }
          ex.close_after = true;
          data = {};
          break;
        case Step::kNeedMore:
          break;
      }
      if (step.type == Step::kNeedMore || step.type == Step::kError) break;
      data = data.subspan(step.consumed);
      if (ex.response_done) break;
    }
    if (raw) {
      out.append(chars(data));
      ex.last_activity = Clock::now();
    }
    if (!out.empty()) {
      if (ex.throttle != nullptr) co_await throttle(ex.throttle, Direction::kOut, out.size());
      co_await conn.write(asio::buffer(out), ec);
      ex.bytes_out += out.size();
      if (ec) {
        ex.close_after = true;
        ex.stream->reset(protocol::ErrorCode::kCancel, "the client closed the connection");
        co_return;
      }
    }
    if (ex.response_done) {
      if (!ex.request_done) {
        // The app answered before reading the whole body: the connection cannot be reused.
        ex.close_after = true;
        ex.stream->reset(protocol::ErrorCode::kCancel, "response complete");
        conn.socket().cancel();
      }
      co_return;
    }
  }
}

}  // namespace tunnel::core

// The relay of one exchange: the request body up (upload) and the response down (download),
// concurrently; see http_front.hpp for the stages around it.
#include "core/edge/http_exchange.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "http/error_page.hpp"

namespace tunnel::core {
namespace {

using Clock = std::chrono::steady_clock;
using http::MessageParser;
using Step = MessageParser::Step;

std::string_view chars(std::span<const char> s) {
  return {s.data(), s.size()};
}

}  // namespace

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
          ex.bytes_in += step.consumed;
          ex.filtered.body_bytes += step.consumed;
          if (ex.request_filters()) {
            const std::span<const char> chunk(ex.pending.data(), step.consumed);
            FilterVerdict verdict = ex.listener.request_body(ex.filtered, chunk);
            if (verdict.proceed() && ex.tunnel != nullptr) {
              verdict = ex.tunnel->request_body(ex.filtered, chunk);
            }
            if (!verdict.proceed()) {
              co_await refuse_body(conn, ex, verdict.answer, "refused by a filter");
              co_return;
            }
          }
          if (Throttle::engaged(ex.throttle))
            co_await throttle(ex.throttle, Direction::kIn, step.consumed);
          co_await ex.stream->write(bytes, ec, end);
          if (ex.metrics != nullptr) ex.metrics->bytes_in.inc(step.consumed);
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
          {
            // Named, not inline: GCC 12 destroys temporaries in a co_await expression twice.
            const LocalAnswer bad{ex.parser.error_status(),
                                  "The request body is not valid HTTP/1.1: " + ex.parser.error(),
                                  true};
            co_await refuse_body(conn, ex, bad, "invalid request body");
          }
          co_return;
        case Step::kNeedMore:
          ex.pending.clear();
          break;
        case Step::kHead:
          co_return;  // cannot happen: a head follows only a message end
      }
    }
    if (raw && !ex.pending.empty()) {
      if (Throttle::engaged(ex.throttle))
        co_await throttle(ex.throttle, Direction::kIn, ex.pending.size());
      co_await ex.stream->write(
          {reinterpret_cast<const std::uint8_t*>(ex.pending.data()), ex.pending.size()}, ec);
      ex.bytes_in += ex.pending.size();
      if (ex.metrics != nullptr) ex.metrics->bytes_in.inc(ex.pending.size());
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
        if (!ex.response_started) ex.client_gone = ec != asio::error::operation_aborted;
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
  parser.expect_response_to(ex.parser.request().method, ex.upgrade_requested);
  char* const buf = ex.buffers.down.get();
  std::string& out = ex.buffers.out;
  transport::error_code ec;
  bool raw = false;
  bool head_seen = false;
  bool broken = false;  // the response turned invalid after it began: cut the exchange off

  const auto fail = [&](int status, std::string detail, ErrorCause cause) -> asio::awaitable<void> {
    ex.close_after = true;
    ex.cause = cause;
    if (!ex.stream->is_reset()) ex.stream->reset(protocol::ErrorCode::kCancel, detail);
    if (!ex.response_started) {
      spdlog::warn("{} {}: {} ({})", ex.filtered.decision.host, ex.request_id, detail, status);
      const std::string page = http::error_response(status, detail, ex.request_id, true);
      transport::error_code wec;
      co_await conn.write(asio::buffer(page), wec);
      ex.status = status;
      ex.sent(page.size(), context_.metrics.bytes_out);
      ex.response_started = true;
    }
    conn.socket().cancel();  // stops an upload still reading the client
  };

  for (;;) {
    const auto timeout = head_seen ? limits.idle_timeout : limits.response_timeout;
    auto deadline = Clock::now() + ex.read_budget(limits.tunnel_idle_timeout, timeout);
    // While the app prepares an answer to a request that is complete, watch the client from
    // limits.client_watch_delay on (before that, nobody reads it: most answers come sooner).
    const bool watch_point = !head_seen && !ex.watching && !ex.client_gone && ex.request_done &&
                             !ex.upgrade_requested && limits.client_watch_delay < timeout;
    const auto response_deadline = deadline;
    if (watch_point) deadline = std::min(deadline, ex.start + limits.client_watch_delay);
    ec = {};  // read_some leaves it as it was on success
    const std::size_t n =
        co_await ex.stream->read_some(asio::buffer(buf, kReadBuffer), ec, deadline);
    const bool timed_out = ec == asio::error::timed_out;
    if (timed_out && watch_point && Clock::now() < response_deadline) {
      ex.watching = true;
      ex.watch_done.emplace(conn.get_executor(), Clock::time_point::max());
      asio::co_spawn(conn.get_executor(), watch_client(conn, ex), asio::detached);
      continue;
    }
    if (timed_out && ex.still_active(limits.tunnel_idle_timeout)) continue;
    if (ex.client_gone) {  // watch_client() reset the stream: nobody to answer
      ex.close_after = true;
      co_return;
    }
    if (timed_out && ex.upgraded) {
      spdlog::info("{} {}: upgraded connection idle for {} s (limits.tunnel_idle_timeout); closing",
                   ex.filtered.decision.host, ex.request_id,
                   limits.tunnel_idle_timeout.count() / 1000);
      ex.close_after = true;
      ex.stream->reset(protocol::ErrorCode::kCancel, "idle (limits.tunnel_idle_timeout)");
      conn.socket().cancel();
      co_return;
    }
    if (timed_out) {
      const std::string detail = head_seen ? std::string("The app stopped sending its response.")
                                           : "The app behind " + ex.filtered.decision.host +
                                                 " did not answer within " +
                                                 std::to_string(timeout.count() / 1000) + " s.";
      co_await fail(504, detail, ErrorCause::kTimeout);
      co_return;
    }
    if (ec) {
      std::string detail;
      int status = 502;
      ErrorCause cause = ErrorCause::kAgentGone;
      if (ex.stream->reset_code() == protocol::ErrorCode::kLocalUnreachable ||
          ex.stream->reset_code() == protocol::ErrorCode::kLocalError) {
        cause = ex.stream->reset_code() == protocol::ErrorCode::kLocalUnreachable
                    ? ErrorCause::kAppRefused
                    : ErrorCause::kAppError;
        detail = "The agent could not get a response from its local app" +
                 (ex.local.empty() ? std::string() : " at " + ex.local) + ": " +
                 ex.stream->reset_message();
      } else if (ex.stream->reset_code() == protocol::ErrorCode::kTimeout) {
        status = 504;
        cause = ErrorCause::kTimeout;
        detail = "The agent's local app timed out: " + ex.stream->reset_message();
      } else {
        detail = "The agent serving " + ex.filtered.decision.host + " dropped the request (" +
                 (ex.stream->is_reset()
                      ? std::string(protocol::error_code_name(ex.stream->reset_code())) + " " +
                            ex.stream->reset_message()
                      : ec.message()) +
                 ").";
      }
      co_await fail(status, detail, cause);
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
        co_await fail(502, "The agent ended the response before it was complete.",
                      ErrorCause::kAppError);
      }
      co_return;
    }
    std::span<const char> data(buf, n);
    out.clear();
    while (!data.empty() && !raw) {
      const Step step = parser.parse(data);
      switch (step.type) {
        case Step::kHead: {
          if (ex.watching) co_await stop_watching(conn, ex);
          if (ex.client_gone) {
            ex.close_after = true;
            co_return;
          }
          http::ResponseHead& head = parser.response();  // rewritten in place
          head.version_major = 1;  // we speak HTTP/1.1 to the client whatever the app speaks
          head.version_minor = 1;
          if (!parser.is_interim()) {
            if (ex.response_head_filters()) {
              FilterVerdict verdict = ex.listener.response_head(ex.filtered, head);
              if (verdict.proceed() && ex.tunnel != nullptr) {
                verdict = ex.tunnel->response_head(ex.filtered, head);
              }
              if (!verdict.proceed()) {
                if (verdict.kind == FilterVerdict::Kind::kAnswer) {
                  co_await fail(verdict.answer.status, verdict.answer.detail,
                                cause_of_local_answer(verdict.answer.status, true));
                } else {
                  ex.close_after = true;
                  ex.stream->reset(protocol::ErrorCode::kCancel, "stopped by a filter");
                  conn.socket().cancel();
                }
                co_return;
              }
            }
            head_seen = true;
            ex.status = head.status;
            ex.response_head_at = Clock::now();
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
            co_await fail(502, "The app sent an invalid HTTP response: " + parser.error(),
                          ErrorCause::kAppError);
            co_return;
          }
          spdlog::warn("{} {}: the response turned invalid after it began: {}",
                       ex.filtered.decision.host, ex.request_id, parser.error());
          broken = true;
          ex.cause = ErrorCause::kAppError;
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
      if (ex.response_body_filters()) {
        ex.listener.response_body(ex.filtered, out);
        if (ex.tunnel != nullptr) ex.tunnel->response_body(ex.filtered, out);
      }
      if (Throttle::engaged(ex.throttle))
        co_await throttle(ex.throttle, Direction::kOut, out.size());
      co_await conn.write(asio::buffer(out), ec);
      ex.sent(out.size(), context_.metrics.bytes_out);
      if (ec) {
        ex.close_after = true;
        ex.stream->reset(protocol::ErrorCode::kCancel, "the client closed the connection");
        co_return;
      }
    }
    if (broken) {
      // The client cannot tell where this response ends: close now rather than leave it
      // waiting for bytes that will never make sense.
      ex.close_after = true;
      ex.stream->reset(protocol::ErrorCode::kCancel, "invalid response");
      conn.socket().cancel();
      co_return;
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

#include "core/edge/http_front.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/agents/agent_gateway.hpp"
#include "core/edge/http_exchange.hpp"
#include "core/edge/http_filters.hpp"
#include "http/error_page.hpp"
#include "observability/log.hpp"

namespace tunnel::core {
namespace {

using Clock = std::chrono::steady_clock;
using http::MessageParser;
using Step = MessageParser::Step;
constexpr auto kDrainPoll = std::chrono::milliseconds(250);

std::string client_ip(const transport::Conn& conn) {
  return std::string(ip_of_peer(conn.peer()));
}

}  // namespace

HttpFront::HttpFront(CoreContext& context)
    : context_(context),
      forwarding_(forwarding_policy(context.config.trusted_proxies)),
      listener_filters_(core::listener_filters(context)) {}

asio::awaitable<void> linger_close(transport::Conn& conn, std::span<char> buffer,
                                   Clock::duration total, Clock::duration idle,
                                   std::size_t max_bytes) {
  co_await conn.shutdown_send();
  const auto end = Clock::now() + total;
  std::size_t drained = 0;
  while (drained < max_bytes) {
    const auto now = Clock::now();
    if (now >= end) break;
    conn.set_read_deadline(std::min(end, now + idle));
    transport::error_code ec;
    const std::size_t n = co_await conn.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
    if (ec) break;  // the client closed, an error, or a deadline passed
    drained += n;
  }
}

asio::awaitable<void> HttpFront::answer(transport::Conn& conn, const LocalAnswer& reply,
                                        const std::string& request_id, std::string_view method,
                                        TunnelSeries* tunnel) {
  const std::string response =
      reply.problem.empty()
          ? http::error_response(reply.status, reply.detail, request_id, reply.close, reply.headers)
          : http::problem_response(reply.status, reply.problem, request_id, reply.close,
                                   reply.retry_after);
  transport::error_code ec;
  co_await conn.write(asio::buffer(response), ec);
  context_.metrics.count_request(reply.status);
  context_.metrics.bytes_out.inc(response.size());
  TunnelSeries& series = tunnel != nullptr ? *tunnel : context_.tunnel_metrics.none();
  series.count_request(method_index(method), reply.status);
  series.count_error(cause_of_local_answer(reply.status, tunnel != nullptr));
  series.bytes_out.inc(response.size());
}

asio::awaitable<void> HttpFront::serve(std::unique_ptr<transport::Conn> conn, bool tls,
                                       std::string pending, std::optional<Decision> decided,
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

  // After a local answer on a connection that stays open: the request had no body, so its
  // message end comes next; consume it so the parser is ready for the next head.
  const auto skip_message_end = [&] {
    const Step end = parser.parse(pending);
    pending.erase(0, end.consumed);
  };
  const auto close_lingering = [&]() -> asio::awaitable<void> {
    co_await linger_close(*conn, {buffers.in.get(), kReadBuffer}, kLingerTime, kLingerIdle,
                          kLingerBytes);
  };

  for (;;) {
    // ---- 1. the request head
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
        // Named, not inline: GCC 12 destroys temporaries in a co_await expression twice.
        const LocalAnswer bad{parser.error_status(), parser.error(), true};
        const std::string no_id;
        co_await answer(*conn, bad, no_id, parser.request().method, nullptr);
        co_await close_lingering();
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
          const LocalAnswer late{408, "The request head did not arrive in time.", true};
          const std::string no_id;
          co_await answer(*conn, late, no_id, {}, nullptr);
          co_await close_lingering();
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
    const auto head_at = decided ? decided->head_at : Clock::now();

    // ---- 2. decide
    Decision decision;
    if (decided) {
      decision = std::move(*decided);
      decided.reset();
    } else {
      const RequestFacts facts{parser.request(), parser.has_body(), parser.keep_alive()};
      decision = decide(facts, [this](const std::string& host, Route& route) {
        return context_.registry.lookup(host, route);
      });
      if (decision.answer && (decision.answer->status == 404 || decision.answer->status == 503) &&
          hold_names_until_.load(std::memory_order_relaxed) != 0 &&
          co_await wait_for_agents(decision.host)) {
        decision = decide(facts, [this](const std::string& host, Route& route) {
          return context_.registry.lookup(host, route);
        });
      }
      decision.head_at = head_at;
    }
    if (decision.answer) {
      const http::RequestHead& request = parser.request();
      const std::string request_id = new_request_id();
      std::optional<tracing::TraceContext> incoming;
      if (context_.tracer) incoming = incoming_trace(request);  // the caller's trace, if any
      log_local_answer(client_ip(*conn), decision.host, request, *decision.answer, request_id,
                       incoming ? &incoming->trace_id : nullptr);
      co_await answer(*conn, *decision.answer, request_id, request.method, nullptr);
      if (decision.answer->close) {
        co_await close_lingering();
        co_return;
      }
      skip_message_end();
      continue;
    }

    // ---- 3. hop to the agent's worker
    auto& session = decision.route.agent->session;
    if (session->get_executor() != executor) {
      // The socket is re-registered with that worker's event loop (TLS state goes along); the
      // serve() there re-reads this head from `moved` and goes on with `decision`.
      std::string moved = parser.request().serialize() + pending;
      auto target = session->get_executor();
      conn->move_to(target, ec);
      if (ec) co_return;
      counted.owner = false;  // the serve() on the other worker takes the count over
      asio::co_spawn(target,
                     serve(std::move(conn), tls, std::move(moved), std::move(decision), true),
                     asio::detached);
      co_return;
    }

    // ---- 4-5. request filters, rewrite, OPEN_STREAM
    http::RequestHead& head = parser.request();
    const bool has_body = parser.has_body();
    const bool keep_alive = parser.keep_alive();
    const std::string ip = client_ip(*conn);
    const bool trusted = !forwarding_.trusted_proxies.empty() && forwarding_.trusts(ip);
    std::string request_id = request_id_for(head, trusted);
    std::string local_addr;
    const FilterChain& listener = *listener_filters_;
    const FilterChain* tunnel = decision.route.filters.get();
    if (listener.wants(hook::kLocalAddr) ||
        (tunnel != nullptr && tunnel->wants(hook::kLocalAddr))) {
      transport::error_code local_ec;
      local_addr = transport::endpoint_string(conn->socket().local_endpoint(local_ec));
    }
    buffers.open.clear();
    FilterRequest filtered{head, decision, conn->peer(), local_addr, tls, buffers.open};
    filtered.request_id = &request_id;
    FilterVerdict refusal;
    auto stream = open_exchange(filtered, ip, trusted, request_id, parser.is_upgrade(), refusal);
    if (!stream) {
      const bool close = refusal.kind == FilterVerdict::Kind::kStop || refusal.answer.close ||
                         has_body || !keep_alive;
      if (refusal.kind == FilterVerdict::Kind::kAnswer) {
        refusal.answer.close = close;
        log_local_answer(ip, decision.host, head, refusal.answer, request_id,
                         filtered.trace.active ? &filtered.trace.trace_id : nullptr);
        co_await answer(*conn, refusal.answer, request_id, head.method,
                        decision.route.metrics.get());
      }
      const ExchangeSummary summary{refusal.answer.status, 0, 0, 0, true};
      if (listener.wants(hook::kComplete)) listener.complete(filtered, summary);
      if (tunnel != nullptr && tunnel->wants(hook::kComplete)) tunnel->complete(filtered, summary);
      if (!close) {
        skip_message_end();
        continue;
      }
      if (has_body) {
        co_await close_lingering();
      } else {
        co_await conn->shutdown_send();
      }
      co_return;
    }
    if (parser.expects_continue()) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await conn->write(asio::buffer(kContinue), ec);
    }

    // ---- 6. relay (its state lives in this frame, allocated once per connection)
    Exchange ex(parser, pending, buffers, std::move(stream), std::move(request_id), filtered,
                listener, tunnel, decision.route.local, keep_alive, decision.route.throttle.get());
    ex.upgrade_requested = parser.is_upgrade();
    ex.bodiless = !has_body && !ex.upgrade_requested;
    ex.metrics = decision.route.metrics.get();
    ex.head_at = head_at;
    filtered.request_id = &ex.request_id;  // request_id moved there
    co_await relay(*conn, ex);

    // ---- 7. finish
    finish(*conn, ex);
    if (ex.request_done && ex.response_done && !ex.close_after && ex.client_keep_alive &&
        !context_.draining) {
      continue;
    }
    if (ex.request_done || ex.client_gone) {
      co_await conn->shutdown_send();
    } else {
      co_await close_lingering();  // the client may still be sending its body
    }
    co_return;
  }
}

std::shared_ptr<mux::Stream> HttpFront::open_exchange(FilterRequest& filtered,
                                                      const std::string& ip, bool trusted,
                                                      const std::string& request_id, bool upgrade,
                                                      FilterVerdict& refusal) {
  const Decision& decision = filtered.decision;
  const FilterChain* tunnel = decision.route.filters.get();
  if (!listener_filters_->empty()) refusal = listener_filters_->request_head(filtered);
  if (refusal.proceed() && tunnel != nullptr) refusal = tunnel->request_head(filtered);
  if (!refusal.proceed()) return nullptr;

  http::RequestHead& head = filtered.head;
  const std::string* host_field = head.find("Host");
  const std::string host_value = !decision.host_override.empty() ? decision.host_override
                                 : host_field != nullptr         ? *host_field
                                                                 : decision.host;
  if (!decision.origin_target.empty()) head.target = decision.origin_target;
  rewrite_request(head, RewriteInput{ip, trusted, filtered.tls, host_value, request_id, upgrade});
  head.serialize_to(filtered.open_prefix);
  auto opened =
      decision.route.agent->session->open_stream(decision.route.tunnel_index, filtered.open_prefix);
  if (!opened) {
    refusal = FilterVerdict::respond(
        503,
        "The agent serving " + decision.host + " cannot take requests: " + opened.error().message,
        false);
    return nullptr;
  }
  return std::move(opened).value();
}

asio::awaitable<void> HttpFront::relay(transport::Conn& conn, Exchange& ex) {
  using namespace asio::experimental::awaitable_operators;
  ++active_requests_;
  context_.metrics.streams.inc();
  if (ex.metrics != nullptr) ex.metrics->active.inc();
  if (ex.bodiless) {
    // Nothing to read from the client until the response is out: upload only sends END_STREAM
    // and returns, so the halves run one after the other (no parallel group per request).
    co_await upload(conn, ex);
    co_await download(conn, ex);
  } else {
    co_await (upload(conn, ex) && download(conn, ex));
  }
  if (ex.watching) co_await stop_watching(conn, ex);
  context_.metrics.streams.dec();
  --active_requests_;
}

void HttpFront::log_local_answer(std::string_view ip, std::string_view host,
                                 const http::RequestHead& head, const LocalAnswer& reply,
                                 const std::string& request_id, const tracing::TraceId* trace_id) {
  if (trace_id != nullptr) {
    spdlog::info("{} {} {} {} -> {} {} id={} trace={}", ip, host, head.method, head.target,
                 reply.status, reply.detail, request_id, tracing::to_hex(*trace_id));
    return;
  }
  spdlog::info("{} {} {} {} -> {} {} id={}", ip, host, head.method, head.target, reply.status,
               reply.detail, request_id);
}

void HttpFront::log_details(const Exchange& ex, int status) {
  const Route& route = ex.filtered.decision.route;
  const std::string_view agent =
      route.agent != nullptr ? std::string_view(route.agent->agent_id) : std::string_view();
  if (!observability::log_detail(ex.filtered.decision.host, agent)) return;
  const auto ms = [](Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
  };
  const double app =
      ex.response_head_at != Clock::time_point{} ? ms(ex.start, ex.response_head_at) : -1.0;
  const http::RequestHead& request = ex.parser.request();
  // Written whatever the logger's level: a selected tunnel's line shows at info too.
  observability::write_detail(
      fmt::format("{} {} {}: agent={} local={} to_agent={:.1f}ms app={:.1f}ms status={} id={}",
                  ex.filtered.decision.host, request.method, request.target, agent, route.local,
                  ms(ex.head_at, ex.start), app, status, ex.request_id));
}

void HttpFront::finish(const transport::Conn& conn, Exchange& ex) {
  const auto elapsed = Clock::now() - ex.start;
  const double seconds = std::chrono::duration<double>(elapsed).count();
  const int status = ex.status == 0 ? 499 : ex.status;
  context_.metrics.request_duration.observe(seconds);
  context_.metrics.count_request(status);
  const bool cut_off = ex.status != 0 && !ex.response_done && !ex.upgraded;
  if (TunnelSeries* m = ex.metrics) {
    m->count_request(method_index(ex.parser.request().method), status);
    const auto since = [](Clock::time_point from, Clock::time_point to) {
      return std::chrono::duration<double>(to - from).count();
    };
    m->open_duration.observe(since(ex.head_at, ex.start));
    if (ex.response_head_at != Clock::time_point{}) {
      m->app_duration.observe(since(ex.start, ex.response_head_at));
    }
    m->duration.observe(since(ex.head_at, ex.start) + seconds);
    if (ex.client_gone) {
      m->count_error(ErrorCause::kClientGone);
    } else if (ex.cause != ErrorCause::kCount) {
      m->count_error(ex.cause);
    }
    m->active.dec();  // after the counts: active 0 means every request is counted
  }
  if (const auto& usage = ex.filtered.decision.route.usage) {
    usage->add(ex.bytes_in, ex.bytes_out, status >= 500 || cut_off);
  }
  const ExchangeSummary summary{status, ex.bytes_in, ex.bytes_out, seconds, !cut_off, true};
  if (ex.listener.wants(hook::kComplete)) ex.listener.complete(ex.filtered, summary);
  if (ex.tunnel != nullptr && ex.tunnel->wants(hook::kComplete)) {
    ex.tunnel->complete(ex.filtered, summary);
  }
  const http::RequestHead& request = ex.parser.request();
  log_details(ex, status);
  if (ex.filtered.trace.active) {
    spdlog::info("{} {} {} {} {}{} {:.1f}ms in={} out={} id={} trace={}", conn.peer(),
                 ex.filtered.decision.host, request.method, request.target, status,
                 cut_off          ? " (response cut off)"
                 : ex.client_gone ? " (client closed the connection)"
                                  : "",
                 seconds * 1000, ex.bytes_in, ex.bytes_out, ex.request_id,
                 tracing::to_hex(ex.filtered.trace.trace_id));
    return;
  }
  spdlog::info("{} {} {} {} {}{} {:.1f}ms in={} out={} id={}", conn.peer(),
               ex.filtered.decision.host, request.method, request.target, status,
               cut_off          ? " (response cut off)"
               : ex.client_gone ? " (client closed the connection)"
                                : "",
               seconds * 1000, ex.bytes_in, ex.bytes_out, ex.request_id);
}

asio::awaitable<void> HttpFront::watch_client(transport::Conn& conn, Exchange& ex) {
  const auto& limits = context_.config.limits;
  for (;;) {
    if (ex.pending.size() >= kReadBuffer) break;  // enough pipelined bytes; stop reading
    conn.set_read_deadline(Clock::now() + limits.response_timeout + limits.idle_timeout);
    transport::error_code ec;
    const std::size_t n =
        co_await conn.read_some(asio::buffer(ex.buffers.in.get(), kReadBuffer), ec);
    if (ec == asio::error::timed_out) break;  // the download's own timeout comes first
    if (ec == asio::error::operation_aborted || ex.response_started) {
      if (!ec) ex.pending.append(ex.buffers.in.get(), n);
      break;  // stop_watching(): the response began
    }
    if (ec) {
      ex.client_gone = true;
      ex.close_after = true;
      ex.stream->reset(protocol::ErrorCode::kCancel, "the client closed the connection");
      break;
    }
    context_.metrics.bytes_in.inc(n);
    ex.pending.append(ex.buffers.in.get(), n);
  }
  ex.watching = false;
  if (ex.watch_done) ex.watch_done->cancel();
}

asio::awaitable<void> HttpFront::stop_watching(transport::Conn& conn, Exchange& ex) {
  conn.socket().cancel();
  co_await ex.watch_done->async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> HttpFront::refuse_body(transport::Conn& conn, Exchange& ex,
                                             const LocalAnswer& answer, std::string_view reason) {
  ex.stream->reset(protocol::ErrorCode::kCancel, reason);
  ex.close_after = true;
  ex.cause = cause_of_local_answer(answer.status, true);
  if (ex.response_started) co_return;
  ex.response_started = true;  // the download half must not answer 502 now
  ex.status = answer.status;
  const std::string page =
      answer.problem.empty()
          ? http::error_response(answer.status, answer.detail, ex.request_id, true, answer.headers)
          : http::problem_response(answer.status, answer.problem, ex.request_id, true,
                                   answer.retry_after);
  transport::error_code ec;
  co_await conn.write(asio::buffer(page), ec);
  ex.sent(page.size(), context_.metrics.bytes_out);
}

asio::awaitable<bool> HttpFront::wait_for_agents(const std::string& host) {
  constexpr auto kPoll = std::chrono::milliseconds(20);
  const auto until = Clock::time_point(std::chrono::duration_cast<Clock::duration>(
      std::chrono::nanoseconds(hold_names_until_.load(std::memory_order_relaxed))));
  if (host.empty() || Clock::now() >= until) co_return false;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  Route route;
  while (Clock::now() < until) {
    timer.expires_after(kPoll);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (context_.registry.lookup(host, route) == LookupStatus::kFound) co_return true;
  }
  co_return false;
}

}  // namespace tunnel::core

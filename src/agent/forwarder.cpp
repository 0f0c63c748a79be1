#include "agent/forwarder.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <vector>

#include "http/message_parser.hpp"
#include "tracing/span_in.hpp"

namespace tunnel::agent {
namespace {

using Clock = std::chrono::steady_clock;
using http::MessageParser;
using Step = MessageParser::Step;
using protocol::ErrorCode;
constexpr std::size_t kBufferSize = 64 * 1024;

// What every exchange needs, recycled per thread: a fresh 64 KiB malloc/free pair per request
// and direction was the agent's top cost in profiles, and a response parser costs three
// allocations to set up. At most kKept of each stay cached.
constexpr std::size_t kKept = 64;

// An object of type T taken from this thread's cache (or made by T::make()) and given back to
// it when this goes out of scope.
template <typename T>
class Recycled {
 public:
  Recycled() {
    auto& cache = free_list();
    if (cache.empty()) {
      object_ = T::make();
    } else {
      object_ = std::move(cache.back());
      cache.pop_back();
    }
  }
  ~Recycled() {
    auto& cache = free_list();
    if (object_ && cache.size() < kKept) cache.push_back(std::move(object_));
  }
  Recycled(const Recycled&) = delete;
  Recycled& operator=(const Recycled&) = delete;

  T& operator*() const { return *object_; }
  T* operator->() const { return object_.get(); }

 private:
  static std::vector<std::unique_ptr<T>>& free_list() {
    thread_local std::vector<std::unique_ptr<T>> cache;
    return cache;
  }
  std::unique_ptr<T> object_;
};

struct RelayBytes {
  char data[kBufferSize];
  static std::unique_ptr<RelayBytes> make() { return std::make_unique_for_overwrite<RelayBytes>(); }
};

// The app's response is read for its status and its end only.
struct ResponseParser {
  MessageParser parser{MessageParser::Kind::kResponse};
  static std::unique_ptr<ResponseParser> make() {
    auto made = std::make_unique<ResponseParser>();
    made->parser.keep_only_headers({});
    return made;
  }
};
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// The request as the core sent it: a head that may lack its final empty line.
struct RequestInfo {
  std::string_view head;    // in the stream's OPEN_STREAM payload
  std::string_view end;     // what completes it: "", "\r\n" or "\r\n\r\n"
  std::string_view method;  // in the ForwardResult
  bool upgrade = false;
  std::string error;  // the head does not parse
};

std::atomic<tracing::Tracer*> g_tracer{nullptr};

bool is_field(std::string_view line, std::string_view name) {
  return line.size() > name.size() && line[name.size()] == ':' &&
         boost::algorithm::iequals(line.substr(0, name.size()), name);
}

// The head with traceparent set to `traceparent` (any earlier one removed), and tracestate
// removed when `keep_state` is false; complete (ends with the empty line).
std::string with_traceparent(std::string_view head, std::string_view traceparent, bool keep_state) {
  while (head.ends_with("\r\n")) head.remove_suffix(2);
  std::string out;
  out.reserve(head.size() + 80);
  bool first = true;
  while (!head.empty()) {
    const auto eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
    if (!first &&
        (is_field(line, "traceparent") || (!keep_state && is_field(line, "tracestate")))) {
      continue;
    }
    first = false;
    out += line;
    out += "\r\n";
  }
  out += "traceparent: ";
  out += traceparent;
  out += "\r\n\r\n";
  return out;
}

// Reads the head in `payload`; its method, target and request id go to `result`.
RequestInfo read_request_head(std::string_view payload, ForwardResult& result,
                              std::optional<tracing::TraceContext>* parent = nullptr) {
  RequestInfo info;
  info.head = payload;
  if (payload.ends_with("\r\n\r\n")) {
  } else if (payload.ends_with("\r\n")) {
    info.end = "\r\n";
  } else {
    info.end = "\r\n\r\n";
  }
  // One parser per thread, reset for each head: it is done with before this returns.
  thread_local MessageParser parser = [] {
    MessageParser made(MessageParser::Kind::kRequest);
    made.keep_only_headers({"X-Request-Id"});  // the head goes to the app as the core sent it
    return made;
  }();
  // With tracing on: one that keeps traceparent too.
  thread_local MessageParser traced_parser = [] {
    MessageParser made(MessageParser::Kind::kRequest);
    made.keep_only_headers({"X-Request-Id", "traceparent"});
    return made;
  }();
  MessageParser& used = parent != nullptr ? traced_parser : parser;
  used.reset();
  Step step = used.parse(payload);
  if (step.type == Step::kNeedMore && !info.end.empty()) step = used.parse(info.end);
  if (step.type != Step::kHead) {
    info.error = step.type == Step::kError ? used.error() : "incomplete request head";
    return info;
  }
  http::RequestHead& head = used.request();
  result.method = std::move(head.method);
  result.target = std::move(head.target);
  if (parent == nullptr) {
    // X-Request-Id is the only field kept.
    if (!head.headers.empty()) result.request_id = std::move(head.headers.front().value);
    info.method = result.method;
    info.upgrade = used.is_upgrade();
    return info;
  }
  int traceparents = 0;
  const std::string* traceparent = nullptr;
  for (http::Header& field : head.headers) {
    if (boost::algorithm::iequals(field.name, "X-Request-Id")) {
      result.request_id = std::move(field.value);
    } else {
      ++traceparents;
      traceparent = &field.value;
    }
  }
  if (traceparents == 1) *parent = tracing::parse_traceparent(*traceparent);
  info.method = result.method;
  info.upgrade = used.is_upgrade();
  return info;
}

// One try at the exchange over one app connection; both directions share it.
struct Attempt {
  Attempt(mux::Stream& s, tcp::socket& a, const std::string& w, const RequestInfo& r)
      : stream(s), app(a), where(w), request(r) {
    // When the core gives up on the stream (the client left) while the app is still silent,
    // stop waiting for the app.
    stream.on_gone([this] {
      if (!download_over && !response_done) stream_gone();
    });
  }
  ~Attempt() { stream.on_gone(nullptr); }
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;

  mux::Stream& stream;
  tcp::socket& app;
  const std::string& where;  // the app's address, for messages
  const RequestInfo& request;
  ExchangeCapture* capture = nullptr;  // the inspector's copy, when it is on

  bool final_head = false;
  bool upgraded = false;  // 101: raw bytes both ways
  int status = 0;
  bool keep_alive = false;
  bool trailing = false;       // the app sent bytes after the end of its response
  bool request_done = false;   // END_STREAM read and every body byte written to the app
  bool response_done = false;  // the whole response went out, END_STREAM included
  bool download_over = false;  // the download half has returned
  bool stream_dead = false;    // the core reset the stream or the session ended
  bool failed = false;         // we reset the stream
  bool retryable = false;      // a reused connection was closed before anything happened
  bool reused = false;
  protocol::ProxyProtocol proxy = protocol::ProxyProtocol::kNone;  // a PROXY header went first
  std::string error;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t bytes_from_app = 0;

  std::string proxy_hint() const {
    if (proxy == protocol::ProxyProtocol::kNone) return "";
    const std::string version(protocol::proxy_protocol_name(proxy));
    return "; it was sent a PROXY " + version + " header first: does it accept PROXY protocol " +
           version + "?";
  }

  void fail(std::string message) {
    if (failed || stream_dead) return;
    failed = true;
    error = message;
    stream.reset(ErrorCode::kLocalError, message);
    cancel_app();
  }
  void stream_gone() {
    if (stream_dead) return;
    stream_dead = true;
    if (error.empty()) {
      error = stream.is_reset()
                  ? "reset by the core (" +
                        std::string(protocol::error_code_name(stream.reset_code())) +
                        (stream.reset_message().empty() ? std::string()
                                                        : " " + stream.reset_message()) +
                        ")"
                  : "the session ended";
    }
    cancel_app();
  }
  void cancel_app() {
    boost::system::error_code ignored;
    app.cancel(ignored);
  }
};

// Stream -> app: the request body (or raw bytes after a 101), until END_STREAM.
asio::awaitable<void> upload(Attempt& at) {
  const Recycled<RelayBytes> buf;
  for (;;) {
    transport::error_code ec;
    const std::size_t n = co_await at.stream.read_some(asio::buffer(buf->data, kBufferSize), ec);
    if (ec) {
      at.stream_gone();
      co_return;
    }
    if (n == 0) {
      // After a 101 this is the client's half-close. An END_STREAM before it ends the upgrade
      // request itself (which has no body), not the raw exchange.
      if (at.upgraded) {
        boost::system::error_code ignored;
        at.app.shutdown(tcp::socket::shutdown_send, ignored);
      }
      at.request_done = true;
      break;
    }
    auto [wec, written] = co_await asio::async_write(at.app, asio::buffer(buf->data, n), kNoThrow);
    (void)written;
    if (wec) break;  // the app stopped reading; its response (or its EOF) tells the rest
    at.bytes_in += n;
    if (at.capture != nullptr) {
      if (at.upgraded) at.capture->mark_request(Clock::now());  // a WebSocket frame's time
      at.capture->add_request_body(buf->data, n);
    }
  }
}

// App -> stream: the response bytes, raw, ended with END_STREAM where the message ends.
asio::awaitable<void> download_body(Attempt& at) {
  const Recycled<ResponseParser> recycled;
  MessageParser& parser = recycled->parser;
  parser.reset();
  parser.expect_response_to(at.request.method, at.request.upgrade);
  const Recycled<RelayBytes> buf;
  bool raw = false;
  for (;;) {
    auto [ec, n] = co_await at.app.async_read_some(asio::buffer(buf->data, kBufferSize), kNoThrow);
    if (at.stream_dead || at.failed) co_return;
    if (ec) {
      transport::error_code wec;
      if (ec == asio::error::eof && raw) {
        co_await at.stream.close_write(wec);
        at.response_done = !wec;
        co_return;
      }
      if (ec == asio::error::eof && parser.finish().type == Step::kMessageEnd && at.final_head) {
        co_await at.stream.close_write(wec);  // a close-delimited body ends here
        at.response_done = !wec;
        at.keep_alive = false;
        co_return;
      }
      if (at.bytes_from_app == 0 && at.reused && at.bytes_in == 0 && at.request_done &&
          (ec == asio::error::eof || ec == asio::error::connection_reset)) {
        at.retryable = true;  // the app dropped an idle connection just as we reused it
        co_return;
      }
      at.fail(at.bytes_from_app == 0
                  ? "the local app at " + at.where + " closed the connection without responding (" +
                        ec.message() + ")" + at.proxy_hint()
                  : "the local app at " + at.where + " broke off its response (" + ec.message() +
                        ")");
      co_return;
    }
    at.bytes_from_app += n;

    std::size_t offset = 0;
    bool end = false;
    const bool head_before = at.final_head;
    std::size_t head_end = 0;
    while (!raw && !end) {
      const Step step = parser.parse(std::span<const char>(buf->data + offset, n - offset));
      if (step.type == Step::kNeedMore) {
        offset = n;
        break;
      }
      if (step.type == Step::kError) {
        at.fail("the local app at " + at.where + " sent an invalid response: " + parser.error() +
                at.proxy_hint());
        co_return;
      }
      offset += step.consumed;
      if (step.type == Step::kHead && !parser.is_interim()) {
        at.final_head = true;
        at.status = parser.response().status;
        at.keep_alive = parser.keep_alive();
        if (at.capture != nullptr) {
          head_end = offset;
          at.capture->app_head = Clock::now();
        }
      } else if (step.type == Step::kMessageEnd && at.final_head && !parser.is_upgrade()) {
        end = true;
      } else if (step.type == Step::kUpgrade) {
        raw = true;
        at.upgraded = true;
      }
    }
    if (raw) offset = n;
    if (end && offset < n) {
      at.trailing = true;  // more than one response: not reusable
      spdlog::debug(
          "the local app at {} sent {} byte(s) after the end of its response; closing that "
          "connection instead of reusing it",
          at.where, n - offset);
    }

    if (at.capture != nullptr) {
      if (raw) at.capture->mark_response(Clock::now());
      at.capture->add_response(buf->data, offset, head_before, head_end);
    }
    transport::error_code wec;
    co_await at.stream.write({reinterpret_cast<const std::uint8_t*>(buf->data), offset}, wec, end);
    if (wec) {
      at.stream_gone();
      co_return;
    }
    at.bytes_out += offset;
    if (end) {
      at.response_done = true;
      co_return;
    }
  }
}

asio::awaitable<void> download(Attempt& at) {
  co_await download_body(at);
  at.download_over = true;
  // The app answered without reading the whole body: the exchange cannot finish cleanly, and
  // an upload stuck writing to the app must not wait for it.
  if (!at.request_done && !at.upgraded) at.cancel_app();
}

// The agent's span for the local call, when it is kept: sampled, or the exchange failed.
void export_span(tracing::Tracer& tracer, const ForwardResult& result,
                 const common::NetAddress& target) {
  const tracing::RequestTrace& trace = result.trace;
  const bool failed = !result.error.empty() || result.status >= 500;
  if (!trace.sampled() && !failed) return;
  tracing::SpanData span = tracing::span_in(
      trace, tracing::SpanOf::kRequest, tracing::SpanKind::kClient, result.method + " local",
      tracing::unix_nanos(std::chrono::system_clock::now()),
      std::chrono::duration_cast<std::chrono::nanoseconds>(result.elapsed).count());
  span.error = failed;
  if (!result.error.empty()) {
    span.status_message = result.error;
  } else if (failed) {
    span.status_message = "HTTP " + std::to_string(result.status);
  }
  span.attributes = {
      {"http.request.method", result.method},
      {"url.path", result.target.substr(0, result.target.find('?'))},
      {"server.address", target.to_string()},
      {"tunnel.request_id", result.request_id},
  };
  if (result.status != 0) {
    span.attributes.push_back({"http.response.status_code", std::int64_t{result.status}});
  }
  tracer.submit(std::move(span));
}

}  // namespace

void set_tracer(tracing::Tracer* tracer) {
  g_tracer.store(tracer);
}

asio::awaitable<ForwardResult> forward_http(std::shared_ptr<mux::Stream> stream,
                                            std::shared_ptr<LocalPool> pool,
                                            common::NetAddress target,
                                            protocol::ProxyProtocol proxy,
                                            ExchangeCapture* capture) {
  using namespace asio::experimental::awaitable_operators;
  const auto start = Clock::now();
  ForwardResult result;
  protocol::ConnectionAddresses addresses;
  std::string_view head = stream->open_payload();
  if (proxy != protocol::ProxyProtocol::kNone) head = protocol::take_address_line(head, addresses);
  tracing::Tracer* const tracer = g_tracer.load(std::memory_order_relaxed);
  std::optional<tracing::TraceContext> parent;
  RequestInfo request = read_request_head(head, result, tracer != nullptr ? &parent : nullptr);
  std::string traced_head;  // with tracing on: the head with the agent's traceparent
  if (tracer != nullptr && request.error.empty()) {
    tracing::RequestTrace& trace = result.trace;
    trace.trace_id = parent ? parent->trace_id : tracing::new_trace_id();
    if (parent) trace.parent_span_id = parent->span_id;
    trace.span_id = tracing::new_span_id();
    trace.flags = tracer->sample(parent, trace.trace_id) ? tracing::kSampledFlag : 0;
    trace.active = true;
    traced_head = with_traceparent(
        request.head, tracing::format_traceparent(trace.trace_id, trace.span_id, trace.flags),
        parent.has_value());
    request.head = traced_head;
    request.end = {};
  }
  if (capture != nullptr) {
    capture->opened = start;
    capture->request_raw.reserve(request.head.size() + request.end.size());
    capture->request_raw.append(request.head).append(request.end);
    capture->request_head_size = capture->request_raw.size();
    if (proxy != protocol::ProxyProtocol::kNone) capture->client = addresses.client;
  }
  const auto finish = [&] {
    result.elapsed = Clock::now() - start;
    if (capture != nullptr) capture->ended = start + result.elapsed;
    if (tracer != nullptr && result.trace.active) export_span(*tracer, result, target);
    return std::move(result);
  };
  if (!request.error.empty()) {
    result.error = "invalid request head from the core: " + request.error;
    result.bad_request = true;
    stream->reset(ErrorCode::kProtocolError, result.error);
    co_return finish();
  }

  const std::string where = target.to_string();
  for (int tries = 0; tries < 3; ++tries) {
    bool reused = false;
    // A request without a body is retried on a fresh connection if a reused one turns out
    // closed (at.retryable).
    auto acquired = co_await pool->acquire(target, reused, addresses.client);
    if (!acquired) {
      result.error = std::move(acquired).error().message;
      result.unreachable = true;
      stream->reset(ErrorCode::kLocalUnreachable, result.error);
      co_return finish();
    }
    tcp::socket& app = acquired.value();
    result.reused_connection = reused;
    std::string proxy_header;
    if (proxy != protocol::ProxyProtocol::kNone && !reused) {
      proxy_header = protocol::proxy_header(proxy, addresses.client, addresses.server);
    }
    const std::array<asio::const_buffer, 3> first_bytes{
        asio::buffer(proxy_header), asio::buffer(request.head), asio::buffer(request.end)};
    auto [hec, written] = co_await asio::async_write(app, first_bytes, kNoThrow);
    (void)written;
    if (hec) {
      if (reused) continue;  // a stale pooled connection: dial a fresh one
      result.error = "writing the request to " + where + ": " + hec.message();
      stream->reset(ErrorCode::kLocalError, result.error);
      co_return finish();
    }

    Attempt at(*stream, app, where, request);
    at.reused = reused;
    if (capture != nullptr) {
      capture->reset_response();
      at.capture = capture;
    }
    if (!proxy_header.empty()) at.proxy = proxy;
    if (stream->read_closed() && stream->buffered() == 0 && !stream->failed() && !request.upgrade) {
      // END_STREAM came with the head (a request without a body): nothing to upload, so no
      // parallel group for this request.
      at.request_done = true;
      co_await download(at);
    } else {
      co_await (upload(at) && download(at));
    }
    result.bytes_in = at.bytes_in;
    result.bytes_out = at.bytes_out;
    result.upgraded = at.upgraded;
    result.status = at.final_head ? at.status : 0;
    if (at.retryable) continue;
    if (!at.response_done) {
      result.error = at.error.empty() ? "the exchange did not complete" : at.error;
    }
    if (at.request_done && at.response_done && at.keep_alive && !request.upgrade && !at.trailing &&
        !at.failed && !at.stream_dead) {
      pool->release(target, std::move(app), addresses.client);
    }
    co_return finish();
  }
  result.error = "the local app at " + where + " keeps closing connections without responding";
  stream->reset(ErrorCode::kLocalError, result.error);
  co_return finish();
}

}  // namespace tunnel::agent

#include "mux/pump.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <vector>

namespace tunnel::mux {
namespace {

using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kBufferSize = 64 * 1024;

// The state both directions share.
struct Pump {
  tcp::socket& socket;
  Stream& stream;
  PumpHooks& hooks;
  const PumpOptions& options;
  PumpResult result;
  bool aborted = false;  // one side broke: the other stops without touching it again
  Clock::time_point last_activity = Clock::now();

  // The stream failed: reset the socket (the peer reset the stream) or just close it (the
  // session is gone).
  void abort_socket(const transport::error_code& ec) {
    if (aborted) return;
    aborted = true;
    boost::system::error_code ignored;
    if (stream.is_reset()) {
      result.outcome = "reset by " + std::string(options.peer) + " (" +
                       std::string(protocol::error_code_name(stream.reset_code())) +
                       (stream.reset_message().empty() ? "" : ": " + stream.reset_message()) + ")";
      socket.set_option(tcp::socket::linger(true, 0), ignored);
    } else {
      result.outcome = std::string(options.session) + " ended (" + ec.message() + ")";
      socket.shutdown(tcp::socket::shutdown_both, ignored);
    }
    socket.close(ignored);
  }
  // The socket failed: reset the stream.
  void abort_stream(std::string why) {
    if (aborted) return;
    aborted = true;
    result.socket_failed = true;
    stream.reset(options.reset_code, why);
    result.outcome = std::move(why);
    boost::system::error_code ignored;
    socket.close(ignored);
  }
};

asio::awaitable<void> socket_to_stream(Pump& p) {
  std::vector<std::uint8_t> buf(kBufferSize);
  transport::error_code ec;
  for (;;) {
    auto [rec, n] = co_await p.socket.async_read_some(asio::buffer(buf), kNoThrow);
    if (p.aborted) co_return;
    if (rec == asio::error::eof) {
      if (std::string refused = p.hooks.refuse_socket_eof(); !refused.empty()) {
        p.abort_stream(std::move(refused));
        co_return;
      }
      co_await p.stream.close_write(ec);  // the socket's FIN, passed on as END_STREAM
      if (ec) p.abort_socket(ec);
      co_return;
    }
    if (rec) {
      p.abort_stream(p.hooks.socket_failed(true, rec));
      co_return;
    }
    p.last_activity = Clock::now();
    const bool throttled = p.hooks.throttled();
    if (throttled) {
      co_await p.hooks.throttle(PumpDirection::kToStream, n);
      if (p.aborted) co_return;
    }
    co_await p.stream.write(std::span<const std::uint8_t>(buf.data(), n), ec);
    if (p.aborted) co_return;
    if (ec) {
      p.abort_socket(ec);
      co_return;
    }
    p.result.to_stream += n;
    p.hooks.forwarded(PumpDirection::kToStream, n);
    // A throttled pump keeps its 64 KiB steps.
    if (!throttled) grow_after_full_read(buf, n);
  }
}

asio::awaitable<void> stream_to_socket(Pump& p) {
  std::vector<std::uint8_t> buf(kBufferSize);
  transport::error_code ec;
  for (;;) {
    const std::size_t n = co_await p.stream.read_some(asio::buffer(buf), ec);
    if (p.aborted) co_return;
    if (ec) {
      p.abort_socket(ec);
      co_return;
    }
    if (n == 0) {  // END_STREAM: half-close towards the socket's peer
      boost::system::error_code ignored;
      p.socket.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    p.last_activity = Clock::now();
    if (p.hooks.throttled()) {
      co_await p.hooks.throttle(PumpDirection::kToSocket, n);
      if (p.aborted) co_return;
    }
    auto [wec, written] =
        co_await asio::async_write(p.socket, asio::buffer(buf.data(), n), kNoThrow);
    (void)written;
    if (p.aborted) co_return;
    if (wec) {
      p.abort_stream(p.hooks.socket_failed(false, wec));
      co_return;
    }
    p.result.to_socket += n;
    p.hooks.forwarded(PumpDirection::kToSocket, n);
  }
}

// Ends a connection with no byte read either way for the idle timeout. Runs until then: the
// pump's `||` cancels it when the connection ends first.
asio::awaitable<void> idle_watch(Pump& p) {
  const auto timeout = p.options.idle_timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_at(p.last_activity + timeout);
    auto [ec] = co_await timer.async_wait(kNoThrow);
    if (ec) co_return;  // cancelled: the pump finished
    if (Clock::now() - p.last_activity >= timeout) break;
  }
  if (!p.aborted) p.result.idle = true;
  p.abort_stream("idle for " + std::to_string(timeout.count() / 1000) + " s (" +
                 std::string(p.options.idle_setting) + ")");
  // Stay until cancelled, so the two directions (now failing) decide when the pump ends.
  timer.expires_at(Clock::time_point::max());
  co_await timer.async_wait(kNoThrow);
}

}  // namespace

asio::awaitable<void> PumpHooks::throttle(PumpDirection /*direction*/, std::size_t /*n*/) {
  co_return;
}

asio::awaitable<PumpResult> pump(tcp::socket& socket, Stream& stream, PumpHooks& hooks,
                                 const PumpOptions& options) {
  using namespace asio::experimental::awaitable_operators;
  Pump p{socket, stream, hooks, options, {}, false, Clock::now()};
  if (options.idle_timeout.count() > 0) {
    co_await ((socket_to_stream(p) && stream_to_socket(p)) || idle_watch(p));
  } else {
    co_await (socket_to_stream(p) && stream_to_socket(p));
  }
  co_return std::move(p.result);
}

}  // namespace tunnel::mux

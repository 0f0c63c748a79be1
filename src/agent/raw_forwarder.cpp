#include "agent/raw_forwarder.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <vector>

#include "agent/local_pool.hpp"
#include "mux/pump.hpp"
#include "protocol/udp_record.hpp"
#include "transport/udp.hpp"

namespace tunnel::agent {
namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::udp;
using protocol::ErrorCode;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kBufferSize = 64 * 1024;
// udp: datagrams taken from the app's socket per wake-up, without waiting, to go to the core as
// one write of at most about kBufferSize (under load one wake-up then serves a burst).
constexpr int kUdpBurst = 64;

std::string reset_text(const mux::Stream& stream, const transport::error_code& ec) {
  if (!stream.is_reset()) return "the session ended (" + ec.message() + ")";
  return "reset by the core (" + std::string(protocol::error_code_name(stream.reset_code())) +
         (stream.reset_message().empty() ? "" : ": " + stream.reset_message()) + ")";
}

// The agent's side of the pump: the socket is the local app's connection.
class AppPumpHooks final : public mux::PumpHooks {
 public:
  explicit AppPumpHooks(protocol::ProxyProtocol proxy) : proxy_(proxy) {}

  void forwarded(mux::PumpDirection direction, std::size_t n) override {
    (direction == mux::PumpDirection::kToSocket ? to_app_ : from_app_) += n;
  }
  std::string socket_failed(bool reading, const boost::system::error_code& ec) override {
    return std::string(reading ? "reading from" : "writing to") +
           " the local app: " + ec.message() + hint();
  }
  std::string refuse_socket_eof() override {
    if (hint().empty() || to_app_ != 0) return {};
    return "the local app closed the connection" + hint();
  }

 private:
  // An app that closes at once after a PROXY header, having sent nothing, most likely does
  // not accept PROXY headers (or not this version): say so.
  std::string hint() const {
    if (proxy_ == protocol::ProxyProtocol::kNone || from_app_ != 0) return "";
    const std::string version(protocol::proxy_protocol_name(proxy_));
    return " (it closed right after the PROXY " + version +
           " header: does the app accept PROXY protocol " + version + "?)";
  }

  protocol::ProxyProtocol proxy_;
  std::uint64_t to_app_ = 0;
  std::uint64_t from_app_ = 0;
};

}  // namespace

asio::awaitable<RawForwardResult> forward_tcp(std::shared_ptr<mux::Stream> stream,
                                              common::NetAddress target,
                                              protocol::ProxyProtocol proxy) {
  RawForwardResult result;
  const auto addresses = protocol::parse_addresses(stream->open_payload());
  result.client = addresses.client;
  const auto start = Clock::now();
  // A fresh connection, never pooled: nothing idles in this pool, so no decision reads its clock.
  RealTimeSource unused_clock;
  LocalPool dialer(co_await asio::this_coro::executor, unused_clock);
  bool reused = false;
  auto acquired = co_await dialer.acquire(target, reused);
  if (!acquired) {
    result.error = std::move(acquired).error().message;
    stream->reset(ErrorCode::kLocalUnreachable, result.error);
    result.elapsed = Clock::now() - start;
    co_return result;
  }
  tcp::socket& app = acquired.value();
  if (proxy != protocol::ProxyProtocol::kNone) {
    const std::string header = protocol::proxy_header(proxy, addresses.client, addresses.server);
    auto [wec, written] = co_await asio::async_write(app, asio::buffer(header), kNoThrow);
    (void)written;
    if (wec) {
      result.error = "writing the PROXY header to " + target.to_string() + ": " + wec.message();
      stream->reset(ErrorCode::kLocalError, result.error);
      result.elapsed = Clock::now() - start;
      co_return result;
    }
  }
  AppPumpHooks hooks(proxy);
  mux::PumpOptions options;
  options.reset_code = ErrorCode::kLocalError;
  options.peer = "the core";
  options.session = "the session";
  const mux::PumpResult pumped = co_await mux::pump(app, *stream, hooks, options);
  result.bytes_in = pumped.to_socket;
  result.bytes_out = pumped.to_stream;
  result.error = pumped.outcome;
  boost::system::error_code ignored;
  app.close(ignored);
  result.elapsed = Clock::now() - start;
  co_return result;
}

asio::awaitable<RawForwardResult> forward_udp(std::shared_ptr<mux::Stream> stream,
                                              common::NetAddress target) {
  using namespace asio::experimental::awaitable_operators;
  RawForwardResult result;
  result.client = protocol::parse_addresses(stream->open_payload()).client;
  const auto start = Clock::now();
  const auto executor = co_await asio::this_coro::executor;
  const std::string where = "dial udp " + target.to_string();
  udp::resolver resolver(executor);
  auto [rec, endpoints] =
      co_await resolver.async_resolve(target.host, std::to_string(target.port), kNoThrow);
  udp::socket app(executor);
  boost::system::error_code ec = rec;
  if (!ec && endpoints.empty()) ec = asio::error::host_not_found;
  if (!ec) {
    const udp::endpoint endpoint = *endpoints.begin();
    app.open(endpoint.protocol(), ec);
    if (!ec) app.connect(endpoint, ec);
    // Sends never wait (a full buffer drops the datagram, as a network would), and a burst is
    // read until the socket has no more.
    if (!ec) app.non_blocking(true, ec);
    if (!ec) transport::size_udp_buffers(app);
  }
  if (ec) {
    result.error = where + ": " + ec.message();
    stream->reset(ErrorCode::kLocalUnreachable, result.error);
    result.elapsed = Clock::now() - start;
    co_return result;
  }

  const auto from_core = [&]() -> asio::awaitable<void> {
    std::vector<std::uint8_t> buf(kBufferSize);
    protocol::UdpRecordReader reader;
    transport::error_code sec;
    for (;;) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), sec);
      if (sec) {
        // The core ends idle sessions with RESET NO_ERROR: a normal end.
        if (!stream->is_reset() || stream->reset_code() != ErrorCode::kNoError) {
          result.error = reset_text(*stream, sec);
        }
        co_return;
      }
      if (n == 0) co_return;
      reader.feed(std::span<const std::uint8_t>(buf.data(), n));
      std::span<const std::uint8_t> datagram;
      while (reader.next(datagram)) {
        // Refused (nothing listens yet) or a full buffer: the datagram is lost, as on a network.
        boost::system::error_code wec;
        app.send(asio::buffer(datagram.data(), datagram.size()), 0, wec);
        if (!wec) ++result.bytes_in;
      }
      if (!reader.error().empty()) {
        result.error = reader.error();
        stream->reset(ErrorCode::kProtocolError, reader.error());
        co_return;
      }
    }
  };
  const auto from_app = [&]() -> asio::awaitable<void> {
    std::vector<std::uint8_t> buf(protocol::kMaxDatagram + 1);
    std::vector<std::uint8_t> record;
    transport::error_code sec;
    bool drained = true;  // the last read found the socket empty: wait before the next
    for (;;) {
      if (drained) {
        auto [wec] = co_await app.async_wait(udp::socket::wait_read, kNoThrow);
        if (wec == asio::error::operation_aborted) co_return;
      } else {
        // The last burst hit its limit: let the worker's other work run (the session's writer
        // among it) before reading on, as the core's receive loop does.
        co_await asio::post(app.get_executor(), asio::use_awaitable);
      }
      drained = false;
      record.clear();
      std::uint64_t taken = 0;
      for (int burst = 0; burst < kUdpBurst && record.size() < kBufferSize; ++burst) {
        boost::system::error_code aec;
        const std::size_t n = app.receive(asio::buffer(buf), 0, aec);
        if (aec == asio::error::would_block) {
          drained = true;
          break;
        }
        if (aec || n > protocol::kMaxDatagram) continue;  // ICMP errors, oversized datagrams
        protocol::append_udp_record(record, std::span<const std::uint8_t>(buf.data(), n));
        ++taken;
      }
      if (taken == 0) continue;
      co_await stream->write(record, sec);
      if (sec) {
        result.error = reset_text(*stream, sec);
        co_return;
      }
      result.bytes_out += taken;
    }
  };
  co_await (from_core() || from_app());
  if (!stream->is_reset() && !stream->write_closed()) {
    transport::error_code ignored;
    co_await stream->close_write(ignored);
  }
  boost::system::error_code ignored;
  app.close(ignored);
  result.elapsed = Clock::now() - start;
  co_return result;
}

}  // namespace tunnel::agent

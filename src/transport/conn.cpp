#include "transport/conn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <type_traits>

namespace tunnel::transport {
namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

tcp::socket& lowest(tcp::socket& s) {
  return s;
}
tcp::socket& lowest(asio::ssl::stream<tcp::socket>& s) {
  return s.next_layer();
}

template <typename Stream>
class StreamConn final : public Conn {
 public:
  explicit StreamConn(Stream stream) : stream_(std::move(stream)) {
    peer_ = remote_string(lowest(stream_));
  }
  ~StreamConn() override { close(); }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, error_code& ec) override {
    auto [e, n] = co_await stream_.async_read_some(buf, kNoThrow);
    ec = e;
    if (ec == asio::ssl::error::stream_truncated)
      ec = asio::error::eof;  // peer skipped close_notify
    co_return ec ? 0 : n;
  }

  asio::awaitable<void> write(std::span<const asio::const_buffer> bufs, error_code& ec) override {
    auto [e, n] = co_await asio::async_write(stream_, bufs, kNoThrow);
    (void)n;
    ec = e;
  }

  asio::awaitable<void> shutdown_send() override {
    // No TLS close_notify: asio's async_shutdown waits for the peer's, which a dead peer never
    // sends. Both ends treat a TCP FIN after complete frames as a clean end.
    error_code ignored;
    lowest(stream_).shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }

  void close() override {
    error_code ignored;
    lowest(stream_).close(ignored);
  }

  asio::any_io_executor get_executor() override { return stream_.get_executor(); }
  tcp::socket& socket() override { return lowest(stream_); }
  bool is_tls() const override { return std::is_same_v<Stream, asio::ssl::stream<tcp::socket>>; }

 private:
  Stream stream_;
};

}  // namespace

std::unique_ptr<Conn> make_tcp_conn(tcp::socket socket) {
  return std::make_unique<StreamConn<tcp::socket>>(std::move(socket));
}

std::unique_ptr<Conn> make_tls_conn(asio::ssl::stream<tcp::socket> stream) {
  return std::make_unique<StreamConn<asio::ssl::stream<tcp::socket>>>(std::move(stream));
}

std::string endpoint_string(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6() && !address.to_v6().is_v4_mapped()) {
    return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  }
  const auto v4 = address.is_v6() ? asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6())
                                  : address.to_v4();
  return v4.to_string() + ":" + std::to_string(endpoint.port());
}

std::string remote_string(const tcp::socket& socket) {
  error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  return ec ? std::string("unknown") : endpoint_string(endpoint);
}

}  // namespace tunnel::transport

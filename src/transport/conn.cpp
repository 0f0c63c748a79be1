#include "transport/conn.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
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

template <typename Stream>
class StreamConn final : public Conn {
 public:
  explicit StreamConn(Stream stream) : stream_(std::move(stream)) {
    peer_ = remote_string(lowest(stream_));
  }
  ~StreamConn() override { close(); }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, error_code& ec) override {
    if (!read_deadline_.armed()) {
      auto [e, n] = co_await stream_.async_read_some(buf, kNoThrow);
      ec = e;
      co_return ec ? 0 : n;
    }
    if (read_deadline_.passed()) {
      ec = asio::error::timed_out;
      co_return 0;
    }
    auto [e, n] = co_await stream_.async_read_some(
        buf, asio::bind_cancellation_slot(read_deadline_.slot(), kNoThrow));
    ec = deadline_error(e);
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
  void move_to(const asio::any_io_executor& executor, error_code& ec) override {
    read_deadline_.reset();
    move_socket(lowest(stream_), executor, ec);
  }
  tcp::socket& socket() override { return lowest(stream_); }
  bool is_tls() const override { return false; }

 private:
  Stream stream_;
};

}  // namespace

std::unique_ptr<Conn> make_tcp_conn(tcp::socket socket) {
  return std::make_unique<StreamConn<tcp::socket>>(std::move(socket));
}

namespace {

// The most payload one TLS record carries. A write of several buffers that together fit in one
// record is joined first, so it makes one record, not several; a longer write is several
// records and system calls.
constexpr std::size_t kRecord = 16 * 1024;

// SSL_get_error() needs an empty error queue before each call it explains. ERR_clear_error()
// wipes all of the queue's slots every time; the queue is nearly always empty already, which
// ERR_peek_error() checks for less.
void clear_ssl_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

class SslConn final : public TlsConn {
 public:
  SslConn(tcp::socket socket, SSL_CTX* context)
      : socket_(std::move(socket)), ssl_(SSL_new(context)) {
    peer_ = remote_string(socket_);
    error_code ignored;
    socket_.non_blocking(true, ignored);
    if (ssl_ != nullptr) {
      SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle()));  // BIO_NOCLOSE: asio closes
      SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
  }
  ~SslConn() override {
    close();
    if (ssl_ != nullptr) SSL_free(ssl_);
  }

  SSL* native_handle() override { return ssl_; }

  asio::awaitable<error_code> handshake(bool server) override {
    error_code ec;
    if (ssl_ == nullptr)
      co_return error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
    server ? SSL_set_accept_state(ssl_) : SSL_set_connect_state(ssl_);
    for (;;) {
      clear_ssl_errors();
      const int ret = SSL_do_handshake(ssl_);
      if (ret == 1) co_return error_code{};
      if (!co_await wait_for(ret, ec)) co_return ec;
    }
  }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, error_code& ec) override {
    ec = {};
    if (buf.size() == 0) co_return 0;
    for (;;) {
      clear_ssl_errors();
      std::size_t n = 0;
      const int ret = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
      if (ret == 1) co_return n;
      if (!co_await wait_for(ret, ec, read_deadline_.armed())) {
        if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;  // no close_notify
        co_return 0;
      }
    }
  }

  asio::awaitable<void> write(std::span<const asio::const_buffer> bufs, error_code& ec) override {
    ec = {};
    std::size_t total = 0;
    for (const auto& b : bufs) total += b.size();
    if (bufs.size() > 1 && total < kRecord) {
      std::string joined;
      joined.reserve(total);
      for (const auto& b : bufs) joined.append(static_cast<const char*>(b.data()), b.size());
      co_await write_all(joined.data(), joined.size(), ec);
      co_return;
    }
    // OpenSSL writes each record with its own write(). While a write of several records is in
    // progress the socket is corked, so the kernel sends full-size segments (64 KiB on
    // loopback) rather than one per record: a quarter of the packets for the receiver's kernel
    // to process, and of the ACKs. Uncorking at the end sends the tail at once.
    const bool cork = total > kRecord;
    if (cork) set_cork(true);
    for (const auto& b : bufs) {
      co_await write_all(static_cast<const char*>(b.data()), b.size(), ec);
      if (ec) break;
    }
    if (cork) set_cork(false);
  }

  asio::awaitable<void> shutdown_send() override {
    // No close_notify (it would wait for the peer's); a FIN after complete frames is a clean end.
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }

  void close() override {
    error_code ignored;
    socket_.close(ignored);
  }

  asio::any_io_executor get_executor() override { return socket_.get_executor(); }
  void move_to(const asio::any_io_executor& executor, error_code& ec) override {
    read_deadline_.reset();
    move_socket(socket_, executor, ec);  // SSL_set_fd's descriptor stays valid
    if (!ec) socket_.non_blocking(true, ec);
  }
  tcp::socket& socket() override { return socket_; }
  bool is_tls() const override { return true; }

 private:
  // Best effort: a socket that refuses TCP_CORK still works, record by record.
  void set_cork(bool on) {
    const int v = on ? 1 : 0;
    ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_CORK, &v, sizeof v);
  }

  asio::awaitable<void> write_all(const char* data, std::size_t size, error_code& ec) {
    while (size > 0) {
      clear_ssl_errors();
      std::size_t n = 0;
      const int ret = SSL_write_ex(ssl_, data, size, &n);
      if (ret == 1) {
        data += n;
        size -= n;
        continue;
      }
      if (!co_await wait_for(ret, ec)) co_return;
    }
  }

  // After an OpenSSL call returned `ret`: waits for the readiness it asked for (true), or sets
  // `ec` to the failure (false).
  // `under_deadline`: a read, which the read deadline may cut short.
  asio::awaitable<bool> wait_for(int ret, error_code& ec, bool under_deadline = false) {
    const int err = SSL_get_error(ssl_, ret);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      const auto what =
          err == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write;
      if (!under_deadline) {
        auto [wec] = co_await socket_.async_wait(what, kNoThrow);
        ec = wec;
        co_return !wec;
      }
      if (read_deadline_.passed()) {
        ec = asio::error::timed_out;
        co_return false;
      }
      auto [wec] = co_await socket_.async_wait(
          what, asio::bind_cancellation_slot(read_deadline_.slot(), kNoThrow));
      ec = deadline_error(wec);
      co_return !ec;
    }
    ec = failure(err);
    ERR_clear_error();
    co_return false;
  }

  static error_code failure(int err) {
    if (err == SSL_ERROR_ZERO_RETURN) return asio::error::eof;  // close_notify
    const unsigned long code = ERR_peek_error();
    if (err == SSL_ERROR_SYSCALL && code == 0) {
      // EOF without close_notify, or a socket error.
      return errno == 0 ? error_code(asio::ssl::error::stream_truncated)
                        : error_code(errno, asio::error::get_system_category());
    }
    if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      return asio::ssl::error::stream_truncated;
    }
    if (code == 0) return asio::error::fault;
    return error_code(static_cast<int>(code), asio::error::get_ssl_category());
  }

  tcp::socket socket_;
  SSL* ssl_;
};

}  // namespace

std::unique_ptr<TlsConn> make_tls_conn(tcp::socket socket, asio::ssl::context& context) {
  return std::make_unique<SslConn>(std::move(socket), context.native_handle());
}

void Conn::move_socket(tcp::socket& socket, const asio::any_io_executor& executor, error_code& ec) {
  const auto protocol = socket.local_endpoint(ec).protocol();
  if (ec) return;
  const auto fd = socket.release(ec);
  if (ec) return;
  socket = tcp::socket(executor, protocol, fd);
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

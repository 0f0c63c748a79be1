#include "transport/conn.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <type_traits>
#include <vector>

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
// record is joined first, so it makes one record, not several.
constexpr std::size_t kRecord = 16 * 1024;
// What a TLS 1.3 record adds to its payload (5-byte header, content type, 16-byte tag), with
// room to spare: reserved per record ahead of a write so the queue grows once.
constexpr std::size_t kRecordOverhead = 64;
// A send queue that grew past this is freed once sent, so an idle connection keeps no more.
constexpr std::size_t kKeptQueue = 256;
// A long write sends its records whenever this much is queued: the queue stays small whatever
// the size of the write.
constexpr std::size_t kQueueLimit = 256 * 1024;

// SSL_get_error() needs an empty error queue before each call it explains. ERR_clear_error()
// wipes all of the queue's slots every time; the queue is nearly always empty already, which
// ERR_peek_error() checks for less.
void clear_ssl_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// OpenSSL's write side: a BIO that appends each TLS record to its connection's send queue and
// never blocks. The connection sends the queue itself, all of a write's records in one send()
// (see SslConn::write). Reads go through an ordinary socket BIO.
class SendQueue {
 public:
  static BIO* make(std::vector<char>* queue) {
    BIO* bio = BIO_new(method());
    if (bio != nullptr) BIO_set_data(bio, queue);
    return bio;
  }

 private:
  static const BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* created = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "send queue");
      BIO_meth_set_create(created, [](BIO* bio) {
        BIO_set_init(bio, 1);
        return 1;
      });
      BIO_meth_set_write_ex(created, append);
      BIO_meth_set_ctrl(created, control);
      return created;
    }();
    return m;
  }
  static int append(BIO* bio, const char* data, std::size_t size, std::size_t* written) {
    auto* queue = static_cast<std::vector<char>*>(BIO_get_data(bio));
    queue->insert(queue->end(), data, data + size);
    *written = size;
    return 1;
  }
  static long control(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:  // the connection sends the queue when the OpenSSL call returns
        return 1;
      case BIO_CTRL_WPENDING:
      case BIO_CTRL_PENDING:
        return static_cast<long>(static_cast<std::vector<char>*>(BIO_get_data(bio))->size());
      default:
        return 0;
    }
  }
};

class SslConn final : public TlsConn {
 public:
  SslConn(tcp::socket socket, SSL_CTX* context)
      : socket_(std::move(socket)), ssl_(SSL_new(context)) {
    peer_ = remote_string(socket_);
    error_code ignored;
    socket_.non_blocking(true, ignored);
    if (ssl_ == nullptr) return;
    BIO* in =
        BIO_new_socket(static_cast<int>(socket_.native_handle()), BIO_NOCLOSE);  // asio closes
    BIO* out = SendQueue::make(&queue_);
    if (in == nullptr || out == nullptr) {
      BIO_free(in);
      BIO_free(out);
      SSL_free(ssl_);
      ssl_ = nullptr;
      return;
    }
    SSL_set_bio(ssl_, in, out);
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
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
      if (ret == 1) {
        co_await send_queue(ec);  // our last flight
        trim_queue();
        co_return ec;
      }
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
      if (ret == 1) {
        // Reading can make records to send: the answer to the peer's TLS 1.3 KeyUpdate.
        co_await send_unless_sending(ec);
        co_return ec ? 0 : n;
      }
      if (!co_await wait_for(ret, ec, read_deadline_.armed())) {
        if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;  // no close_notify
        co_return 0;
      }
    }
  }

  // Encrypts every buffer into the send queue, then sends the queue: a write of several records
  // (a 64 KiB DATA frame and its header are five) costs one send() rather than one write() per
  // record, and leaves in full-size segments without corking the socket.
  asio::awaitable<void> write(std::span<const asio::const_buffer> bufs, error_code& ec) override {
    ec = {};
    std::size_t total = 0;
    for (const auto& b : bufs) total += b.size();
    const std::size_t expected = std::min(total, kQueueLimit);
    queue_.reserve(queue_.size() + expected + (expected / kRecord + bufs.size()) * kRecordOverhead);
    if (bufs.size() > 1 && total < kRecord) {
      std::string joined;
      joined.reserve(total);
      for (const auto& b : bufs) joined.append(static_cast<const char*>(b.data()), b.size());
      co_await encrypt(joined.data(), joined.size(), ec);
    } else {
      for (const auto& b : bufs) {
        co_await encrypt(static_cast<const char*>(b.data()), b.size(), ec);
        if (ec) break;
      }
    }
    if (!ec) co_await send_queue(ec);
    trim_queue();
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
    move_socket(socket_, executor, ec);  // the socket BIO's descriptor stays valid
    if (!ec) socket_.non_blocking(true, ec);
  }
  tcp::socket& socket() override { return socket_; }
  bool is_tls() const override { return true; }

 private:
  // Turns `size` bytes into records in the send queue. The queue never refuses, so OpenSSL
  // asks to wait only for reading (a TLS 1.2 renegotiation, which we refuse anyway).
  asio::awaitable<void> encrypt(const char* data, std::size_t size, error_code& ec) {
    while (size > 0) {
      clear_ssl_errors();
      std::size_t n = 0;
      const int ret = SSL_write_ex(ssl_, data, size, &n);
      if (ret == 1) {
        data += n;
        size -= n;
        if (queue_.size() - sent_ >= kQueueLimit) {
          co_await send_queue(ec);
          if (ec) co_return;
        }
        continue;
      }
      if (!co_await wait_for(ret, ec)) co_return;
    }
  }

  // Sends what the queue holds without waiting. False with `ec` set on a socket error.
  bool send_now(error_code& ec) {
    while (sent_ < queue_.size()) {
      const ssize_t n = ::send(socket_.native_handle(), queue_.data() + sent_,
                               queue_.size() - sent_, MSG_NOSIGNAL);
      if (n > 0) {
        sent_ += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return true;
      } else {
        ec = error_code(n < 0 ? errno : EPIPE, asio::error::get_system_category());
        return false;
      }
    }
    sent_ = 0;
    queue_.clear();
    return true;
  }

  // Frees the queue's buffer after a write that made it large: an idle connection keeps none.
  // Not between the parts of one long write, which would then grow a new buffer each time.
  void trim_queue() {
    if (queue_.empty() && queue_.capacity() > kKeptQueue) std::vector<char>().swap(queue_);
  }

  // Sends the whole queue, waiting for room in the socket as needed. The reader and the writer
  // may both be here at once: each send takes from the queue's head, so the bytes stay in order
  // and whoever finds the queue empty is done.
  asio::awaitable<void> send_queue(error_code& ec) {
    ++senders_;
    while (send_now(ec) && !queue_.empty()) {
      auto [wec] = co_await socket_.async_wait(tcp::socket::wait_write, kNoThrow);
      if (wec) {
        ec = wec;
        break;
      }
    }
    --senders_;
  }

  // The reader's records (a KeyUpdate answer) join the queue. When the writer is sending it
  // already, it carries them out too: the reader must not wait behind the writer's data for a
  // peer that may be waiting for the reader.
  asio::awaitable<void> send_unless_sending(error_code& ec) {
    if (senders_ == 0 && !queue_.empty()) co_await send_queue(ec);
  }

  // After an OpenSSL call returned `ret`: sends what the call queued, then waits for the
  // readiness it asked for (true), or sets `ec` to the failure (false).
  // `under_deadline`: a read, which the read deadline may cut short.
  asio::awaitable<bool> wait_for(int ret, error_code& ec, bool under_deadline = false) {
    const int err = SSL_get_error(ssl_, ret);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      ec = failure(err);
      ERR_clear_error();
      error_code ignored;
      send_now(ignored);  // the alert, if OpenSSL queued one; best effort
      co_return false;
    }
    // A handshake flight (or a KeyUpdate answer) must leave before we wait for the reply.
    co_await send_unless_sending(ec);
    if (ec) co_return false;
    const auto what = err == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write;
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
  // Records waiting to be sent, the first `sent_` bytes of them sent already. Filled by the
  // SendQueue BIO: keep before ssl_, which refers to it.
  std::vector<char> queue_;
  std::size_t sent_ = 0;
  int senders_ = 0;  // coroutines in send_queue()
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

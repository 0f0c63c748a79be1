// A byte stream between agent and core (or between a client and the core): TCP or TLS.
//
// Core and agent use one interface whatever the transport, as rathole's Transport does, so a new
// transport (WebSocket, QUIC) touches one file. A Conn lives on one executor; it is not
// thread-safe: one reader and one writer at a time.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "common/deadline.hpp"

namespace tunnel::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

class Conn {
 public:
  virtual ~Conn() = default;

  // Reads at least one byte. On EOF or error returns 0 and sets `ec` (asio::error::eof on a clean
  // end; asio::error::timed_out past the read deadline).
  virtual asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, error_code& ec) = 0;
  // As Go's SetReadDeadline: a read still waiting at `at`, or started after it, fails with
  // asio::error::timed_out. Stays in force until changed; time_point::max() (the start) = none.
  // Cheap enough for every request: see common/deadline.hpp.
  void set_read_deadline(std::chrono::steady_clock::time_point at) {
    read_deadline_.expires_at(get_executor(), at);
  }
  // Writes every byte of `bufs` (a gathered write) or sets `ec`.
  virtual asio::awaitable<void> write(std::span<const asio::const_buffer> bufs, error_code& ec) = 0;
  asio::awaitable<void> write(asio::const_buffer buf, error_code& ec) {
    const std::array<asio::const_buffer, 1> bufs{buf};
    co_await write(bufs, ec);
  }
  // Ends our sending side (TCP FIN). Best effort, never throws.
  virtual asio::awaitable<void> shutdown_send() = 0;
  // Aborts at once: pending operations complete with operation_aborted.
  virtual void close() = 0;

  virtual asio::any_io_executor get_executor() = 0;
  // Re-registers the socket with another executor's event loop (another worker thread); the
  // TLS state, if any, goes along. No operation may be pending; the read deadline is cleared.
  virtual void move_to(const asio::any_io_executor& executor, error_code& ec) = 0;
  virtual tcp::socket& socket() = 0;  // the TCP socket underneath (options, endpoints)
  virtual bool is_tls() const = 0;

  // "ip:port" of the remote end, fixed at creation so it stays valid after close().
  const std::string& peer() const { return peer_; }

 protected:
  // A read that ended with `ec`: operation_aborted because the deadline passed is timed_out.
  error_code deadline_error(const error_code& ec) const {
    return ec == asio::error::operation_aborted && read_deadline_.passed()
               ? error_code(asio::error::timed_out)
               : ec;
  }
  // Moves `socket` to `executor` (the file descriptor stays the same).
  static void move_socket(tcp::socket& socket, const asio::any_io_executor& executor,
                          error_code& ec);

  std::string peer_;
  Deadline read_deadline_;
};

std::unique_ptr<Conn> make_tcp_conn(tcp::socket socket);

// TLS where OpenSSL reads the (non-blocking) socket itself and the coroutine waits for readiness.
// Writes encrypt into a send queue that goes out in one send() per write (not one write() per
// 16 KiB record) and is freed when the write ends. No staging buffers or BIO pair for the
// connection's whole life (asio's ssl::stream holds about 70 KB of those), so an idle connection
// holds only OpenSSL's state (its record buffers are released while idle,
// SSL_MODE_RELEASE_BUFFERS).
class TlsConn : public Conn {
 public:
  // The OpenSSL object, to set SNI and verification parameters before the handshake.
  virtual SSL* native_handle() = 0;
  // Runs the TLS handshake as client or server. Returns the error (asio's ssl category for
  // OpenSSL errors, asio::ssl::error::stream_truncated when the peer closed), or success.
  virtual asio::awaitable<error_code> handshake(bool server) = 0;
};
std::unique_ptr<TlsConn> make_tls_conn(tcp::socket socket, asio::ssl::context& context);

// "1.2.3.4:80" or "[::1]:80"; "unknown" when the socket is not connected.
std::string endpoint_string(const tcp::endpoint& endpoint);
std::string remote_string(const tcp::socket& socket);

}  // namespace tunnel::transport

// Keep-alive connections from the agent to its local apps, one bounded idle list per target.
//
// A request takes an idle connection or dials a new one; after a clean keep-alive exchange the
// forwarder gives it back. Every idle connection is checked before reuse (one non-blocking
// MSG_PEEK): one the app closed is dropped, and so is one on which the app sent bytes nobody
// asked for (an extra response, say, with another visitor's Set-Cookie), since the next
// request's response would be read from those bytes. The latter is logged at debug. Idle
// connections expire after `idle_timeout`, at most `max_idle_per_target` are kept per target and
// `max_idle_total` in all, and everything lives on one executor (not thread-safe).
//
// A connection that began with a PROXY header belongs to one public client connection: such
// connections are pooled under (target, client address) and only reused for that client.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "common/net_address.hpp"
#include "common/result.hpp"
#include "common/time_source.hpp"

namespace tunnel::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class LocalPool {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::size_t max_idle_per_target = 256;  // as many as a busy app has concurrent requests
    std::size_t max_idle_total = 1024;      // across targets and clients; the oldest goes first
    Clock::duration idle_timeout = std::chrono::seconds(60);
    std::chrono::milliseconds connect_timeout{10'000};
  };

  // Idle connections expire by `time` (which must outlive the pool).
  LocalPool(asio::any_io_executor executor, TimeSource& time);
  LocalPool(asio::any_io_executor executor, TimeSource& time, Options options);

  // An open connection to `target` (TCP_NODELAY on): a pooled one (`reused` = true) or a new
  // one, or an error that names the address ("dial tcp 127.0.0.1:3000: Connection refused").
  // `client` (non-empty) restricts reuse to connections released for the same client.
  // A reused connection was open and silent when checked; the app may still close it at that
  // moment, so a caller should retry on a fresh connection when a reused one fails before
  // anything was answered.
  asio::awaitable<common::Result<tcp::socket>> acquire(const common::NetAddress& target,
                                                       bool& reused, std::string_view client = {});
  // Hands back a connection that finished a keep-alive exchange cleanly.
  void release(const common::NetAddress& target, tcp::socket socket, std::string_view client = {});

  // Closes idle connections older than the idle timeout (release and acquire also do it).
  void prune();
  void clear() {
    idle_.clear();
    total_ = 0;
  }
  std::size_t idle_count() const;
  std::size_t idle_count(const common::NetAddress& target, std::string_view client = {}) const;

  // What an idle connection looks like now, from a non-blocking MSG_PEEK read: kOpen when it
  // would block (nothing arrived, not closed); kClosed at EOF, on an error or when the socket
  // is not open; kUnsolicited when bytes arrived that no request asked for.
  enum class IdleState { kOpen, kClosed, kUnsolicited };
  static IdleState idle_state(tcp::socket& socket);
  static bool still_open(tcp::socket& socket) { return idle_state(socket) == IdleState::kOpen; }

 private:
  struct Idle {
    tcp::socket socket;
    Clock::time_point since;
  };
  static std::string key(const common::NetAddress& target, std::string_view client);
  void evict_oldest();

  asio::any_io_executor executor_;
  TimeSource& time_;
  Options options_;
  // key: target "host:port" (+ " for " client); newest at the back
  std::map<std::string, std::deque<Idle>> idle_;
  std::size_t total_ = 0;
};

}  // namespace tunnel::agent

// The inspector's listener: the JSON API of agent/inspector.hpp over HTTP/1.1 (Boost.Beast), on
// loopback. Bounded: at most kMaxConnections at once (event streams included), request heads of 16
// KiB, bodies of 1 MiB, 30 s per request; requests whose Host is not a loopback name are refused (a
// web page must not read the captures through DNS rebinding).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <cstddef>
#include <memory>
#include <string>

#include "agent/inspector.hpp"
#include "common/result.hpp"

namespace tunnel::agent {

class InspectorServer {
 public:
  static constexpr std::size_t kMaxConnections = 32;
  static constexpr int kPortsTried = 100;  // 4040 taken: 4041, 4042, ...

  InspectorServer(boost::asio::any_io_executor executor, Inspector& inspector);

  // Binds `address` ("HOST:PORT", HOST a loopback address or "localhost", or any address once a
  // password is set); when the port is
  // taken, the next ones (up to kPortsTried). Port 0: any free port. The error names the problem
  // when nothing could be bound or the address is not loopback.
  common::Status listen(const std::string& address);
  // Every request must then carry it (Basic with any user name, or Bearer); needed before
  // listen() on an address that is not loopback. "" = none.
  void set_password(std::string password) { password_ = std::move(password); }
  // "127.0.0.1:4040" once listening.
  const std::string& address() const { return address_; }

  boost::asio::awaitable<void> run();
  void stop();

 private:
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);
  // GET /api/requests/http/stream: Server-Sent Events until the client goes, its queue
  // overflows (agent/inspector_events.hpp) or a write takes over kWriteTimeout.
  boost::asio::awaitable<void> stream_events(boost::beast::tcp_stream& stream);
  // POST /api/requests/http: sends the plan to the app, keeps the exchange, answers with it.
  boost::asio::awaitable<ApiResponse> replay(ReplayPlan plan);

  boost::asio::any_io_executor executor_;
  Inspector& inspector_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::string address_;
  std::string password_;
  // Shared with each connection's coroutine: frames left when the io_context goes away are
  // destroyed after this server.
  std::shared_ptr<std::size_t> connections_ = std::make_shared<std::size_t>(0);
};

}  // namespace tunnel::agent

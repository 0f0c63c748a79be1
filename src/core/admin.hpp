// The admin listener: /healthz, /readyz, /metrics, /debug/log (the log level at run time, issue
// 18), /debug/connections (agents, sessions, streams; issue 18) and the REST API under /api/v1
// (issue 17).
// Bound to loopback by default and served by its own acceptor on the server's control thread
// (one thread, its own io_context), so no tunnel hostname can ever reach it and the store the
// API uses never blocks a data-plane worker.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "core/agents/context.hpp"
#include "observability/log.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {

namespace api {
class Api;
}
class AgentGateway;

class AdminServer {
 public:
  explicit AdminServer(CoreContext& context) : context_(context) {}
  // The API served under /api/v1; nullptr (the default) = /api/v1 answers 404. Its calls run on
  // the thread that runs serve().
  void set_api(api::Api* api, std::size_t max_body) {
    api_ = api;
    max_body_ = max_body;
  }
  // The run-time log level behind /debug/log; nullptr (the default) = /debug/log answers 404.
  void set_log_level(observability::LogLevelControl* control) { log_level_ = control; }
  // The agents behind /debug/connections; nullptr (the default) = /debug/connections answers 404.
  void set_gateway(const AgentGateway* gateway) { gateway_ = gateway; }
  asio::awaitable<void> serve(transport::tcp::socket socket);
  // The API listener (listen.api): TLS (handshake within limits.header_timeout; a client that
  // speaks plain HTTP gets a 400 saying so), then /api/v1 only: every other path answers 404.
  // Bounded as the admin listener is, with its own 64 connections.
  asio::awaitable<void> serve_api(transport::tcp::socket socket, asio::ssl::context& tls);

 private:
  asio::awaitable<void> serve_conn(std::unique_ptr<transport::Conn> conn, bool api_only);
  std::string respond(const std::string& method, const std::string& target, bool& close,
                      const std::string& peer);
  std::string debug_log(const std::string& method, const std::string& target,
                        const std::string& peer);
  // GET /debug/connections[?agent=ID&limit=N&oldest=N] (core/inspect.hpp).
  asio::awaitable<std::string> debug_connections(const std::string& target);
  CoreContext& context_;
  api::Api* api_ = nullptr;
  observability::LogLevelControl* log_level_ = nullptr;
  const AgentGateway* gateway_ = nullptr;
  std::size_t max_body_ = 1024 * 1024;
  std::size_t connections_ = 0;      // served now (all on one thread)
  std::size_t api_connections_ = 0;  // on the API listener
};

}  // namespace tunnel::core

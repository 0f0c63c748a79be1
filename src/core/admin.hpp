// The admin listener: /healthz, /readyz, /metrics and the REST API under /api/v1 (issue 17).
// Bound to loopback by default and served by its own acceptor on the server's control thread
// (one thread, its own io_context), so no tunnel hostname can ever reach it and the store the
// API uses never blocks a data-plane worker.
#pragma once

#include <memory>

#include "core/agents/context.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {

namespace api {
class Api;
}

class AdminServer {
 public:
  explicit AdminServer(CoreContext& context) : context_(context) {}
  // The API served under /api/v1; nullptr (the default) = /api/v1 answers 404. Its calls run on
  // the thread that runs serve().
  void set_api(api::Api* api, std::size_t max_body) {
    api_ = api;
    max_body_ = max_body;
  }
  asio::awaitable<void> serve(transport::tcp::socket socket);

 private:
  std::string respond(const std::string& method, const std::string& target, bool& close);
  CoreContext& context_;
  api::Api* api_ = nullptr;
  std::size_t max_body_ = 1024 * 1024;
  std::size_t connections_ = 0;  // served now (all on one thread)
};

}  // namespace tunnel::core

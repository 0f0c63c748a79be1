// The admin listener: /healthz, /readyz, /metrics. Bound to loopback by default and served by
// its own acceptor, so no tunnel hostname can ever reach it.
#pragma once

#include <memory>

#include "core/agents/context.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {

class AdminServer {
 public:
  explicit AdminServer(CoreContext& context) : context_(context) {}
  asio::awaitable<void> serve(transport::tcp::socket socket);

 private:
  std::string respond(const std::string& method, const std::string& target, bool& close);
  CoreContext& context_;
};

}  // namespace tunnel::core

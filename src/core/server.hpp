// The core process: worker threads (one event loop each), the listeners on every worker
// (SO_REUSEPORT, so the kernel spreads connections), the admin listener, signals and drain.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "core/admin.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/agents/context.hpp"
#include "core/agents/ownership_store.hpp"
#include "core/control/config.hpp"
#include "core/edge/http_front.hpp"
#include "observability/log.hpp"

namespace tunnel::core {

class Server {
 public:
  explicit Server(Config config);
  ~Server();

  // Prepares the data dir and TLS, binds every listener. The error names what failed (e.g.
  // "listen on 127.0.0.1:8080: Address already in use").
  common::Status start();
  // Runs until SIGTERM/SIGINT and the drain that follows; returns the exit code.
  int run();
  // Starts a graceful drain (thread-safe): stop accepting, GOAWAY, finish in-flight requests.
  void shutdown();

  // What start() bound (ports resolved when 0 was asked for).
  std::uint16_t agent_port() const { return agent_port_; }
  std::uint16_t http_port() const { return http_port_; }
  std::uint16_t admin_port() const { return admin_port_; }
  std::uint16_t api_port() const { return api_port_; }
  const std::string& banner() const { return banner_; }

 private:
  struct Worker;
  struct Control;
  // On the control thread's io_context when `control` is set (one acceptor), else on the
  // workers'.
  common::Status bind_all(const std::string& address, const char* what,
                          std::vector<asio::ip::tcp::acceptor*>& out, std::uint16_t& port,
                          bool every_worker, Control* control = nullptr);
  // Opens the store (migrated, the file's accounts synced) and, when the admin listener is on,
  // keeps it for the API: the operator's key on first start (<data_dir>/admin.key), the Api.
  common::Status open_control();
  common::Status setup_tls();
  // Loads the previous run's ownership into the registry (see ownership_store.hpp) and says
  // each account's agent limit once.
  void restore_ownership();
  asio::awaitable<void> drain();

  RealTimeSource time_;  // the core's clock: every part gets it by reference, via context_
  // The log level at run time: SIGUSR1 and the admin listener's /debug/log.
  observability::LogLevelControl log_level_{time_};
  std::unique_ptr<CoreContext> context_;
  std::unique_ptr<AgentGateway> gateway_;
  std::unique_ptr<HttpFront> front_;
  std::unique_ptr<AdminServer> admin_;
  // The control thread (its own io_context): the admin listener, the store and the API.
  std::unique_ptr<Control> control_;
  std::shared_ptr<OwnershipStore> ownership_;  // who owns which name, across restarts
  std::vector<std::unique_ptr<Worker>> workers_;
  std::shared_ptr<asio::ssl::context> agent_tls_;
  std::shared_ptr<asio::ssl::context> public_tls_;
  std::shared_ptr<asio::ssl::context> api_tls_;  // listen.api: tls.api_cert, else agent_tls_
  std::string agent_fingerprint_;                // sha256 of the agent listener's certificate
  std::vector<std::shared_ptr<asio::ssl::context>> sni_contexts_;
  std::vector<std::pair<std::vector<std::string>, std::size_t>> sni_names_;
  std::uint16_t agent_port_ = 0, agent_plain_port_ = 0, http_port_ = 0, https_port_ = 0,
                admin_port_ = 0, api_port_ = 0;
  std::string banner_;
  bool shutting_down_ = false;
};

}  // namespace tunnel::core

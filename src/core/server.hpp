// The core process: worker threads (one event loop each), the listeners on every worker
// (SO_REUSEPORT, so the kernel spreads connections), the admin listener, signals and drain.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/basic_seq_packet_socket.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/basic_endpoint.hpp>
#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <memory>
#include <mutex>
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
#include "core/edge/recording.hpp"
#include "core/upgrade.hpp"
#include "observability/log.hpp"

namespace tunnel::core {

// SOCK_SEQPACKET over AF_UNIX as an asio protocol (Boost 1.81 has only stream and datagram):
// the control socket keeps message boundaries.
class UnixSeqPacket {
 public:
  using endpoint = asio::local::basic_endpoint<UnixSeqPacket>;
  using socket = asio::basic_seq_packet_socket<UnixSeqPacket>;
  using acceptor = asio::basic_socket_acceptor<UnixSeqPacket>;
  int type() const noexcept { return SOCK_SEQPACKET; }
  int protocol() const noexcept { return 0; }
  int family() const noexcept { return AF_UNIX; }
};

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
  // The command line this process was started with: an upgrade starts the new binary with it.
  void set_command_line(std::vector<std::string> argv) { argv_ = std::move(argv); }
  // SIGHUP reads the configuration again with `reader` (the file, the environment and the
  // flags, as at start); `file` is the configuration file ("" = none).
  using ConfigReader = std::function<common::Result<Config>()>;
  void set_config_reader(ConfigReader reader, std::string file);

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
  // Adopts the sockets of `role` handed over by the process this one replaces (upgrade.hpp)
  // before it binds any.
  common::Status bind_all(const std::string& address, const char* what, upgrade::Role role,
                          std::vector<asio::ip::tcp::acceptor*>& out, std::uint16_t& port,
                          bool every_worker, Control* control = nullptr);
  // The control socket <data_dir>/control.sock (`tunnel-core upgrade`), adopted or bound.
  void open_control_socket();
  asio::awaitable<void> serve_control_socket();
  // Runs an upgrade on its own thread (one at a time); `client` (or -1) gets the answer.
  void start_upgrade(int client, std::string binary);
  // Blocking: starts the new binary, hands it the sockets, waits for its "ready". The new
  // process's pid, or why it failed.
  common::Result<int> perform_upgrade(std::string binary);
  // The new process is serving: stop accepting, GOAWAY, drain, exit (on worker 0).
  void hand_over();
  asio::awaitable<void> drain_after_handover();
  // A tcp/udp tunnel port the old process handed over, or -1.
  int take_inherited_port(PortProtocol protocol, std::uint16_t port);
  // Opens the store (migrated, the file's accounts synced) and, when the admin listener is on,
  // keeps it for the API: the operator's key on first start (<data_dir>/admin.key), the Api.
  common::Status open_control();
  common::Status setup_tls();
  // Every TLS context of the listeners, from the configuration's files (the SNI callback of
  // the public one points at the returned object).
  struct Tls;
  common::Result<std::shared_ptr<Tls>> load_tls(const Config& config) const;
  // SIGHUP: certificates read again and swapped for new handshakes; configuration keys that
  // need a restart are named in the log. On worker 0.
  void reload();
  // Loads the previous run's ownership into the registry (see ownership_store.hpp) and says
  // each account's agent limit once.
  void restore_ownership();
  asio::awaitable<void> drain();

  RealTimeSource time_;  // the core's clock: every part gets it by reference, via context_
  // The log level at run time: SIGUSR1 and the admin listener's /debug/log.
  observability::LogLevelControl log_level_{time_};
  std::unique_ptr<CoreContext> context_;
  // The writer of recorded tunnels (docs/inspector.md#recording-on-the-core); null when no
  // recording rule is configured. The filters share it.
  std::shared_ptr<Recorder> recorder_;
  std::unique_ptr<AgentGateway> gateway_;
  std::unique_ptr<HttpFront> front_;
  std::unique_ptr<AdminServer> admin_;
  // The control thread (its own io_context): the admin listener, the store and the API.
  std::unique_ptr<Control> control_;
  std::shared_ptr<OwnershipStore> ownership_;  // who owns which name, across restarts
  std::vector<std::unique_ptr<Worker>> workers_;
  // The TLS contexts new handshakes use; SIGHUP replaces them (a connection keeps the ones it
  // began with).
  std::atomic<std::shared_ptr<const Tls>> tls_;
  std::string agent_fingerprint_;  // sha256 of the agent listener's certificate, at start
  std::string generated_cert_, generated_key_;  // <data_dir>/tls.crt, tls.key
  ConfigReader read_config_;
  std::string config_file_, config_text_;  // the file as it was read at start
  std::uint16_t agent_port_ = 0, agent_plain_port_ = 0, http_port_ = 0, https_port_ = 0,
                admin_port_ = 0, api_port_ = 0;
  std::string banner_;
  bool shutting_down_ = false;

  // Upgrades (upgrade.hpp).
  std::vector<std::string> argv_;
  std::string self_exe_;                   // this binary's path at start: the default new binary
  std::vector<upgrade::Entry> inherited_;  // handed over by the old process, not yet adopted
  int handoff_fd_ = -1;                    // where to say "ready" to the old process
  std::vector<upgrade::Entry> listening_;  // this process's listeners (fds owned by acceptors)
  struct OpenPort {
    PortProtocol protocol;
    std::uint16_t port;
    std::weak_ptr<PortListener> listener;
    int fd;
  };
  std::mutex ports_mutex_;
  std::vector<OpenPort> open_ports_;             // tcp/udp tunnel ports, for an upgrade's hand-off
  std::vector<upgrade::Entry> inherited_ports_;  // under ports_mutex_
  std::unique_ptr<UnixSeqPacket::acceptor> control_socket_;
  std::string control_path_;
  std::atomic<bool> upgrading_{false};
  std::thread upgrade_thread_;
  bool handed_over_ = false;  // worker 0
};

}  // namespace tunnel::core

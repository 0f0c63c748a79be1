#include "core/server.hpp"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/heap_trim.hpp"
#include "common/loop_lag.hpp"
#include "common/net_address.hpp"
#include "core/control/api/api.hpp"
#include "core/control/auth.hpp"
#include "core/control/data_dir.hpp"
#include "core/control/store/change_follower.hpp"
#include "core/control/store/store.hpp"
#include "core/edge/access.hpp"
#include "core/edge/conn_pipeline.hpp"
#include "core/edge/http_filters.hpp"
#include "core/edge/tcp_tunnel.hpp"
#include "core/edge/udp_tunnel.hpp"
#include "core/live_control.hpp"
#include "core/reload.hpp"
#include "core/store_ownership.hpp"
#include "transport/accept.hpp"
#include "transport/tls.hpp"

namespace tunnel::core {
namespace {

using asio::ip::tcp;
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::milliseconds kOwnershipSaveInterval{1000};
constexpr std::chrono::milliseconds kLoopLagInterval{250};
constexpr std::chrono::milliseconds kTraceFlushGrace{2000};  // spans still queued at exit
// Upgrades: how long the new process may take to receive the sockets, and to be ready.
constexpr std::chrono::milliseconds kHandoffTimeout{10'000};
constexpr std::chrono::milliseconds kUpgradeReadyTimeout{30'000};
// After the hand-over, before GOAWAY: requests accepted just before still open their streams.
constexpr std::chrono::milliseconds kGoAwayDelay{250};
// How long the new process holds requests for names whose agents have not moved over yet, and
// keeps tcp/udp tunnel ports of the old process that no agent claimed.
constexpr std::chrono::milliseconds kNameHold{5'000};
constexpr std::chrono::milliseconds kUnclaimedPortHold{30'000};

// Logs what escapes a detached coroutine instead of losing it.
void log_failure(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("connection handler failed: {}", e.what());
  }
}

// Serves each connection accepted on `acceptor` with `handler(socket)`, a coroutine of its own.
template <typename Handler>
asio::awaitable<void> serve_each(tcp::acceptor& acceptor, std::string_view what, Handler handler) {
  co_await transport::accept_loop(acceptor, what, [&](tcp::socket socket) {
    asio::co_spawn(acceptor.get_executor(), handler(std::move(socket)), log_failure);
  });
}

// True for listen addresses that only this machine can reach.
bool is_loopback(const std::string& address) {
  auto parsed = common::parse_listen_address(address);
  if (!parsed) return false;
  const std::string& host = parsed.value().host;
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host, ec);
  return host == "localhost" || (!ec && ip.is_loopback());
}

bool sni_match(const std::string& pattern, const std::string& host) {
  if (pattern.starts_with("*.")) {
    const std::string suffix = pattern.substr(1);
    return host.size() > suffix.size() && host.ends_with(suffix) &&
           host.find('.') == host.size() - suffix.size();
  }
  return pattern == host;
}

// One line per address whose failed AUTHs were not all logged, when its log interval ends;
// one line for the agent connections closed over a handshake cap and not logged.
asio::awaitable<void> log_auth_failures(AuthLimiter& limiter, HandshakeLimiter& handshakes,
                                        TimeSource& time) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(std::chrono::seconds(10));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    for (const auto& s : limiter.take_summaries(time.monotonic_time())) {
      spdlog::warn("agent {}: {} more failed authentications in the last minute", s.address,
                   s.failures);
    }
    if (const auto h = handshakes.take_summary(time.monotonic_time()); h.global + h.address > 0) {
      spdlog::warn(
          "agent listener: {} more connections closed before TLS in the last minute ({} over "
          "limits.max_agent_handshakes_per_address, {} over limits.max_agent_handshakes; the "
          "last from {})",
          h.global + h.address, h.address, h.global, h.last_address);
    }
  }
}

// Puts the configured log level back once a temporary one's time is up.
asio::awaitable<void> expire_log_level(observability::LogLevelControl& control) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    control.expire();
  }
}

}  // namespace

struct Server::Worker {
  asio::io_context io{1};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::thread thread;
};

// The control plane's thread: the admin listener (health, metrics, the API) and the store,
// which only this thread uses, so a slow query never holds up a data-plane worker.
struct Server::Control {
  asio::io_context io{1};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::thread thread;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<api::ControlHooks> hooks;
  LiveControl* live = nullptr;  // the hooks, as what they are
  std::unique_ptr<api::Api> api;

  void stop() {
    io.stop();
    if (thread.joinable()) thread.join();
  }
};

Server::Server(Config config) {
  context_ =
      std::make_unique<CoreContext>(std::move(config), observability::default_registry(), time_);
  if (const RecordingConfig& recording = context_->config.recording; !recording.tunnels.empty()) {
    Recorder::Options options;
    options.root = context_->config.data_dir + "/recordings";
    options.queue_entries = recording.queue;
    recorder_ =
        std::make_shared<Recorder>(std::move(options), time_, observability::default_registry());
  }
  gateway_ = std::make_unique<AgentGateway>(
      *context_,
      [this, context = context_.get(), filters = port_listener_filters(context_->config)](
          PortProtocol protocol, asio::any_io_executor executor, std::uint16_t port) {
        const std::string& host = context->config.listen.tunnels_host;
        const int adopt = take_inherited_port(protocol, port);  // -1 unless after an upgrade
        int fd = -1;
        auto opened =
            protocol == PortProtocol::kUdp
                ? open_udp_port(*context, std::move(executor), host, port, filters, adopt, &fd)
                : open_tcp_port(*context, std::move(executor), host, port, filters, adopt, &fd);
        if (opened) {
          // Kept for an upgrade's hand-off; forgotten ones are dropped here.
          std::lock_guard lock(ports_mutex_);
          std::erase_if(open_ports_, [](const OpenPort& p) { return p.listener.expired(); });
          open_ports_.push_back({protocol, port, opened.value(), fd});
        }
        return opened;
      },
      [context = context_.get(), recorder = recorder_](
          const protocol::TunnelRequest& request, const Account& account,
          const std::shared_ptr<AccountQuota>& quota, const std::string& host) {
        const AccessScope access{context->config, account, context->time};
        std::shared_ptr<HttpFilter> recording;
        if (recorder) {
          if (const RecordingRule* rule = context->config.recording.rule_for(host)) {
            recording = std::make_shared<RecordingFilter>(recorder, recorder->tunnel(host, *rule));
          }
        }
        return tunnel_filters(request, quota, &access, std::move(recording));
      },
      [context = context_.get()](const protocol::TunnelRequest& request, const Account& account,
                                 const std::shared_ptr<AccountQuota>& quota) {
        const AccessScope access{context->config, account, context->time};
        return tunnel_connection_filters(request, quota, &access);
      });
  if (const TracingConfig& tracing = context_->config.tracing; !tracing.otlp_endpoint.empty()) {
    // The endpoint was checked with the configuration.
    tracing::TracerOptions options;
    options.endpoint = tracing.otlp_endpoint;
    options.service_name = "tunnel-core";
    options.sample_ratio = tracing.sample_ratio;
    context_->tracer =
        tracing::Tracer::start(std::move(options), observability::default_registry()).value();
    spdlog::info("tracing: spans to {} (sample ratio {})", tracing.otlp_endpoint,
                 tracing.sample_ratio);
  }
  front_ = std::make_unique<HttpFront>(*context_);
  admin_ = std::make_unique<AdminServer>(*context_);
  admin_->set_log_level(&log_level_);
  admin_->set_gateway(gateway_.get());
  std::uint32_t n = context_->config.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (std::uint32_t i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());
  context_->workers = n;
}

Server::~Server() {
  if (upgrade_thread_.joinable()) upgrade_thread_.join();
  if (control_) control_->stop();
  for (auto& w : workers_) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

common::Status Server::bind_all(const std::string& address, const char* what, upgrade::Role role,
                                std::vector<tcp::acceptor*>& out, std::uint16_t& port,
                                bool every_worker, Control* control) {
  auto parsed = common::parse_listen_address(address);
  if (!parsed) return common::fail(std::string(what) + " address: " + parsed.error().message);
  port = parsed.value().port;
  const auto keep = [&](std::unique_ptr<tcp::acceptor> acceptor, std::size_t i) {
    port = acceptor->local_endpoint().port();  // the others bind the port the first one got
    listening_.push_back({role, port, acceptor->native_handle()});
    out.push_back(acceptor.get());
    (control != nullptr ? control->acceptors : workers_[i % workers_.size()]->acceptors)
        .push_back(std::move(acceptor));
  };
  // After an upgrade: the old process's sockets for this listener (same role and port), every
  // one of them (one per old worker: a socket closed with connections in its queue would lose
  // them), spread over the workers.
  std::size_t adopted = 0;
  for (auto& entry : inherited_) {
    if (entry.role != role || entry.fd < 0 || (port != 0 && entry.port != port)) continue;
    if (adopted > 0 && !every_worker) break;
    const std::size_t i = adopted++;
    asio::io_context& io = control != nullptr ? control->io : workers_[i % workers_.size()]->io;
    auto acceptor = std::make_unique<tcp::acceptor>(io);
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    ::getsockname(entry.fd, reinterpret_cast<sockaddr*>(&bound), &len);
    boost::system::error_code ec;
    acceptor->assign(bound.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), entry.fd, ec);
    if (ec) {
      return common::fail(std::string("listen on ") + address + " (" + what +
                          "): the socket handed over: " + ec.message());
    }
    entry.fd = -1;
    keep(std::move(acceptor), i);
  }
  if (adopted > 0)
    spdlog::info("{}: took over {} listening socket{} on port {}", what, adopted,
                 adopted == 1 ? "" : "s", port);
  const std::size_t count = every_worker && control == nullptr ? workers_.size() : 1;
  for (std::size_t i = adopted; i < count; ++i) {
    asio::io_context& io = control != nullptr ? control->io : workers_[i]->io;
    auto acceptor = std::make_unique<tcp::acceptor>(io);
    boost::system::error_code ec;
    tcp::endpoint endpoint;
    if (parsed.value().host.empty()) {
      endpoint = tcp::endpoint(tcp::v6(), port);
    } else {
      auto ip = asio::ip::make_address(parsed.value().host, ec);
      if (ec) {
        tcp::resolver resolver(io);
        auto results = resolver.resolve(parsed.value().host, std::to_string(port), ec);
        if (ec || results.empty()) {
          return common::fail(std::string("listen on ") + address + " (" + what +
                              "): cannot resolve " + parsed.value().host);
        }
        endpoint = *results.begin();
      } else {
        endpoint = tcp::endpoint(ip, port);
      }
    }
    acceptor->open(endpoint.protocol(), ec);
    if (ec && parsed.value().host.empty()) {  // no IPv6 here: all IPv4 interfaces
      endpoint = tcp::endpoint(tcp::v4(), port);
      acceptor->open(endpoint.protocol(), ec);
    }
    if (!ec && endpoint.protocol() == tcp::v6() && parsed.value().host.empty()) {
      acceptor->set_option(asio::ip::v6_only(false), ec);
    }
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && every_worker) acceptor->set_option(ReusePort(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return common::fail(std::string("listen on ") + address + " (" + what + "): " + ec.message());
    }
    keep(std::move(acceptor), i);
  }
  return common::success();
}

common::Status Server::setup_tls() {
  Config& config = context_->config;
  std::string cert = config.tls.cert;
  auto data = ensure_data_dir(config.data_dir, config.domain, config.tls.cert.empty());
  if (!data) return common::fail("data dir: " + data.error().message);
  for (const auto& warning : data.value().warnings) spdlog::warn("{}", warning);
  if (struct stat st{}; !config.auth.jwt_secret_file.empty() &&
                        ::stat(config.auth.jwt_secret_file.c_str(), &st) == 0 &&
                        (st.st_mode & 077) != 0) {
    spdlog::warn(
        "auth.jwt_secret_file {} has mode {:04o}, readable by other users; run: chmod 600 {}",
        config.auth.jwt_secret_file, st.st_mode & 0777, config.auth.jwt_secret_file);
  }
  if (data.value().cert_created) {
    spdlog::info("generated a self-signed certificate {} (sha256 {})", data.value().cert_path,
                 data.value().fingerprint);
  }
  if (cert.empty()) cert = data.value().cert_path;
  generated_cert_ = data.value().cert_path;
  generated_key_ = data.value().key_path;
  auto tls = load_tls(config);
  if (!tls) return tls.error();
  tls_.store(std::move(tls).value());

  // The agent command to print: the generated token works when no account was configured.
  // In the environment, not as --token: a command line shows in `ps` to every local user.
  std::string token_hint = "TUNNEL_TOKEN='<your token>' ";
  bool uses_generated_token = false;
  if (config.accounts.empty()) {
    // The generated token is 43 characters; one written into the file by hand may be weak.
    if (auto strong = check_token_strength(data.value().token); !strong) {
      return common::fail(data.value().token_path + ": the token of account \"default\" is " +
                          strong.error().message + "; tokens must be at least " +
                          std::to_string(kMinTokenLength) +
                          " characters (remove the file to generate a strong one)");
    }
    add_default_account_tokens(config, {data.value().token});
    token_hint = "TUNNEL_TOKEN=" + data.value().token + " ";
    uses_generated_token = true;
    // It copied the accounts before the token existed.
    context_->auth = Authenticator(config, [this] { return unix_seconds(time_); });
  }
  const std::string fingerprint = cert_fingerprint_sha256(cert);
  agent_fingerprint_ = fingerprint;

  std::ostringstream banner;
  banner << "agent listener: TLS certificate sha256 " << fingerprint << "\n"
         << "run an agent on this machine:\n"
         << "  " << (uses_generated_token ? "" : token_hint)
         << "tunnel-agent http 3000 --subdomain app{local_server}"
         << (config.data_dir == "./tunnel-data" ? "" : " --data-dir " + config.data_dir)
         << (config.tls.cert.empty() ? "" : " --fingerprint " + fingerprint) << "\n"
         << "or from another machine:\n"
         << "  " << token_hint
         << "tunnel-agent http 3000 --subdomain app --server <this-host>:{agent_port}"
         << " --fingerprint " << fingerprint << "\n";
  if (!uses_generated_token) banner << "(tokens come from your configuration)\n";
  banner_ = banner.str();
  return common::success();
}

// " --server HOST:PORT" for an agent on this machine, or "" when the default
// (localhost:8443) reaches the agent listener bound to `listen` on `port`.
static std::string local_server_flag(const std::string& listen, std::uint16_t port) {
  std::string host = "localhost";
  if (auto address = common::parse_listen_address(listen); address) {
    const auto& bound = address.value().host;
    if (!bound.empty() && bound != "0.0.0.0" && bound != "::") host = bound;
  }
  if (host == "localhost" && port == 8443) return "";
  return " --server " + common::NetAddress{host, port}.to_string();
}

struct Server::Tls {
  std::shared_ptr<asio::ssl::context> agent;
  std::shared_ptr<asio::ssl::context> pub;  // null without listen.https
  std::shared_ptr<asio::ssl::context> api;  // listen.api: tls.api_cert, else agent
  std::vector<std::shared_ptr<asio::ssl::context>> sni;
  std::vector<std::pair<std::vector<std::string>, std::size_t>> sni_names;
  std::string agent_fingerprint;
  std::size_t count = 0;  // certificates loaded
};

common::Result<std::shared_ptr<Server::Tls>> Server::load_tls(const Config& config) const {
  auto tls = std::make_shared<Tls>();
  const std::string cert = config.tls.cert.empty() ? generated_cert_ : config.tls.cert;
  const std::string key = config.tls.cert.empty() ? generated_key_ : config.tls.key;
  auto agent = transport::make_server_tls(cert, key);
  if (!agent) return agent.error();
  tls->agent = std::move(agent).value();
  tls->agent_fingerprint = cert_fingerprint_sha256(cert);
  tls->count = 1;
  tls->api = tls->agent;
  if (!config.tls.api_cert.empty()) {
    auto api_tls = transport::make_server_tls(config.tls.api_cert, config.tls.api_key);
    if (!api_tls) return common::fail("tls.api_cert: " + api_tls.error().message);
    tls->api = std::move(api_tls).value();
    ++tls->count;
  }
  if (config.listen.https.empty()) return tls;
  tls->pub = tls->agent;
  for (std::size_t i = 0; i < config.tls.certificates.size(); ++i) {
    const auto& c = config.tls.certificates[i];
    auto ctx = transport::make_server_tls(c.cert, c.key);
    if (!ctx) {
      return common::fail("tls.certificates[" + std::to_string(i) + "]: " + ctx.error().message);
    }
    tls->sni_names.emplace_back(c.hostnames, tls->sni.size());
    tls->sni.push_back(std::move(ctx).value());
    ++tls->count;
  }
  if (tls->sni.empty()) return tls;
  // The default (no SNI, or a name no entry matches) is the first entry, loaded again with its
  // chain and the same hardening: the servername callback lives on this context only.
  const auto& first = config.tls.certificates.front();
  auto default_tls = transport::make_server_tls(first.cert, first.key);
  if (!default_tls) return common::fail("tls.certificates[0]: " + default_tls.error().message);
  tls->pub = std::move(default_tls).value();
  SSL_CTX_set_tlsext_servername_arg(tls->pub->native_handle(), tls.get());
  SSL_CTX_set_tlsext_servername_callback(
      tls->pub->native_handle(), +[](SSL* ssl, int*, void* arg) -> int {
        const auto* self = static_cast<const Tls*>(arg);
        const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        if (name == nullptr) return SSL_TLSEXT_ERR_OK;
        const std::string host = common::ascii_lower(name);
        for (const auto& [patterns, index] : self->sni_names) {
          for (const auto& pattern : patterns) {
            if (sni_match(common::ascii_lower(pattern), host)) {
              SSL_set_SSL_CTX(ssl, self->sni[index]->native_handle());
              return SSL_TLSEXT_ERR_OK;
            }
          }
        }
        return SSL_TLSEXT_ERR_OK;  // default certificate
      });
  return tls;
}

void Server::set_config_reader(ConfigReader reader, std::string file) {
  read_config_ = std::move(reader);
  config_file_ = std::move(file);
  if (!config_file_.empty()) {
    std::ifstream in(config_file_);
    config_text_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
}

void Server::reload() {
  Config next = context_->config;
  if (read_config_) {
    auto read = read_config_();
    if (!read) {
      spdlog::error("SIGHUP: {}; the running configuration and certificates stay",
                    read.error().message);
      return;
    }
    next = std::move(read).value();
    if (!config_file_.empty()) {
      std::ifstream in(config_file_);
      const std::string text((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
      for (const std::string& key : compare_config_files(config_text_, text).restart) {
        spdlog::warn(
            "SIGHUP: {} changed in {}: it takes effect after a restart, or after `tunnel-core "
            "upgrade` (which reads the configuration again without dropping connections)",
            key, config_file_);
      }
    }
  }
  auto tls = load_tls(next);
  if (!tls) {
    spdlog::error("SIGHUP: {}; the running certificates stay", tls.error().message);
    return;
  }
  const std::string fingerprint = tls.value()->agent_fingerprint;
  const std::size_t count = tls.value()->count;
  tls_.store(std::move(tls).value());
  spdlog::info(
      "SIGHUP: {} certificate{} read again; new TLS handshakes use them (agent listener sha256 "
      "{}), open connections keep theirs",
      count, count == 1 ? "" : "s", fingerprint);
}

common::Status Server::start() {
  if (char buf[4096]; self_exe_.empty()) {
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n > 0) self_exe_.assign(buf, static_cast<std::size_t>(n));
  }
  if (const char* handoff = std::getenv(upgrade::kHandoffEnv); handoff != nullptr) {
    // Started by an upgrade: the old process hands over its listening sockets first.
    const int fd = std::atoi(handoff);
    ::unsetenv(upgrade::kHandoffEnv);
    if (fd < 3) return common::fail(std::string(upgrade::kHandoffEnv) + " is not a descriptor");
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    handoff_fd_ = fd;
    auto received = upgrade::receive_handoff(fd, kHandoffTimeout);
    if (!received) return common::fail("upgrade: " + received.error().message);
    inherited_ = std::move(received).value();
    spdlog::info("upgrade: the old process handed over {} sockets", inherited_.size());
  }
  if (auto tls = setup_tls(); !tls) return tls;
  Config& config = context_->config;
  if (auto opened = open_control(); !opened) return opened;
  restore_ownership();
  std::vector<tcp::acceptor*> agent, agent_plain, http, https, admin, api;
  if (auto bound =
          bind_all(config.listen.agent, "agents", upgrade::Role::kAgents, agent, agent_port_, true);
      !bound) {
    return bound;
  }
  if (!config.listen.agent_plain.empty()) {
    if (auto bound = bind_all(config.listen.agent_plain, "agents, plain TCP",
                              upgrade::Role::kAgentsPlain, agent_plain, agent_plain_port_, true);
        !bound) {
      return bound;
    }
    if (!is_loopback(config.listen.agent_plain)) {
      spdlog::warn(
          "listen.agent_plain {}: agents connect without TLS; tokens and traffic cross the "
          "network in clear text. Put it behind a TLS-terminating proxy or keep it private.",
          config.listen.agent_plain);
    }
  }
  if (!config.listen.http.empty()) {
    if (auto bound =
            bind_all(config.listen.http, "http", upgrade::Role::kHttp, http, http_port_, true);
        !bound) {
      return bound;
    }
  }
  if (!config.listen.https.empty()) {
    if (auto bound =
            bind_all(config.listen.https, "https", upgrade::Role::kHttps, https, https_port_, true);
        !bound) {
      return bound;
    }
  }
  if (!config.listen.admin.empty()) {
    if (auto bound = bind_all(config.listen.admin, "admin", upgrade::Role::kAdmin, admin,
                              admin_port_, false, control_.get());
        !bound) {
      return bound;
    }
  }
  if (!config.listen.api.empty()) {
    if (auto bound = bind_all(config.listen.api, "api", upgrade::Role::kApi, api, api_port_, false,
                              control_.get());
        !bound) {
      return bound;
    }
  }
  context_->public_http_port = http_port_;
  context_->public_https_port = https_port_;
  open_control_socket();
  // The tunnel ports wait for their agents (take_inherited_port); a listener of the old
  // process this configuration no longer has is closed.
  for (auto& entry : inherited_) {
    if (entry.fd < 0) continue;
    if (entry.role == upgrade::Role::kTcp || entry.role == upgrade::Role::kUdp) {
      std::lock_guard lock(ports_mutex_);
      inherited_ports_.push_back(entry);
    } else {
      spdlog::warn(
          "upgrade: the old process's {} listener on port {} is not in this "
          "configuration; closing it",
          upgrade::role_name(entry.role), entry.port);
      ::close(entry.fd);
    }
    entry.fd = -1;
  }
  inherited_.clear();

  for (auto* acceptor : agent) {
    asio::co_spawn(acceptor->get_executor(),
                   serve_each(*acceptor, "agents",
                              [this](tcp::socket s) -> asio::awaitable<void> {
                                const std::shared_ptr<const Tls> tls = tls_.load();
                                co_await gateway_->serve(std::move(s), *tls->agent);
                              }),
                   asio::detached);
  }
  for (auto* acceptor : agent_plain) {
    asio::co_spawn(
        acceptor->get_executor(),
        serve_each(*acceptor, "agents (plain)",
                   [this](tcp::socket s) { return gateway_->serve_plain(std::move(s)); }),
        asio::detached);
  }
  for (auto* acceptor : http) {
    asio::co_spawn(acceptor->get_executor(),
                   serve_each(*acceptor, "http",
                              [this](tcp::socket s) -> asio::awaitable<void> {
                                s.set_option(tcp::no_delay(true));
                                co_await front_->serve(transport::make_tcp_conn(std::move(s)),
                                                       false);
                              }),
                   asio::detached);
  }
  for (auto* acceptor : https) {
    asio::co_spawn(acceptor->get_executor(),
                   serve_each(*acceptor, "https",
                              [this](tcp::socket s) -> asio::awaitable<void> {
                                const std::shared_ptr<const Tls> tls = tls_.load();
                                auto conn = co_await transport::accept_tls(
                                    std::move(s), *tls->pub,
                                    context_->config.limits.header_timeout);
                                if (!conn) {
                                  spdlog::debug("https: {}", conn.error().message);
                                  co_return;
                                }
                                co_await front_->serve(std::move(conn).value(), true);
                              }),
                   asio::detached);
  }
  for (auto* acceptor : admin) {
    asio::co_spawn(acceptor->get_executor(),
                   serve_each(*acceptor, "admin",
                              [this](tcp::socket s) { return admin_->serve(std::move(s)); }),
                   asio::detached);
  }

  for (auto* acceptor : api) {
    asio::co_spawn(acceptor->get_executor(),
                   serve_each(*acceptor, "api",
                              [this](tcp::socket s) -> asio::awaitable<void> {
                                const std::shared_ptr<const Tls> tls = tls_.load();
                                co_await admin_->serve_api(std::move(s), *tls->api);
                              }),
                   asio::detached);
  }

  if (control_) {
    control_->api->set_public_ports(http_port_, https_port_);
    // What a registered agent dials: the configured public address, else the base domain on
    // the agent listener's port.
    control_->api->set_agent_server(config.listen.agent_public.empty()
                                        ? common::NetAddress{config.domain, agent_port_}.to_string()
                                        : config.listen.agent_public,
                                    agent_fingerprint_);
    control_->thread = std::thread([c = control_.get()] {
      auto guard = asio::make_work_guard(c->io);
      c->io.run();
    });
  }

  const std::string& domain = config.domain;
  std::string placeholder = "{agent_port}";
  if (auto at = banner_.find(placeholder); at != std::string::npos) {
    banner_.replace(at, placeholder.size(), std::to_string(agent_port_));
  }
  // The agent's default is localhost:8443: name the listener when it is anywhere else, or the
  // printed command retries a port nobody listens on.
  placeholder = "{local_server}";
  if (auto at = banner_.find(placeholder); at != std::string::npos) {
    banner_.replace(at, placeholder.size(), local_server_flag(config.listen.agent, agent_port_));
  }
  std::ostringstream ready;
  ready << "tunnel-core ready: agents on port " << agent_port_;
  if (agent_plain_port_ != 0) ready << " (plain TCP on port " << agent_plain_port_ << ")";
  if (http_port_ != 0) ready << ", http://*." << domain << ":" << http_port_;
  if (https_port_ != 0) ready << ", https://*." << domain << ":" << https_port_;
  if (admin_port_ != 0) ready << ", admin " << config.listen.admin;
  if (api_port_ != 0) ready << ", API https on port " << api_port_;
  ready << " (" << workers_.size() << " workers)\n";
  banner_ = ready.str() + banner_;
  return common::success();
}

int Server::run() {
  asio::signal_set signals(workers_[0]->io, SIGINT, SIGTERM);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (shutting_down_) {
          spdlog::warn("second signal: exiting now");
          for (auto& w : workers_) w->io.stop();
          return;
        }
        spdlog::info("received {}: draining (grace {} ms)", signo == SIGTERM ? "SIGTERM" : "SIGINT",
                     context_->config.limits.shutdown_grace.count());
        shutdown();
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);
  // SIGUSR1: debug logs for 10 minutes, or back to the configured level (debug mode).
  asio::signal_set usr1(workers_[0]->io, SIGUSR1);
  std::function<void(const boost::system::error_code&, int)> on_usr1 =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        log_level_.toggle("SIGUSR1");
        usr1.async_wait(on_usr1);
      };
  usr1.async_wait(on_usr1);
  // SIGUSR2: upgrade to the binary at this one's path (`tunnel-core upgrade` does it too).
  asio::signal_set usr2(workers_[0]->io, SIGUSR2);
  std::function<void(const boost::system::error_code&, int)> on_usr2 =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        if (shutting_down_) {
          spdlog::warn("SIGUSR2: this process is draining; upgrade the new one");
        } else if (upgrading_.exchange(true)) {
          spdlog::warn("SIGUSR2: an upgrade is already running");
        } else {
          spdlog::info("received SIGUSR2: upgrading");
          start_upgrade(-1, "");
        }
        usr2.async_wait(on_usr2);
      };
  usr2.async_wait(on_usr2);
  if (control_socket_) asio::co_spawn(workers_[0]->io, serve_control_socket(), asio::detached);
  if (handoff_fd_ >= 0) {
    // Started by an upgrade: requests for names whose agents are still moving over wait for
    // them a little; ports no agent claims are closed after a while.
    front_->hold_names_until(std::chrono::steady_clock::now() + kNameHold);
    asio::co_spawn(
        workers_[0]->io,
        [this]() -> asio::awaitable<void> {
          asio::steady_timer timer(workers_[0]->io, kUnclaimedPortHold);
          co_await timer.async_wait(kNoThrow);
          std::lock_guard lock(ports_mutex_);
          for (auto& p : inherited_ports_) {
            spdlog::info("upgrade: no agent took {} :{} over; closing it",
                         upgrade::role_name(p.role), p.port);
            ::close(p.fd);
          }
          inherited_ports_.clear();
        },
        asio::detached);
    // Listening, the store open: the old process may drain now.
    if (auto said = upgrade::send_line(handoff_fd_, fmt::format("ready {}\n", ::getpid())); !said) {
      spdlog::warn("upgrade: could not tell the old process we are ready: {}",
                   said.error().message);
    }
    ::close(handoff_fd_);
    handoff_fd_ = -1;
  }
  // SIGHUP: certificates read again; what else changed in the file is named (restart).
  asio::signal_set hup(workers_[0]->io, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_hup =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        spdlog::info("received SIGHUP: reading the certificates and the configuration again");
        reload();
        hup.async_wait(on_hup);
      };
  hup.async_wait(on_hup);
  asio::co_spawn(workers_[0]->io, expire_log_level(log_level_), asio::detached);
  std::signal(SIGPIPE, SIG_IGN);
  tune_heap();
  asio::co_spawn(workers_[0]->io, trim_heap_every(kHeapTrimInterval, kHeapTrimMinFree),
                 asio::detached);
  // With the store, the saves run on the control thread (the store's only thread).
  asio::co_spawn(control_ ? control_->io : workers_[0]->io,
                 keep_ownership(context_->registry, ownership_, kOwnershipSaveInterval),
                 asio::detached);
  asio::co_spawn(workers_[0]->io,
                 log_auth_failures(context_->auth_limiter, context_->handshake_limiter, time_),
                 asio::detached);

  // Each event loop measures how late its own timer fires (saturation: a loop busy with long
  // handlers delays every connection it serves).
  const auto watch_lag = [this](asio::io_context& io, const std::string& name) {
    auto& gauge = context_->metrics.registry.gauge(
        "tunnel_event_loop_lag_seconds",
        "How late a 250 ms timer fired on each event loop, last measured (worker number, or "
        "control).",
        {{"worker", name}});
    asio::co_spawn(io, watch_loop_lag(kLoopLagInterval, [&gauge](double late) { gauge.set(late); }),
                   asio::detached);
  };
  for (std::size_t i = 0; i < workers_.size(); ++i) watch_lag(workers_[i]->io, std::to_string(i));
  if (control_) watch_lag(control_->io, "control");

  for (std::size_t i = 1; i < workers_.size(); ++i) {
    workers_[i]->thread = std::thread([w = workers_[i].get()] {
      auto guard = asio::make_work_guard(w->io);
      w->io.run();
    });
  }
  {
    auto guard = asio::make_work_guard(workers_[0]->io);
    workers_[0]->io.run();
  }
  if (control_) control_->stop();
  for (auto& w : workers_) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
  if (control_ && control_->live != nullptr) {
    // The last counts, now that no worker adds to them (the control thread has stopped too).
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    if (auto flushed =
            control_->live->flush_usage(now, std::chrono::duration_cast<std::chrono::seconds>(
                                                 context_->config.store.usage_retention));
        !flushed) {
      spdlog::warn("control plane: {}", flushed.error().message);
    }
  }
  if (upgrade_thread_.joinable()) upgrade_thread_.join();
  // After a hand-over the new process keeps the ownership (this one's registry is empty).
  if (!handed_over_) save_ownership(context_->registry, *ownership_, nullptr);
  if (!handed_over_ && control_socket_) ::unlink(control_path_.c_str());
  if (context_->tracer) context_->tracer->shutdown(kTraceFlushGrace);  // the last spans
  return 0;
}

common::Status Server::open_control() {
  const Config& config = context_->config;
  const bool serve_api = !config.listen.admin.empty() || !config.listen.api.empty();
  // Without the admin listener there is no API: a store that exists (or is configured) is
  // still brought to this binary's schema, as `tunnel-core migrate` does, and closed again; a
  // core that never had one does not make one.
  if (!serve_api && config.store.url.empty() &&
      ::access((config.data_dir + "/store.db").c_str(), F_OK) != 0) {
    return common::success();
  }
  store::StoreOptions options;
  options.url = config.store.url;
  options.data_dir = config.data_dir;
  options.time = &time_;
  auto opened = store::open_store(options);
  if (!opened) return common::fail("store: " + opened.error().message);
  std::vector<std::string> names;
  for (const auto& account : config.accounts) names.push_back(account.name);
  if (auto synced = opened.value()->sync_configured_accounts(names); !synced) {
    return common::fail("store: " + synced.error().message);
  }
  if (!serve_api) return common::success();

  // First start: the operator account and its key, written where only this user can read it.
  const std::string key_path = config.data_dir + "/admin.key";
  if (::access(key_path.c_str(), F_OK) != 0) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto made = api::bootstrap(*opened.value(), now);
    if (!made) return common::fail("store: the API's operator account: " + made.error().message);
    if (made.value()) {
      if (auto written = write_private_file(key_path, made.value()->secret + "\n"); !written) {
        return common::fail("admin.key: " + written.error().message);
      }
      spdlog::info(
          "API: the operator's key is in {} (curl -H \"Authorization: Bearer $(cat {})\" "
          "http://{}/api/v1/tunnels)",
          key_path, key_path, config.listen.admin);
    } else {
      spdlog::info("API: no {}; the operator's keys are in the store already", key_path);
    }
  }
  control_ = std::make_unique<Control>();
  control_->store = std::move(opened).value();
  // Changes through the API reach live traffic; the first view is published before the agent
  // listeners accept.
  auto live = std::make_unique<LiveControl>(*control_->store, *context_, *gateway_);
  if (auto started = live->start(); !started)
    return common::fail("store: " + started.error().message);
  control_->live = live.get();
  live->start_usage_flush(
      control_->io.get_executor(), config.store.usage_flush_interval,
      std::chrono::duration_cast<std::chrono::seconds>(config.store.usage_retention));
  if (control_->store->shared()) {
    // Other cores share the database: their changes reach this core's live traffic too.
    store::FollowOptions follow;
    follow.url = config.store.url;
    asio::co_spawn(control_->io,
                   store::follow_changes(*control_->store, std::move(follow),
                                         [live = live.get()] { live->store_changed(); }),
                   asio::detached);
  }
  control_->hooks = std::move(live);
  api::ApiOptions api_options;
  api_options.domain = config.domain;
  api_options.port_ranges = port_rules(config, Account{}).ranges;
  api_options.time = &time_;
  api_options.reservation_check = [accounts = config.accounts](std::string_view account,
                                                               std::string_view name, bool domain) {
    return reservation_refusal(accounts, account, name, domain);
  };
  control_->api = std::make_unique<api::Api>(*control_->store, *control_->hooks, api_options);
  admin_->set_api(control_->api.get(), api_options.max_body);
  return common::success();
}

void Server::restore_ownership() {
  const Config& config = context_->config;
  const std::string file = config.data_dir + "/ownership";
  // With the store open (the API is on) ownership lives there, saved on the control thread;
  // an `ownership` file of an earlier run is moved in once (and renamed, never read again).
  if (control_) {
    auto id = core_id(config.data_dir);
    if (!id) {
      spdlog::warn("{}: ownership of names is kept under a shared id", id.error().message);
    }
    ownership_ = std::make_shared<StoreOwnershipStore>(*control_->store, id ? id.value() : "");
  } else {
    ownership_ = std::make_shared<FileOwnershipStore>(file);
  }
  std::vector<Registry::Owned> owned;
  std::vector<std::string> warnings;
  const auto loaded = ownership_->load(owned, warnings);
  if (!loaded) {
    spdlog::warn("could not read who owned which name before this start: {}",
                 loaded.error().message);
  }
  bool imported = false;
  if (control_ && owned.empty() && loaded && ::access(file.c_str(), F_OK) == 0) {
    if (auto from_file = FileOwnershipStore(file).load(owned, warnings); !from_file) {
      spdlog::warn("could not read who owned which name before this start: {}",
                   from_file.error().message);
    }
    imported = !owned.empty();
  }
  for (const auto& warning : warnings) spdlog::warn("{}", warning);
  if (const std::size_t n = context_->registry.restore(owned, context_->registry.now_unix());
      n > 0) {
    spdlog::info("{} names and ports of the previous run are held for their accounts for {} s", n,
                 context_->registry.offline_hold().count());
  }
  if (imported) {
    save_ownership(context_->registry, *ownership_, nullptr);
    if (::rename(file.c_str(), (file + ".imported").c_str()) == 0) {
      spdlog::info("who owns which name moved from {} into the store ({}.imported is the old file)",
                   file, file);
    }
  }
  for (const Account& account : config.accounts) {
    if (account.max_agents == 0) continue;
    spdlog::info("account {}: at most {} agent{} at once (accounts[].max_agents)", account.name,
                 account.max_agents, account.max_agents == 1 ? "" : "s");
  }
}

void Server::shutdown() {
  asio::post(workers_[0]->io, [this] {
    if (shutting_down_) return;
    shutting_down_ = true;
    context_->draining = true;
    for (auto& w : workers_) {
      asio::post(w->io, [w = w.get(), admin_port = admin_port_] {
        for (auto& acceptor : w->acceptors) {
          boost::system::error_code ignored;
          // The admin listener stays up so /readyz can report the drain.
          if (admin_port != 0 && acceptor->local_endpoint(ignored).port() == admin_port) {
            continue;
          }
          acceptor->close(ignored);
        }
      });
    }
    gateway_->go_away_all();
    asio::co_spawn(workers_[0]->io, drain(), asio::detached);
  });
}

asio::awaitable<void> Server::drain() {
  const auto deadline = std::chrono::steady_clock::now() + context_->config.limits.shutdown_grace;
  asio::steady_timer timer(workers_[0]->io);
  while (front_->active_requests() > 0 && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(50));
    co_await timer.async_wait(kNoThrow);
  }
  if (front_->active_requests() > 0) {
    spdlog::warn("grace period over with {} requests in flight; closing them",
                 front_->active_requests());
  }
  gateway_->close_all();
  // Let the CLOSE frames and last responses flush.
  timer.expires_after(std::chrono::milliseconds(200));
  co_await timer.async_wait(kNoThrow);
  spdlog::info("drained; exiting");
  if (control_) control_->io.stop();
  for (auto& w : workers_) w->io.stop();
}

int Server::take_inherited_port(PortProtocol protocol, std::uint16_t port) {
  const upgrade::Role role =
      protocol == PortProtocol::kUdp ? upgrade::Role::kUdp : upgrade::Role::kTcp;
  std::lock_guard lock(ports_mutex_);
  for (auto it = inherited_ports_.begin(); it != inherited_ports_.end(); ++it) {
    if (it->role == role && it->port == port) {
      const int fd = it->fd;
      inherited_ports_.erase(it);
      spdlog::info("{} :{}: took over the old process's socket", upgrade::role_name(role), port);
      return fd;
    }
  }
  return -1;
}

void Server::open_control_socket() {
  using seq = UnixSeqPacket;
  control_path_ = context_->config.data_dir + "/control.sock";
  boost::system::error_code ec;
  auto acceptor = std::make_unique<seq::acceptor>(workers_[0]->io);
  for (auto& entry : inherited_) {
    if (entry.role != upgrade::Role::kControl || entry.fd < 0) continue;
    acceptor->assign(seq(), entry.fd, ec);
    entry.fd = -1;
    if (!ec) {
      control_socket_ = std::move(acceptor);
      return;
    }
    acceptor = std::make_unique<seq::acceptor>(workers_[0]->io);
  }
  if (control_path_.size() >= sizeof(sockaddr_un::sun_path)) {
    spdlog::warn(
        "{}: path too long for a unix socket; `tunnel-core upgrade` cannot reach this "
        "core (SIGUSR2 still upgrades it)",
        control_path_);
    return;
  }
  // A socket file left by a core that is gone is replaced; one a running core answers is not.
  {
    seq::socket probe(workers_[0]->io);
    probe.connect(seq::endpoint(control_path_), ec);
    if (!ec) {
      spdlog::warn(
          "{}: another tunnel-core answers there (same data dir?); `tunnel-core "
          "upgrade` reaches that one, not this one",
          control_path_);
      return;
    }
  }
  ::unlink(control_path_.c_str());
  const mode_t old_mask = ::umask(077);  // 0600 from the start: no window for other users
  acceptor->open(seq(), ec);
  if (!ec) acceptor->bind(seq::endpoint(control_path_), ec);
  ::umask(old_mask);
  if (!ec) ::chmod(control_path_.c_str(), 0600);
  if (!ec) acceptor->listen(4, ec);
  if (ec) {
    spdlog::warn(
        "{}: {}; `tunnel-core upgrade` cannot reach this core (SIGUSR2 still upgrades "
        "it)",
        control_path_, ec.message());
    return;
  }
  control_socket_ = std::move(acceptor);
}

asio::awaitable<void> Server::serve_control_socket() {
  for (;;) {
    auto [ec, client] = co_await control_socket_->async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted || !control_socket_->is_open()) co_return;
    if (ec) {
      asio::steady_timer pause(workers_[0]->io, std::chrono::milliseconds(100));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    const int fd = client.native_handle();
    // Only this core's user may ask (the socket is 0600 too).
    auto uid = upgrade::peer_uid(fd);
    if (!uid || uid.value() != ::geteuid()) {
      spdlog::warn("control socket: refused a connection from uid {} (this core runs as {})",
                   uid ? std::to_string(uid.value()) : uid.error().message, ::geteuid());
      (void)upgrade::send_line(fd, "error: not the core's user\n");
      continue;
    }
    if (upgrading_.exchange(true)) {
      (void)upgrade::send_line(fd, "error: an upgrade is already running\n");
      continue;
    }
    boost::system::error_code ignored;
    start_upgrade(client.release(ignored), "");
  }
}

void Server::start_upgrade(int client, std::string binary) {
  // upgrading_ is set by the caller.
  if (upgrade_thread_.joinable()) upgrade_thread_.join();  // the last one, finished
  upgrade_thread_ = std::thread([this, client, binary = std::move(binary)]() mutable {
    if (client >= 0) {
      // The command: one message, within 5 s.
      auto line = upgrade::receive_line(client, std::chrono::seconds(5));
      auto command = line ? upgrade::parse_upgrade_command(line.value())
                          : common::Result<std::string>(line.error());
      if (!command) {
        spdlog::warn("control socket: {}", command.error().message);
        (void)upgrade::send_line(client, "error: " + command.error().message + "\n");
        ::close(client);
        upgrading_ = false;
        return;
      }
      binary = std::move(command).value();
    }
    auto done = perform_upgrade(binary);
    if (done) {
      spdlog::info("upgrade: the new process (pid {}) is serving; this one drains and exits",
                   done.value());
      // systemd follows the new process (NotifyAccess=main in the unit).
      if (upgrade::notify_service_manager(fmt::format("MAINPID={}", done.value()))) {
        spdlog::info("upgrade: told systemd the main process is now pid {}", done.value());
      }
      if (client >= 0) (void)upgrade::send_line(client, fmt::format("ok {}\n", done.value()));
      asio::post(workers_[0]->io, [this] { hand_over(); });
    } else {
      spdlog::error("upgrade failed, this process keeps serving: {}", done.error().message);
      if (client >= 0) (void)upgrade::send_line(client, "error: " + done.error().message + "\n");
      upgrading_ = false;
    }
    if (client >= 0) ::close(client);
  });
}

common::Result<int> Server::perform_upgrade(std::string binary) {
  if (binary.empty()) binary = self_exe_;
  if (binary.ends_with(" (deleted)")) binary.resize(binary.size() - 10);
  if (binary.empty() || ::access(binary.c_str(), X_OK) != 0) {
    return common::fail("the new binary " + (binary.empty() ? std::string("(unknown)") : binary) +
                        " is not executable: " + std::strerror(errno));
  }
  if (argv_.empty()) return common::fail("the command line of this process is unknown");
  // What to hand over: the listeners, the control socket, the tunnel ports open now.
  std::vector<upgrade::Entry> entries = listening_;
  if (control_socket_)
    entries.push_back({upgrade::Role::kControl, 0, control_socket_->native_handle()});
  {
    std::lock_guard lock(ports_mutex_);
    for (const auto& p : open_ports_) {
      if (p.listener.expired() || p.fd < 0) continue;
      entries.push_back(
          {p.protocol == PortProtocol::kUdp ? upgrade::Role::kUdp : upgrade::Role::kTcp, p.port,
           p.fd});
    }
    for (const auto& p : inherited_ports_) entries.push_back(p);  // still waiting for agents
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return common::fail(std::string("socketpair: ") + std::strerror(errno));
  }
  // Everything the child needs, made before fork(): after it only async-signal-safe calls.
  std::vector<std::string> args = argv_;
  args[0] = binary;
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with(std::string(upgrade::kHandoffEnv) + "=")) continue;
    env_strings.emplace_back(*e);
  }
  constexpr int kChildFd = 3;
  env_strings.push_back(std::string(upgrade::kHandoffEnv) + "=" + std::to_string(kChildFd));
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pair[0]);
    ::close(pair[1]);
    return common::fail(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    if (pair[1] == kChildFd) {
      ::fcntl(kChildFd, F_SETFD, 0);
    } else {
      ::dup2(pair[1], kChildFd);  // the copy has no FD_CLOEXEC
    }
    // Nothing else of this process: its connections must close when it closes them.
    ::close_range(kChildFd + 1, ~0U, 0);
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(pair[1]);
  spdlog::info("upgrade: started {} (pid {}); handing over {} sockets", binary, pid,
               entries.size());
  const auto reap = [pid](std::chrono::milliseconds within) {
    int status = 0;
    const auto until = std::chrono::steady_clock::now() + within;
    for (;;) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
        if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
        return std::string("ended");
      }
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        return std::string("was stopped (SIGKILL)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  auto sent = upgrade::send_handoff(pair[0], entries);
  if (!sent) {
    ::close(pair[0]);
    const std::string how = reap(std::chrono::seconds(2));
    return common::fail("handing the sockets to the new process (pid " + std::to_string(pid) +
                        ") failed (" + sent.error().message + "); it " + how);
  }
  auto ready = upgrade::receive_line(pair[0], kUpgradeReadyTimeout);
  ::close(pair[0]);
  if (ready && ready.value().starts_with("ready")) return static_cast<int>(pid);
  const bool timed_out = !ready && ready.error().message == "timed out";
  const std::string how = reap(timed_out ? std::chrono::milliseconds(0) : std::chrono::seconds(5));
  if (timed_out) {
    return common::fail("the new process (pid " + std::to_string(pid) + ") was not ready within " +
                        std::to_string(kUpgradeReadyTimeout.count() / 1000) + " s and " + how);
  }
  return common::fail("the new process (pid " + std::to_string(pid) + ") " + how +
                      " before it was ready (its log says why)");
}

void Server::hand_over() {
  if (shutting_down_) return;
  shutting_down_ = true;
  handed_over_ = true;
  context_->draining = true;
  // Every listener is the new process's now: close this process's copies (the sockets stay
  // open there, with whatever waits in their queues).
  for (auto& w : workers_) {
    asio::post(w->io, [w = w.get()] {
      for (auto& acceptor : w->acceptors) {
        boost::system::error_code ignored;
        acceptor->close(ignored);
      }
    });
  }
  if (control_) {
    asio::post(control_->io, [c = control_.get()] {
      for (auto& acceptor : c->acceptors) {
        boost::system::error_code ignored;
        acceptor->close(ignored);
      }
    });
  }
  if (control_socket_) {
    boost::system::error_code ignored;
    control_socket_->close(ignored);
  }
  {
    std::lock_guard lock(ports_mutex_);
    for (auto& p : open_ports_) {
      if (auto listener = p.listener.lock()) listener->close();
    }
    for (auto& p : inherited_ports_) ::close(p.fd);
    inherited_ports_.clear();
  }
  asio::co_spawn(workers_[0]->io, drain_after_handover(), asio::detached);
}

asio::awaitable<void> Server::drain_after_handover() {
  asio::steady_timer timer(workers_[0]->io);
  // Requests accepted just before the listeners closed still open their streams; then the
  // agents move to the new process (GOAWAY: their new session first, this one when its
  // streams are done).
  timer.expires_after(kGoAwayDelay);
  co_await timer.async_wait(kNoThrow);
  gateway_->go_away_all();
  const auto deadline = std::chrono::steady_clock::now() + context_->config.limits.shutdown_grace;
  while ((front_->active_requests() > 0 || gateway_->session_count() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(50));
    co_await timer.async_wait(kNoThrow);
  }
  if (front_->active_requests() > 0 || gateway_->session_count() > 0) {
    spdlog::warn(
        "grace period over with {} requests in flight and {} agent sessions open; closing them",
        front_->active_requests(), gateway_->session_count());
  }
  gateway_->close_all();
  timer.expires_after(std::chrono::milliseconds(200));
  co_await timer.async_wait(kNoThrow);
  spdlog::info("handed over and drained; exiting");
  if (control_) control_->io.stop();
  for (auto& w : workers_) w->io.stop();
}

}  // namespace tunnel::core

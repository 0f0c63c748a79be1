#include "core/server.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
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
#include <sstream>

#include "common/heap_trim.hpp"
#include "common/loop_lag.hpp"
#include "common/net_address.hpp"
#include "core/control/api/api.hpp"
#include "core/control/auth.hpp"
#include "core/control/data_dir.hpp"
#include "core/control/store/change_follower.hpp"
#include "core/control/store/store.hpp"
#include "core/edge/conn_pipeline.hpp"
#include "core/edge/http_filters.hpp"
#include "core/edge/tcp_tunnel.hpp"
#include "core/edge/udp_tunnel.hpp"
#include "core/live_control.hpp"
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
  gateway_ = std::make_unique<AgentGateway>(
      *context_,
      [context = context_.get(), filters = port_listener_filters(context_->config)](
          PortProtocol protocol, asio::any_io_executor executor, std::uint16_t port) {
        const std::string& host = context->config.listen.tunnels_host;
        return protocol == PortProtocol::kUdp
                   ? open_udp_port(*context, std::move(executor), host, port, filters)
                   : open_tcp_port(*context, std::move(executor), host, port, filters);
      },
      tunnel_filters, tunnel_connection_filters);
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
  if (control_) control_->stop();
  for (auto& w : workers_) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

common::Status Server::bind_all(const std::string& address, const char* what,
                                std::vector<tcp::acceptor*>& out, std::uint16_t& port,
                                bool every_worker, Control* control) {
  auto parsed = common::parse_listen_address(address);
  if (!parsed) return common::fail(std::string(what) + " address: " + parsed.error().message);
  port = parsed.value().port;
  const std::size_t count = every_worker && control == nullptr ? workers_.size() : 1;
  for (std::size_t i = 0; i < count; ++i) {
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
    port = acceptor->local_endpoint().port();  // the others bind the port the first one got
    out.push_back(acceptor.get());
    (control != nullptr ? control->acceptors : workers_[i]->acceptors)
        .push_back(std::move(acceptor));
  }
  return common::success();
}

common::Status Server::setup_tls() {
  Config& config = context_->config;
  std::string cert = config.tls.cert;
  std::string key = config.tls.key;
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
  if (cert.empty()) {
    cert = data.value().cert_path;
    key = data.value().key_path;
  }
  auto agent_tls = transport::make_server_tls(cert, key);
  if (!agent_tls) return agent_tls.error();
  agent_tls_ = std::move(agent_tls).value();

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
  api_tls_ = agent_tls_;
  if (!config.tls.api_cert.empty()) {
    auto api_tls = transport::make_server_tls(config.tls.api_cert, config.tls.api_key);
    if (!api_tls) return common::fail("tls.api_cert: " + api_tls.error().message);
    api_tls_ = std::move(api_tls).value();
  }

  if (!config.listen.https.empty()) {
    public_tls_ = agent_tls_;
    for (std::size_t i = 0; i < config.tls.certificates.size(); ++i) {
      const auto& c = config.tls.certificates[i];
      auto ctx = transport::make_server_tls(c.cert, c.key);
      if (!ctx) {
        return common::fail("tls.certificates[" + std::to_string(i) + "]: " + ctx.error().message);
      }
      sni_names_.emplace_back(c.hostnames, sni_contexts_.size());
      sni_contexts_.push_back(std::move(ctx).value());
    }
    if (!sni_contexts_.empty()) {
      // The default (no SNI, or a name no entry matches) is the first entry, loaded again with
      // its chain and the same hardening: the servername callback lives on this context only.
      const auto& first = config.tls.certificates.front();
      auto default_tls = transport::make_server_tls(first.cert, first.key);
      if (!default_tls) {
        return common::fail("tls.certificates[0]: " + default_tls.error().message);
      }
      public_tls_ = std::move(default_tls).value();
      SSL_CTX_set_tlsext_servername_arg(public_tls_->native_handle(), this);
      SSL_CTX_set_tlsext_servername_callback(
          public_tls_->native_handle(), +[](SSL* ssl, int*, void* arg) -> int {
            auto* self = static_cast<Server*>(arg);
            const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
            if (name == nullptr) return SSL_TLSEXT_ERR_OK;
            const std::string host = common::ascii_lower(name);
            for (const auto& [patterns, index] : self->sni_names_) {
              for (const auto& pattern : patterns) {
                if (sni_match(common::ascii_lower(pattern), host)) {
                  SSL_set_SSL_CTX(ssl, self->sni_contexts_[index]->native_handle());
                  return SSL_TLSEXT_ERR_OK;
                }
              }
            }
            return SSL_TLSEXT_ERR_OK;  // default certificate
          });
    }
  }

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

common::Status Server::start() {
  if (auto tls = setup_tls(); !tls) return tls;
  Config& config = context_->config;
  if (auto opened = open_control(); !opened) return opened;
  restore_ownership();
  std::vector<tcp::acceptor*> agent, agent_plain, http, https, admin, api;
  if (auto bound = bind_all(config.listen.agent, "agents", agent, agent_port_, true); !bound) {
    return bound;
  }
  if (!config.listen.agent_plain.empty()) {
    if (auto bound = bind_all(config.listen.agent_plain, "agents, plain TCP", agent_plain,
                              agent_plain_port_, true);
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
    if (auto bound = bind_all(config.listen.http, "http", http, http_port_, true); !bound) {
      return bound;
    }
  }
  if (!config.listen.https.empty()) {
    if (auto bound = bind_all(config.listen.https, "https", https, https_port_, true); !bound) {
      return bound;
    }
  }
  if (!config.listen.admin.empty()) {
    if (auto bound =
            bind_all(config.listen.admin, "admin", admin, admin_port_, false, control_.get());
        !bound) {
      return bound;
    }
  }
  if (!config.listen.api.empty()) {
    if (auto bound = bind_all(config.listen.api, "api", api, api_port_, false, control_.get());
        !bound) {
      return bound;
    }
  }
  context_->public_http_port = http_port_;
  context_->public_https_port = https_port_;

  for (auto* acceptor : agent) {
    asio::co_spawn(
        acceptor->get_executor(),
        serve_each(*acceptor, "agents",
                   [this](tcp::socket s) { return gateway_->serve(std::move(s), *agent_tls_); }),
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
                                auto conn = co_await transport::accept_tls(
                                    std::move(s), *public_tls_,
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
    asio::co_spawn(
        acceptor->get_executor(),
        serve_each(*acceptor, "api",
                   [this](tcp::socket s) { return admin_->serve_api(std::move(s), *api_tls_); }),
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
  save_ownership(context_->registry, *ownership_, nullptr);
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

}  // namespace tunnel::core

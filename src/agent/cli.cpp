#include "agent/cli.hpp"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <tuple>

#include "agent/allow_local.hpp"
#include "agent/forwarder.hpp"
#include "agent/health_check.hpp"
#include "agent/inspector.hpp"
#include "agent/inspector_server.hpp"
#include "agent/metrics.hpp"
#include "common/byte_rate.hpp"
#include "common/config_reader.hpp"
#include "common/duration.hpp"
#include "common/fingerprint.hpp"
#include "common/heap_trim.hpp"
#include "common/loop_lag.hpp"
#include "observability/log.hpp"
#include "observability/metrics.hpp"
#include "tracing/tracer.hpp"
#include "transport/conn.hpp"

namespace tunnel::agent {
namespace {

constexpr int kExitUsage = 2;

struct Flags {
  std::optional<std::string> config;
  std::vector<std::string> servers;  // --server, repeatable, each maybe a comma-separated list
  std::optional<std::uint32_t> connections;
  std::optional<std::string> session_max_age;
  std::optional<std::string> token, token_file, ca, fingerprint, data_dir, log_format, log_level,
      metrics_addr, otlp_endpoint, trace_sample_ratio, name, group;
  bool insecure = false;
  bool plain = false;
  // http, tcp, udp
  std::optional<std::string> proxy_protocol, bandwidth;
  std::vector<std::string> cidr_allow, cidr_deny;  // who may reach it (ngrok's spelling)
  std::vector<std::string> basic_auth;             // http only
  // http, tcp: the health check
  std::optional<std::string> health_check, health_interval, health_timeout;
  std::optional<std::uint32_t> health_rise, health_fall;
  // http
  std::string target;
  std::optional<std::string> subdomain, hostname;
  // tcp, udp
  std::uint16_t remote_port = 0;
  // start: the local targets the core may assign
  std::vector<std::string> allow_local;
  // the request inspector
  std::optional<bool> inspect;
  std::optional<std::string> inspect_addr;
  std::optional<std::uint64_t> inspect_db_size, inspect_body_cap;
  std::optional<std::string> inspect_password;
};

// "tunnels[0].subdomain: ..." -> "--subdomain: ..." for errors about values given as flags.
std::string name_flag(const std::string& message) {
  static const std::pair<std::string_view, std::string_view> kFlags[] = {
      {"server", "--server"},
      {"connections", "--connections"},
      {"name", "--name"},
      {"group", "--group"},
      {"session_max_age", "--session-max-age"},
      {"token", "--token"},
      {"data_dir", "--data-dir"},
      {"ca", "--ca"},
      {"fingerprint", "--fingerprint"},
      {"insecure", "--insecure"},
      {"plain", "--plain"},
      {"tunnels[0].proxy_protocol", "--proxy-protocol"},
      {"tunnels[0].bandwidth", "--bandwidth"},
      {"tunnels[0].cidr_allow", "--cidr-allow"},
      {"tunnels[0].cidr_deny", "--cidr-deny"},
      {"tunnels[0].basic_auth", "--basic-auth"},
      {"tunnels[0].health_check", "--health-check"},
      {"tunnels[0].health_interval", "--health-interval"},
      {"tunnels[0].health_timeout", "--health-timeout"},
      {"tunnels[0].health_rise", "--health-rise"},
      {"tunnels[0].health_fall", "--health-fall"},
      {"log_format", "--log-format"},
      {"log_level", "--log-level"},
      {"metrics_addr", "--metrics-addr"},
      {"otlp_endpoint", "--otlp-endpoint"},
      {"trace_sample_ratio", "--trace-sample-ratio"},
      {"tunnels[0].local", "TARGET"},
      {"tunnels[0].subdomain", "--subdomain"},
      {"tunnels[0].hostname", "--hostname"},
      {"tunnels[0].remote_port", "--remote-port"},
  };
  for (const auto& [key, flag] : kFlags) {
    if (message.starts_with(std::string(key) + ":")) {
      return std::string(flag) + message.substr(key.size());
    }
    // A repeatable flag's entry: "tunnels[0].cidr_allow[1]: ..." -> "--cidr-allow: ...".
    if (message.starts_with(std::string(key) + "[")) {
      if (const auto end = message.find("]:", key.size()); end != std::string::npos) {
        return std::string(flag) + message.substr(end + 1);
      }
    }
  }
  return message;
}

std::string describe(const std::vector<ConfigError>& errors, std::string_view source) {
  std::string out;
  for (const auto& e : errors) {
    out += source.empty() ? name_flag(e.message) : std::string(source) + ": " + e.message;
    out += '\n';
  }
  return out;
}

constexpr const char* kTokenFlagWarning =
    "--token puts the token on the command line, where every local user sees it (ps, "
    "/proc/PID/cmdline): use --token-file FILE or the TUNNEL_TOKEN environment variable";

// A bad setting: the message goes to stderr and the process exits with 2.
int usage_error(const std::string& message) {
  std::cerr << "tunnel-agent: " << message << (message.ends_with('\n') ? "" : "\n");
  return kExitUsage;
}

// The health check flags of `http` and `tcp` into their one tunnel; an error names the flag.
std::optional<std::string> apply_health_flags(const Flags& flags, TunnelConfig& tunnel) {
  tunnel.health_check = flags.health_check.value_or("");
  for (const auto& [flag, value, out] :
       {std::tuple{"--health-interval", &flags.health_interval, &tunnel.health_interval},
        std::tuple{"--health-timeout", &flags.health_timeout, &tunnel.health_timeout}}) {
    if (!*value) continue;
    auto parsed = common::parse_duration(**value);
    if (!parsed) return std::string(flag) + ": " + parsed.error().message;
    *out = parsed.value();
  }
  if (flags.health_rise) tunnel.health_rise = *flags.health_rise;
  if (flags.health_fall) tunnel.health_fall = *flags.health_fall;
  return std::nullopt;
}

void apply_flags(const Flags& flags, Config& config) {
  const auto set = [](const std::optional<std::string>& flag, std::string& field) {
    if (flag) field = *flag;
  };
  if (!flags.servers.empty()) {
    config.server.clear();
    for (const auto& server : flags.servers) {
      config.server += (config.server.empty() ? "" : ",") + server;
    }
  }
  if (flags.connections) config.connections = *flags.connections;
  set(flags.name, config.name);
  set(flags.group, config.group);
  set(flags.token, config.token);
  set(flags.data_dir, config.data_dir);
  set(flags.log_format, config.log_format);
  set(flags.log_level, config.log_level);
  set(flags.metrics_addr, config.metrics_addr);
  set(flags.otlp_endpoint, config.otlp_endpoint);
  set(flags.trace_sample_ratio, config.trace_sample_ratio);
  // A trust flag replaces whatever the file or the environment chose.
  if (flags.ca || flags.fingerprint || flags.insecure) {
    config.ca.clear();
    config.fingerprint.clear();
    config.insecure = false;
    set(flags.ca, config.ca);
    set(flags.fingerprint, config.fingerprint);
    config.insecure = flags.insecure;
  }
  if (flags.plain) config.plain = true;
  if (!flags.allow_local.empty()) config.allow_local = flags.allow_local;
  if (flags.inspect) config.inspect = *flags.inspect;
  set(flags.inspect_addr, config.inspect_addr);
  if (flags.inspect_db_size) config.inspect_db_size = *flags.inspect_db_size;
  if (flags.inspect_body_cap) config.inspect_body_cap = *flags.inspect_body_cap;
  set(flags.inspect_password, config.inspect_password);
}

// Puts the configured log level back once a temporary one's time is up.
boost::asio::awaitable<void> expire_log_level(observability::LogLevelControl& control) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
    control.expire();
  }
}

// The agent's tracer while it runs (--otlp-endpoint): forward_http() reads it; flushed at exit.
class TracingOn {
 public:
  TracingOn(const Config& config, observability::Registry& registry) {
    if (config.otlp_endpoint.empty()) return;
    tracing::TracerOptions options;
    options.endpoint = config.otlp_endpoint;
    options.service_name = "tunnel-agent";
    options.sample_ratio = tracing::parse_sample_ratio(config.trace_sample_ratio).value_or(1.0);
    auto started = tracing::Tracer::start(std::move(options), registry);
    if (!started) {
      spdlog::error("tracing off: {}", started.error().message);
      return;
    }
    tracer_ = std::move(started).value();
    set_tracer(tracer_.get());
    spdlog::info("tracing: spans to {} (sample ratio {})", config.otlp_endpoint,
                 tracer_->sample_ratio());
  }
  ~TracingOn() {
    if (!tracer_) return;
    set_tracer(nullptr);
    tracer_->shutdown(std::chrono::seconds(2));
  }
  TracingOn(const TracingOn&) = delete;
  TracingOn& operator=(const TracingOn&) = delete;

 private:
  std::unique_ptr<tracing::Tracer> tracer_;
};

int run(ConnectorOptions options, const Config& config) {
  const std::string& metrics_addr = config.metrics_addr;
  boost::asio::io_context io(1);
  RealTimeSource time;  // the agent's clock: every part gets it by reference from here
  observability::Registry registry;
  const TracingOn tracing_on(config, registry);
  std::optional<AgentMetrics> metrics;
  std::optional<boost::asio::ip::tcp::acceptor> metrics_acceptor;
  if (!metrics_addr.empty()) {
    auto addr = common::parse_listen_address(metrics_addr);  // checked by validate()
    const std::string host =
        addr && !addr.value().host.empty() ? addr.value().host : std::string("127.0.0.1");
    boost::system::error_code ec;
    const auto ip = boost::asio::ip::make_address(host, ec);
    if (!addr || ec) {
      spdlog::error("--metrics-addr {}: not an IP address and port", metrics_addr);
      return kExitUsage;
    }
    const boost::asio::ip::tcp::endpoint at(ip, addr.value().port);
    metrics_acceptor.emplace(io);
    if (metrics_acceptor->open(at.protocol(), ec); !ec) {
      metrics_acceptor->set_option(boost::asio::socket_base::reuse_address(true), ec);
      if (metrics_acceptor->bind(at, ec); !ec) metrics_acceptor->listen(64, ec);
    }
    if (ec) {
      spdlog::error("--metrics-addr {}: cannot listen: {}", metrics_addr, ec.message());
      return 1;
    }
    observability::register_process_metrics(registry);
    metrics.emplace(registry);
    options.metrics = &*metrics;
    spdlog::info("metrics on http://{}/metrics",
                 transport::endpoint_string(metrics_acceptor->local_endpoint(ec)));
  }
  std::unique_ptr<Inspector> inspector;
  std::unique_ptr<InspectorServer> inspector_server;
  if (config.inspect) {
    InspectorOptions inspect;
    inspect.db_size = config.inspect_db_size;
    inspect.body_cap = config.inspect_body_cap;
    inspect.redact = config.inspect_redact;
    inspector = std::make_unique<Inspector>(std::move(inspect));
    inspector_server = std::make_unique<InspectorServer>(io.get_executor(), *inspector);
    inspector_server->set_password(config.inspect_password);
    if (auto listening = inspector_server->listen(config.inspect_addr); !listening) {
      return usage_error(listening.error().message + " (--inspect=false turns the inspector off)");
    }
    // To the log (stderr) only: scripts read the first http:// URL on stdout as the tunnel's.
    spdlog::info("request inspector on http://{} (--inspect=false turns it off)",
                 inspector_server->address());
    boost::asio::co_spawn(io, inspector_server->run(), boost::asio::detached);
    options.inspector = inspector.get();
  }
  Connector connector(io.get_executor(), std::move(options), time);
  if (metrics) {
    registry.gauge_fn("tunnel_agent_sessions_connected", "Sessions to the core open now.",
                      [&connector] { return static_cast<double>(connector.live_sessions()); });
    const auto cores = connector.core_names();
    for (std::size_t i = 0; i < cores.size(); ++i) {
      registry.gauge_fn("tunnel_agent_core_sessions", "Sessions open now to each core.",
                        [&connector, i] { return static_cast<double>(connector.live_sessions(i)); },
                        {{"core", cores[i]}});
    }
    for (std::size_t i = 0; i < connector.tunnels_checked(); ++i) {
      if (!connector.health_checked(i)) continue;
      registry.gauge_fn("tunnel_agent_tunnel_healthy",
                        "1 when the tunnel's local app passes its health check, else 0.",
                        [&connector, i] { return connector.tunnel_healthy(i) ? 1.0 : 0.0; },
                        {{"local", connector.tunnel_local(i)}});
    }
    registry.gauge_fn("tunnel_agent_session_rtt_seconds",
                      "Round-trip time of the last PING on the newest session to the core.",
                      [&connector] { return connector.rtt_seconds(); });
    boost::asio::co_spawn(io, serve_metrics(*metrics_acceptor, registry), boost::asio::detached);
    mux::register_session_stats(registry);
    auto& lag = registry.gauge("tunnel_event_loop_lag_seconds",
                               "How late a 250 ms timer fired on the agent's event loop, last "
                               "measured.",
                               {{"worker", "0"}});
    boost::asio::co_spawn(
        io, watch_loop_lag(std::chrono::milliseconds(250), [&lag](double late) { lag.set(late); }),
        boost::asio::detached);
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        spdlog::info("{} received: closing the session", signal == SIGINT ? "SIGINT" : "SIGTERM");
        connector.stop();
        if (metrics_acceptor) {
          boost::system::error_code ignored;
          metrics_acceptor->close(ignored);
        }
        // A second signal while closing: leave at once.
        signals.async_wait([](const boost::system::error_code& again, int) {
          if (!again) std::_Exit(0);
        });
      };
  signals.async_wait(on_signal);
  // SIGUSR1: debug logs (each request, the session's events) for 10 minutes, or back to the
  // configured level (debug mode, without a restart).
  observability::LogLevelControl log_level(time);
  boost::asio::signal_set usr1(io, SIGUSR1);
  std::function<void(const boost::system::error_code&, int)> on_usr1 =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        log_level.toggle("SIGUSR1");
        usr1.async_wait(on_usr1);
      };
  usr1.async_wait(on_usr1);
  boost::asio::co_spawn(io, expire_log_level(log_level), boost::asio::detached);
  tune_heap();
  boost::asio::co_spawn(io, trim_heap_every(kHeapTrimInterval, kHeapTrimMinFree),
                        boost::asio::detached);
  int code = 0;
  boost::asio::co_spawn(io, connector.run(), [&](std::exception_ptr e, int result) {
    code = result;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::critical("agent failed: {}", x.what());
      }
      code = 1;
    }
    boost::system::error_code ignored;
    signals.cancel(ignored);
    if (inspector_server) inspector_server->stop();
    io.stop();
  });
  io.run();
  return code;
}

}  // namespace

common::Result<ConnectorOptions> make_connector_options(const Config& config,
                                                        std::string& warning) {
  ConnectorOptions options;
  auto servers = parse_server_list(config.server);
  if (!servers) return common::fail("--server: " + servers.error().message);
  options.servers = std::move(servers).value();
  options.server_host = options.servers.front().host;
  options.server_port = options.servers.front().port;
  options.connections = config.connections;
  options.session_max_age = config.session_max_age;
  options.pool.max_idle_per_target = config.local_pool.max_idle_per_target;
  options.pool.max_idle_total = config.local_pool.max_idle;
  options.pool.idle_timeout = config.local_pool.idle_timeout;
  options.pool.connect_timeout = config.local_pool.connect_timeout;
  options.window_growth_budget = config.window_budget;

  auto token = resolve_token(config);
  if (!token) {
    const auto path = (std::filesystem::path(config.data_dir) / "agent.token").string();
    std::string error =
        "no token: pass --token TOKEN (or set TUNNEL_TOKEN), or run the agent next to a "
        "tunnel-core, which writes " +
        path;
    if (token.error().message.ends_with("is empty")) error += " (" + token.error().message + ")";
    return common::fail(std::move(error));
  }
  options.token = std::move(token).value();

  transport::ClientTlsOptions tls;
  const TrustSettings trust = resolve_trust(config);
  switch (trust.mode) {
    case TrustSettings::Mode::kSystemCAs:
      break;
    case TrustSettings::Mode::kCaFile:
      if (config.ca.empty()) {
        // The certificate a core on this machine wrote: pin it, so any host name works.
        auto fingerprint = common::cert_file_fingerprint_sha256(trust.ca_file);
        if (!fingerprint) return fingerprint.error();
        tls.pin = [want = fingerprint.value()](X509* cert) {
          return common::fingerprint_sha256(cert) == want;
        };
      } else {
        tls.ca_file = trust.ca_file;
      }
      break;
    case TrustSettings::Mode::kFingerprint:
      tls.pin = [want = trust.fingerprint](X509* cert) {
        return common::fingerprint_sha256(cert) == want;
      };
      break;
    case TrustSettings::Mode::kInsecure:
      tls.insecure = true;
      warning =
          "--insecure: the core's certificate is not verified; anyone on the path can read the "
          "traffic and the token";
      break;
  }
  if (config.plain) {
    options.tls = {};  // no context: plain TCP
    for (const auto& server : options.servers) {
      boost::system::error_code ec;
      const auto ip = boost::asio::ip::make_address(server.host, ec);
      if (server.host != "localhost" && (ec || !ip.is_loopback())) {
        warning = "--plain: no TLS to the core at " + server.host +
                  "; the token and the traffic cross the network in clear text";
      }
    }
  } else {
    auto client_tls = transport::make_client_tls(tls);
    if (!client_tls) return client_tls.error();
    options.tls = std::move(client_tls).value();
  }

  options.tunnels.clear();
  for (std::size_t i = 0; i < config.tunnels.size(); ++i) {
    const TunnelConfig& t = config.tunnels[i];
    if (t.type != "http" && t.type != "tcp" && t.type != "udp") {
      return common::fail("tunnels[" + std::to_string(i) + "]: unknown tunnel type " + t.type);
    }
    auto local = parse_local_target(t.local);
    if (!local) {
      return common::fail(
          (config.tunnels.size() == 1 ? "TARGET" : "tunnels[" + std::to_string(i) + "].local") +
          std::string(": ") + local.error().message);
    }
    ForwardSpec spec;
    spec.local = local.value();
    spec.request.type = t.type;
    spec.request.subdomain = t.subdomain;
    spec.request.hostname = t.hostname;
    spec.request.remote_port = t.remote_port;
    spec.request.local = spec.local.to_string();
    if (!t.bandwidth.empty()) {
      auto rate = common::parse_byte_rate(t.bandwidth);
      if (!rate) {
        return common::fail("tunnels[" + std::to_string(i) +
                            "].bandwidth: " + rate.error().message);
      }
      spec.request.bandwidth = rate.value();
    }
    using protocol::ProxyProtocol;
    spec.proxy_protocol = t.proxy_protocol == "v1"   ? ProxyProtocol::kV1
                          : t.proxy_protocol == "v2" ? ProxyProtocol::kV2
                                                     : ProxyProtocol::kNone;
    spec.request.proxy_protocol = t.proxy_protocol;
    spec.request.cidr_allow = t.cidr_allow;
    spec.request.cidr_deny = t.cidr_deny;
    for (const std::string& entry : t.basic_auth) {
      spec.request.basic_auth.push_back(basic_auth_for_core(entry));
    }
    auto health = parse_health_check(t.health_check);
    if (!health) {
      return common::fail("tunnels[" + std::to_string(i) +
                          "].health_check: " + health.error().message);
    }
    spec.health = std::move(health).value();
    spec.health.interval = t.health_interval;
    spec.health.timeout = t.health_timeout;
    spec.health.rise = t.health_rise;
    spec.health.fall = t.health_fall;
    options.tunnels.push_back(std::move(spec));
  }
  auto allow = parse_local_rules(config.allow_local);
  if (!allow) return common::fail("allow_local: " + allow.error().message);
  options.allow_local = std::move(allow).value();
  // No tunnels of its own: it serves what the core assigns to it (a registered agent).
  options.assigned = options.tunnels.empty();
  if (options.agent_id.empty()) options.agent_id = default_agent_id();
  options.name = config.name;
  options.group = config.group;
  return options;
}

int run_cli(int argc, char** argv) {
  CLI::App app{"tunnel-agent: exposes local HTTP, TCP and UDP services through a tunnel-core"};
  // `tunnel-agent --config FILE` is what people type: it means `start --config FILE`.
  app.require_subcommand(0, 1);
  app.fallthrough();
  Flags flags;
  const auto add_common = [&](CLI::App& cmd) {
    cmd.add_option("--server", flags.servers,
                   "the core's agent address HOST:PORT (localhost:8443); several cores: "
                   "comma-separated or the flag repeated (sessions to each)");
    cmd.add_option("--connections", flags.connections,
                   "sessions per core, new streams spread over them (default 1, at most 8)");
    cmd.add_option("--name", flags.name,
                   "the agent's name, which the core's routes send traffic to (default: the "
                   "generated agent id)");
    cmd.add_option("--group", flags.group, "a group of agents the core's routes may name");
    cmd.add_option("--session-max-age", flags.session_max_age,
                   "replace a session older than this (e.g. 1h): the new one first, then the "
                   "old one drains (default 0: never)");
    auto* token = cmd.add_option("--token", flags.token,
                                 "account token (default: <data-dir>/agent.token); visible in ps");
    cmd.add_option("--token-file", flags.token_file, "read the account token from FILE")
        ->excludes(token);
    cmd.add_option("--ca", flags.ca, "PEM file to verify the core's certificate");
    cmd.add_option("--fingerprint", flags.fingerprint, "pin the core's certificate SHA-256");
    cmd.add_flag("--insecure", flags.insecure, "do not verify the core's certificate");
    cmd.add_flag("--plain", flags.plain,
                 "no TLS: connect to the core's plain-TCP agent listener (loopback, benchmarks)");
    cmd.add_option("--data-dir", flags.data_dir,
                   "where a local core keeps tls.crt and agent.token");
    cmd.add_option("--log-format", flags.log_format, "text or json");
    cmd.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error");
    cmd.add_option("--metrics-addr", flags.metrics_addr,
                   "serve /metrics on HOST:PORT (a bare :PORT is 127.0.0.1; off by default)");
    cmd.add_option("--inspect", flags.inspect,
                   "the request inspector (web API on --inspect-addr): true (default) or false");
    cmd.add_option("--inspect-addr", flags.inspect_addr,
                   "where the inspector listens, loopback only (127.0.0.1:4040; the next free "
                   "port when taken; port 0: any)");
    cmd.add_option("--inspect-password", flags.inspect_password,
                   "needed to read the inspector (Basic, any user, or Bearer); required when "
                   "--inspect-addr is not loopback");
    cmd.add_option("--inspect-db-size", flags.inspect_db_size,
                   "bytes of requests the inspector keeps in all (52428800); 0 keeps none");
    cmd.add_option("--inspect-body-cap", flags.inspect_body_cap,
                   "body bytes the inspector keeps per request and direction (10485760)");
    cmd.add_option("--otlp-endpoint", flags.otlp_endpoint,
                   "send OpenTelemetry spans to this OTLP/HTTP URL (http://collector:4318)");
    cmd.add_option("--trace-sample-ratio", flags.trace_sample_ratio,
                   "share of new traces kept: 0.01 or 1% (default 1)");
  };
  add_common(app);
  app.add_option("--config", flags.config, "without a subcommand: the same as start --config FILE");

  CLI::App* http = app.add_subcommand("http", "forward one public hostname to a local HTTP app");
  http->add_option("TARGET", flags.target, "PORT, HOST:PORT or http://HOST:PORT")->required();
  http->add_option("--subdomain", flags.subdomain,
                   "serve NAME.<domain of the core> (default: the agent id, this machine's "
                   "host name and 6 random hex digits, new at every start)");
  http->add_option("--hostname", flags.hostname, "serve a custom domain your account owns");
  http->add_option("--config", flags.config, "YAML file with defaults (its tunnels are ignored)");
  const auto add_tunnel_options = [&](CLI::App& cmd, bool proxy_protocol) {
    if (proxy_protocol) {
      cmd.add_option("--proxy-protocol", flags.proxy_protocol,
                     "send a PROXY protocol header (v1 or v2) with the client's address to the "
                     "local app");
      cmd.add_option("--health-check", flags.health_check,
                     "check the local app: tcp (connect) or http:/PATH (GET, 2xx/3xx); an "
                     "unhealthy tunnel gets no requests until it recovers");
      cmd.add_option("--health-interval", flags.health_interval,
                     "time between health checks (default 10s)");
      cmd.add_option("--health-timeout", flags.health_timeout,
                     "a check slower than this fails (default 2s)");
      cmd.add_option("--health-rise", flags.health_rise,
                     "passed checks in a row that make the tunnel healthy again (default 2)");
      cmd.add_option("--health-fall", flags.health_fall,
                     "failed checks in a row that make the tunnel unhealthy (default 3)");
    }
    cmd.add_option("--bandwidth", flags.bandwidth,
                   "limit this tunnel, each direction (e.g. 1MiB/s, 100Mbit/s)");
    cmd.add_option("--cidr-allow", flags.cidr_allow,
                   "only clients in this CIDR range may reach the tunnel (repeatable)");
    cmd.add_option("--cidr-deny", flags.cidr_deny,
                   "clients in this CIDR range may not reach the tunnel (repeatable)");
  };
  add_tunnel_options(*http, true);
  http->add_option("--basic-auth", flags.basic_auth,
                   "USER:PASSWORD visitors must give (repeatable; the password 8-128 "
                   "characters, sent to the core only as a hash)");
  std::vector<CLI::App*> port_commands;
  for (const char* type : {"tcp", "udp"}) {
    const std::string what = std::string(type) == "tcp" ? "TCP" : "UDP";
    std::string description = "forward a public ";
    description.append(what)
        .append(" port of the core to a local ")
        .append(what)
        .append(" service");
    CLI::App* cmd = app.add_subcommand(type, description);
    cmd->add_option("TARGET", flags.target, "PORT or HOST:PORT of the local service")->required();
    cmd->add_option("--remote-port", flags.remote_port,
                    "the public port to ask for (default 0: the core picks one)")
        ->check(CLI::Range(0, 65535));
    cmd->add_option("--config", flags.config, "YAML file with defaults (its tunnels are ignored)");
    add_tunnel_options(*cmd, std::string(type) == "tcp");
    port_commands.push_back(cmd);
  }
  CLI::App* start = app.add_subcommand(
      "start",
      "open every tunnel of a config file; without tunnels, serve what the core assigns to this "
      "agent (an agent registered through the core's API)");
  start->add_option("--config", flags.config, "the agent's YAML config file");
  start->add_option("--allow-local", flags.allow_local,
                    "HOST:PORTS the core may assign as a local target (repeatable; default "
                    "loopback only: localhost:*, 127.0.0.0/8:*, [::1]:*)");
  CLI::App* version = app.add_subcommand("version", "print the version");
  std::string check_file;
  CLI::App* check = app.add_subcommand("check-config", "validate a config file and exit");
  check->add_option("FILE", check_file, "the agent's YAML config file")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (app.get_subcommands().empty()) {
    if (!flags.config) {
      app.exit(CLI::RequiredError::Subcommand(1));
      return kExitUsage;
    }
    // Falls through to `start`: the flags layer below opens the file's tunnels.
  }
  if (version->parsed()) {
    std::cout << "tunnel-agent " << kAgentVersion << "\n";
    return 0;
  }
  if (check->parsed()) {
    const LoadResult loaded = load_config_file(check_file);
    if (!loaded.ok()) {
      std::cerr << format_errors(loaded.errors, check_file);
      return 1;
    }
    std::cout << check_file << ": ok (" << loaded.config.tunnels.size() << " tunnel"
              << (loaded.config.tunnels.size() == 1 ? "" : "s") << ")\n";
    return 0;
  }

  common::Layers<Config> layers;
  layers.file = flags.config;
  layers.getenv = [](const char* name) { return std::getenv(name); };
  layers.check_after_env = true;
  layers.flags = [&](Config& config) -> std::vector<ConfigError> {
    // An empty --token would fall back to <data_dir>/agent.token without a word.
    if (flags.token && flags.token->find_first_not_of(" \t\r\n\f\v") == std::string::npos) {
      return {{0, 0,
               "--token: the token is " +
                   std::string(flags.token->empty() ? "empty" : "only whitespace") +
                   "; give the account's token (better with --token-file FILE or "
                   "TUNNEL_TOKEN)"}};
    }
    apply_flags(flags, config);
    if (flags.session_max_age) {
      auto age = common::parse_duration(*flags.session_max_age);
      if (!age) return {{0, 0, "--session-max-age: " + age.error().message}};
      config.session_max_age = age.value();
    }
    if (flags.token_file) {
      auto token = common::read_token_file(*flags.token_file);
      if (!token) return {{0, 0, "--token-file: " + token.error().message}};
      config.token = std::move(token).value();
    }
    if (http->parsed()) {
      TunnelConfig tunnel;
      tunnel.local = flags.target;
      tunnel.subdomain = flags.subdomain.value_or("");
      tunnel.hostname = flags.hostname.value_or("");
      tunnel.proxy_protocol = flags.proxy_protocol.value_or("");
      tunnel.bandwidth = flags.bandwidth.value_or("");
      tunnel.cidr_allow = flags.cidr_allow;
      tunnel.cidr_deny = flags.cidr_deny;
      tunnel.basic_auth = flags.basic_auth;
      if (auto error = apply_health_flags(flags, tunnel)) return {{0, 0, *error}};
      config.tunnels = {tunnel};
    } else if (auto cmd = std::find_if(port_commands.begin(), port_commands.end(),
                                       [](CLI::App* c) { return c->parsed(); });
               cmd != port_commands.end()) {
      TunnelConfig tunnel;
      tunnel.type = (*cmd)->get_name();
      tunnel.local = flags.target;
      tunnel.remote_port = flags.remote_port;
      tunnel.proxy_protocol = flags.proxy_protocol.value_or("");
      tunnel.bandwidth = flags.bandwidth.value_or("");
      tunnel.cidr_allow = flags.cidr_allow;
      tunnel.cidr_deny = flags.cidr_deny;
      if (auto error = apply_health_flags(flags, tunnel)) return {{0, 0, *error}};
      config.tunnels = {tunnel};
    }
    return {};
  };
  auto loaded = common::load_layered(config_schema(), layers);
  switch (loaded.failed) {
    case common::ConfigLayer::kNone:
      break;
    case common::ConfigLayer::kFile:
      return usage_error(format_errors(loaded.errors, *flags.config));
    case common::ConfigLayer::kEnvironmentCheck:
      return usage_error(describe(loaded.errors, "environment"));
    case common::ConfigLayer::kEnvironment:
    case common::ConfigLayer::kFlags:
    case common::ConfigLayer::kCheck:
      return usage_error(describe(loaded.errors, ""));
  }
  Config config = std::move(loaded.config);

  if (auto logging = observability::init_logging(config.log_format, config.log_level); !logging) {
    return usage_error(logging.error().message);
  }
  std::string warning;
  auto options = make_connector_options(config, warning);
  if (!options) return usage_error(options.error().message);
  if (!warning.empty()) spdlog::warn("{}", warning);
  if (flags.token) spdlog::warn("{}", kTokenFlagWarning);
  return run(std::move(options).value(), config);
}

}  // namespace tunnel::agent

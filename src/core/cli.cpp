#include "core/cli.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <tuple>

#include "common/config_reader.hpp"
#include "common/duration.hpp"
#include "common/version.hpp"
#include "core/control/config.hpp"
#include "core/control/store/store.hpp"
#include "core/inspect.hpp"
#include "core/replay.hpp"
#include "core/server.hpp"
#include "ctl/http_client.hpp"
#include "observability/log.hpp"

namespace tunnel::core {
namespace {

int check_config(const std::string& file) {
  auto loaded = load_config_file(file);
  if (!loaded.ok()) {
    std::cerr << format_errors(loaded.errors, file);
    return 1;
  }
  std::cout << file << ": ok\n";
  return 0;
}

// `tunnel-core inspect`: GET /debug/connections from a running core's admin listener, printed
// as tables (or the JSON as it came). 0 = printed, 1 = the core could not be asked or refused.
int inspect(std::string admin, const InspectQuery& query, bool as_json) {
  if (admin.find("://") == std::string::npos) admin = "http://" + admin;
  auto url = ctl::parse_url(admin);
  if (!url) {
    std::cerr << "tunnel-core inspect: --admin: " << url.error().message << "\n";
    return kExitUsage;
  }
  ctl::ClientOptions options;
  options.timeout = std::chrono::seconds(10);
  ctl::HttpClient client(url.value(), options);
  std::string target =
      url.value().base_path + "/debug/connections?limit=" + std::to_string(query.limit);
  if (!query.agent.empty()) {
    target += "&agent=";
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (const unsigned char c : query.agent) {
      if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
        target += static_cast<char>(c);
      } else {
        target += '%';
        target += kHex[c >> 4];
        target += kHex[c & 15];
      }
    }
  }
  auto response = client.send(ctl::HttpRequest{"GET", target, {}, ""});
  if (!response) {
    std::cerr << "tunnel-core inspect: " << admin << ": " << response.error().message << "\n";
    return 1;
  }
  const auto& r = response.value();
  const bool is_json = r.content_type.starts_with("application/json");
  if (!is_json) {
    std::cerr << "tunnel-core inspect: " << admin << " answered " << r.status << ": " << r.body;
    return 1;
  }
  if (as_json) {
    std::cout << r.body;
  } else {
    const auto doc = nlohmann::json::parse(r.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      std::cerr << "tunnel-core inspect: " << admin << " did not answer JSON\n";
      return 1;
    }
    std::cout << render_connections(doc);
  }
  return r.status == 200 ? 0 : 1;
}

// `tunnel-core migrate`: brings the store named by the configuration (store.url, or SQLite in
// the data dir) to this binary's schema. 0 = done (or nothing to do), 1 = it failed.
int migrate(const std::string& config_file, const std::string& data_dir_flag) {
  Config config;
  if (!config_file.empty()) {
    auto loaded = load_config_file(config_file);
    if (!loaded.ok()) {
      std::cerr << format_errors(loaded.errors, config_file);
      return kExitUsage;
    }
    config = std::move(loaded.config);
  }
  if (const char* env = std::getenv("TUNNEL_DATA_DIR"); env && *env) config.data_dir = env;
  if (!data_dir_flag.empty()) config.data_dir = data_dir_flag;
  if (::mkdir(config.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    std::cerr << "tunnel-core migrate: " << config.data_dir << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  // Open without migrating to say from which version, then migrate.
  store::StoreOptions options;
  options.url = config.store.url;
  options.data_dir = config.data_dir;
  options.migrate_to = 0;
  auto opened = store::open_store(options);
  if (!opened) {
    std::cerr << "tunnel-core migrate: " << opened.error().message << "\n";
    return 1;
  }
  auto& s = *opened.value();
  auto version = s.schema_version();
  const int before = version ? version.value() : 0;
  if (auto done = s.migrate(); !done) {
    std::cerr << "tunnel-core migrate: " << done.error().message << "\n";
    return 1;
  }
  const int after = store::Store::latest_schema_version();
  const std::string where =
      config.store.url.empty() ? config.data_dir + "/store.db" : "the store (store.url)";
  if (before == after) {
    std::cout << where << ": schema version " << after << ", up to date\n";
  } else {
    std::cout << where << ": schema version " << before << " -> " << after << "\n";
  }
  return 0;
}

// `tunnel-core upgrade`: asks the core running with this data dir (its control socket) to
// start the new binary, hand it the listening sockets and drain. 0 = the new process serves;
// 1 = it failed and the old one keeps serving (the message says why).
int request_upgrade(const std::string& config_file, const std::string& data_dir_flag,
                    const std::string& binary, std::chrono::milliseconds timeout) {
  Config config;
  if (!config_file.empty()) {
    auto loaded = load_config_file(config_file);
    if (!loaded.ok()) {
      std::cerr << format_errors(loaded.errors, config_file);
      return kExitUsage;
    }
    config = std::move(loaded.config);
  }
  if (const char* env = std::getenv("TUNNEL_DATA_DIR"); env && *env) config.data_dir = env;
  if (!data_dir_flag.empty()) config.data_dir = data_dir_flag;
  std::string path_to = binary;
  if (!path_to.empty() && path_to.front() != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof(cwd)) != nullptr) path_to = std::string(cwd) + "/" + path_to;
  }
  const std::string path = config.data_dir + "/control.sock";
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    std::cerr << "tunnel-core upgrade: " << path << ": path too long for a unix socket; send "
              << "SIGUSR2 to the core instead\n";
    return 1;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    std::cerr << "tunnel-core upgrade: no core answers on " << path << " (" << std::strerror(errno)
              << "); is one running with data dir " << config.data_dir << "?\n";
    if (fd >= 0) ::close(fd);
    return 1;
  }
  const std::string command = path_to.empty() ? "upgrade" : "upgrade " + path_to;
  if (::send(fd, command.data(), command.size(), MSG_NOSIGNAL) < 0) {
    std::cerr << "tunnel-core upgrade: " << std::strerror(errno) << "\n";
    ::close(fd);
    return 1;
  }
  pollfd p{fd, POLLIN, 0};
  char reply[1024];
  ssize_t n = -1;
  if (::poll(&p, 1, static_cast<int>(timeout.count())) > 0) n = ::recv(fd, reply, sizeof(reply), 0);
  ::close(fd);
  if (n <= 0) {
    std::cerr << "tunnel-core upgrade: no answer from the core within " << timeout.count() / 1000
              << " s (its log says what happened)\n";
    return 1;
  }
  std::string answer(reply, static_cast<std::size_t>(n));
  while (!answer.empty() && answer.back() == '\n') answer.pop_back();
  if (answer.starts_with("ok ")) {
    std::cout << "tunnel-core upgrade: the new process (pid " << answer.substr(3)
              << ") is serving; the old one drains and exits\n";
    return 0;
  }
  std::cerr << "tunnel-core upgrade: " << answer << "\n";
  return 1;
}

constexpr const char* kTokenFlagWarning =
    "--token puts the token on the command line, where every local user sees it (ps, "
    "/proc/PID/cmdline): use --token-file FILE or the TUNNEL_TOKEN environment variable";

struct Flags {
  std::string config_file, data_dir, domain, agent_addr, agent_plain_addr, http_addr, https_addr,
      admin_addr, api_addr;
  std::vector<std::string> tokens, token_files;
  std::string tunnels_host;
  std::string log_format, log_level, shutdown_grace, header_timeout, response_timeout;
  std::uint32_t workers = 0;
};

// The command line's layer, over the file and the environment. Returns its errors.
std::vector<ConfigError> apply_flags(const CLI::App& app, const Flags& f, Config& config) {
  const auto set = [&](const std::string& value, std::string& target) {
    if (!value.empty()) target = value;
  };
  set(f.data_dir, config.data_dir);
  set(f.domain, config.domain);
  set(f.agent_addr, config.listen.agent);
  // Optional listeners: an empty value given on the command line turns them off.
  const auto set_listener = [&](const char* flag, const std::string& value, std::string& target) {
    if (app.count(flag) > 0) target = value;
  };
  set_listener("--agent-plain-addr", f.agent_plain_addr, config.listen.agent_plain);
  set_listener("--http-addr", f.http_addr, config.listen.http);
  set_listener("--https-addr", f.https_addr, config.listen.https);
  set_listener("--admin-addr", f.admin_addr, config.listen.admin);
  set_listener("--api-addr", f.api_addr, config.listen.api);
  set(f.tunnels_host, config.listen.tunnels_host);
  set(f.log_format, config.log.format);
  set(f.log_level, config.log.level);
  if (app.count("--workers") > 0) config.workers = f.workers;
  for (const auto& [flag, text, target] :
       {std::tuple{"--shutdown-grace", &f.shutdown_grace, &config.limits.shutdown_grace},
        std::tuple{"--header-timeout", &f.header_timeout, &config.limits.header_timeout},
        std::tuple{"--response-timeout", &f.response_timeout, &config.limits.response_timeout}}) {
    if (text->empty()) continue;
    auto parsed = common::parse_duration(*text);
    if (!parsed) return {{0, 0, std::string(flag) + ": " + parsed.error().message}};
    *target = parsed.value();
  }
  std::vector<std::string> tokens = f.tokens;
  for (const auto& file : f.token_files) {
    auto token = common::read_token_file(file);
    if (!token) return {{0, 0, "--token-file: " + token.error().message}};
    tokens.push_back(std::move(token).value());
  }
  if (!tokens.empty()) add_default_account_tokens(config, tokens);
  return {};
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "tunnel-core: the public side of the tunnel. Agents dial in over TLS; public "
      "HTTP traffic for NAME.<domain> flows down to them."};
  app.set_version_flag("--version", "tunnel-core " + std::string(common::kVersion));
  Flags f;
  app.add_option("--config", f.config_file, "YAML configuration file")->check(CLI::ExistingFile);
  app.add_option("--data-dir", f.data_dir,
                 "Where the generated certificate and token live (./tunnel-data)");
  app.add_option("--domain", f.domain, "Base domain: tunnels are NAME.<domain> (localhost)");
  app.add_option("--agent-addr", f.agent_addr, "TLS listener for agents (:8443)");
  app.add_option("--agent-plain-addr", f.agent_plain_addr,
                 "Plain-TCP listener for agents, no TLS: loopback or behind a TLS proxy (off)");
  app.add_option("--http-addr", f.http_addr, "Public HTTP listener (:8080; \"\" = off)");
  app.add_option("--https-addr", f.https_addr, "Public HTTPS listener (off)");
  app.add_option("--admin-addr", f.admin_addr,
                 "Admin listener: /healthz /readyz /metrics (127.0.0.1:9000; \"\" = off)");
  app.add_option("--api-addr", f.api_addr,
                 "TLS listener for the REST API only (/api/v1), for remote use (off)");
  app.add_option("--tunnels-host", f.tunnels_host,
                 "IP address for the public ports of tcp/udp tunnels (0.0.0.0)");
  app.add_option("--token", f.tokens,
                 "An agent token for account \"default\" (repeatable; visible in ps)");
  app.add_option("--token-file", f.token_files,
                 "A file holding an agent token for account \"default\" (repeatable)");
  app.add_option("--log-format", f.log_format, "text or json");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error");
  app.add_option("--shutdown-grace", f.shutdown_grace,
                 "How long in-flight requests may finish after SIGTERM (30s)");
  app.add_option("--header-timeout", f.header_timeout,
                 "Time a client has to send a request head (10s)");
  app.add_option("--response-timeout", f.response_timeout,
                 "Time the app has to start its response (60s)");
  app.add_option("--workers", f.workers, "Worker threads (0 = one per core)");
  std::string check_file;
  auto* check = app.add_subcommand("check-config", "Validate a configuration file and exit");
  check->add_option("FILE", check_file, "The YAML file")->required();
  std::string migrate_config, migrate_data_dir;
  auto* migrate_cmd =
      app.add_subcommand("migrate", "Bring the store's schema to this version and exit");
  migrate_cmd->add_option("--config", migrate_config, "YAML configuration file (store.url)")
      ->check(CLI::ExistingFile);
  migrate_cmd->add_option("--data-dir", migrate_data_dir,
                          "Data directory (the SQLite store is <data-dir>/store.db)");
  std::string inspect_admin = "127.0.0.1:9000";
  InspectQuery inspect_query;
  bool inspect_json = false;
  auto* inspect_cmd = app.add_subcommand(
      "inspect", "Show the agents, sessions, streams and public connections of a running core");
  inspect_cmd->add_option("--admin", inspect_admin,
                          "The core's admin listener (127.0.0.1:9000, or http://host:port)");
  inspect_cmd->add_option("--agent", inspect_query.agent,
                          "One agent (its id, or account/id): its sessions and streams");
  inspect_cmd
      ->add_option("--limit", inspect_query.limit,
                   "Sessions listed, or streams per session with --agent (100)")
      ->check(CLI::Range(std::size_t{1}, kInspectMaxLimit));
  inspect_cmd->add_flag("--json", inspect_json, "Print the JSON as the core answered it");
  std::string upgrade_config, upgrade_data_dir, upgrade_binary, upgrade_timeout = "60s";
  auto* upgrade_cmd = app.add_subcommand(
      "upgrade",
      "Replace the running core (same data dir) by a new binary without dropping connections: "
      "it hands its listening sockets over and drains (SIGUSR2 does the same)");
  upgrade_cmd->add_option("--config", upgrade_config, "YAML configuration file (data_dir)")
      ->check(CLI::ExistingFile);
  upgrade_cmd->add_option("--data-dir", upgrade_data_dir, "The running core's data directory");
  upgrade_cmd->add_option("--binary", upgrade_binary,
                          "The new binary (default: the running one's path, e.g. after a "
                          "package upgrade replaced it)");
  upgrade_cmd->add_option("--timeout", upgrade_timeout, "How long to wait for the answer (60s)");
  ReplayOptions replay_options;
  std::string replay_timeout = "10s";
  auto* replay = app.add_subcommand(
      "replay",
      "Send recorded exchanges to a target and report the differences (exit 1 when some "
      "differ, 2 for bad input)");
  replay
      ->add_option("FILE", replay_options.files,
                   "Recording files, or a tunnel's recording directory (rotated files in order)")
      ->required();
  replay->add_option("--to", replay_options.to, "Where to send them: http(s)://host:port[/prefix]")
      ->required();
  replay->add_option("--rate", replay_options.rate, "original, N/s or max (max)");
  replay->add_option("--filter", replay_options.filters,
                     "method=GET, path=/api/* (glob) or /api (prefix), status=200 or status=5xx; "
                     "repeat to combine");
  replay->add_option("--concurrency", replay_options.concurrency, "Requests at a time (1)");
  replay->add_option("--timeout", replay_timeout, "Per request (10s)");
  replay->add_option("--compare-header", replay_options.compare_headers,
                     "Response fields to compare (Content-Type)");
  replay->add_flag("--keep-host", replay_options.keep_host,
                   "Send the recorded Host instead of the target's");
  replay->add_flag("--json", replay_options.json, "The report as JSON");
  replay->add_flag("--insecure", replay_options.insecure, "https: do not verify the target");
  replay->add_option("--ca", replay_options.ca, "https: trust this CA (PEM)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and the hint to --help
    return kExitUsage;
  }

  if (*check) return check_config(check_file);
  if (*inspect_cmd) return inspect(inspect_admin, inspect_query, inspect_json);
  if (*upgrade_cmd) {
    auto timeout = common::parse_duration(upgrade_timeout);
    if (!timeout) {
      std::cerr << "tunnel-core upgrade: --timeout: " << timeout.error().message << "\n";
      return kExitUsage;
    }
    return request_upgrade(upgrade_config.empty() ? f.config_file : upgrade_config,
                           upgrade_data_dir.empty() ? f.data_dir : upgrade_data_dir, upgrade_binary,
                           std::chrono::duration_cast<std::chrono::milliseconds>(timeout.value()));
  }
  if (*replay) {
    const auto timeout = common::parse_duration(replay_timeout);
    if (!timeout || timeout.value().count() <= 0) {
      std::cerr << "tunnel-core replay: --timeout \"" << replay_timeout
                << "\" is not a positive duration\n";
      return kExitUsage;
    }
    replay_options.timeout = timeout.value();
    return run_replay(replay_options, std::cout, std::cerr);
  }
  if (*migrate_cmd) {
    return migrate(migrate_config.empty() ? f.config_file : migrate_config,
                   migrate_data_dir.empty() ? f.data_dir : migrate_data_dir);
  }

  common::Layers<Config> layers;
  if (!f.config_file.empty()) layers.file = f.config_file;
  layers.getenv = [](const char* name) { return std::getenv(name); };
  layers.flags = [&](Config& config) { return apply_flags(app, f, config); };
  auto loaded = common::load_layered(config_schema(), layers);
  switch (loaded.failed) {
    case common::ConfigLayer::kNone:
      break;
    case common::ConfigLayer::kFile:
      std::cerr << format_errors(loaded.errors, f.config_file);
      return kExitUsage;
    case common::ConfigLayer::kEnvironment:
    case common::ConfigLayer::kEnvironmentCheck:
      std::cerr << format_errors(loaded.errors, "environment");
      return kExitUsage;
    case common::ConfigLayer::kFlags:
      for (const auto& e : loaded.errors) std::cerr << "tunnel-core: " << e.message << "\n";
      return kExitUsage;
    case common::ConfigLayer::kCheck:
      std::cerr << format_errors(loaded.errors, f.config_file.empty() ? "flags" : f.config_file);
      return kExitUsage;
  }
  Config config = std::move(loaded.config);
  if (auto logging = observability::init_logging(config.log.format, config.log.level); !logging) {
    std::cerr << "tunnel-core: " << logging.error().message << "\n";
    return kExitUsage;
  }

  if (app.count("--token") > 0) spdlog::warn("{}", kTokenFlagWarning);

  Server server(std::move(config));
  server.set_command_line(std::vector<std::string>(argv, argv + argc));
  // SIGHUP: the same layers read again (the file may have changed; the flags have not).
  server.set_config_reader(
      [&]() -> common::Result<Config> {
        auto again = common::load_layered(config_schema(), layers);
        if (again.failed != common::ConfigLayer::kNone) {
          std::string errors =
              format_errors(again.errors, f.config_file.empty() ? "flags" : f.config_file);
          while (!errors.empty() && errors.back() == '\n') errors.pop_back();
          std::replace(errors.begin(), errors.end(), '\n', ';');
          return common::fail(errors);
        }
        return std::move(again.config);
      },
      f.config_file);
  if (auto started = server.start(); !started) {
    std::cerr << "tunnel-core: " << started.error().message << "\n";
    return 1;
  }
  std::cout << server.banner() << std::flush;
  return server.run();
}

}  // namespace tunnel::core

#include "core/cli.hpp"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "common/duration.hpp"
#include "common/version.hpp"
#include "core/control/config.hpp"
#include "core/server.hpp"
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

struct Flags {
  std::string config_file, data_dir, domain, agent_addr, agent_plain_addr, http_addr, https_addr,
      admin_addr;
  std::vector<std::string> tokens;
  std::string tunnels_host;
  std::string log_format, log_level, shutdown_grace, header_timeout, response_timeout;
  std::uint32_t workers = 0;
};

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
  app.add_option("--tunnels-host", f.tunnels_host,
                 "IP address for the public ports of tcp/udp tunnels (0.0.0.0)");
  app.add_option("--token", f.tokens, "An agent token for account \"default\" (repeatable)");
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and the hint to --help
    return kExitUsage;
  }

  if (*check) return check_config(check_file);

  std::vector<ConfigError> errors;
  Config config;
  std::string source = "flags";
  if (!f.config_file.empty()) {
    auto loaded = load_config_file(f.config_file);
    if (!loaded.ok()) {
      std::cerr << format_errors(loaded.errors, f.config_file);
      return kExitUsage;
    }
    config = std::move(loaded.config);
  }
  errors = apply_env(config, [](const char* name) { return std::getenv(name); });
  if (!errors.empty()) {
    std::cerr << format_errors(errors, "environment");
    return kExitUsage;
  }
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
  set(f.tunnels_host, config.listen.tunnels_host);
  set(f.log_format, config.log.format);
  set(f.log_level, config.log.level);
  if (app.count("--workers") > 0) config.workers = f.workers;
  const auto duration = [&](const std::string& flag, const std::string& text,
                            std::chrono::milliseconds& target) {
    if (text.empty()) return true;
    auto parsed = common::parse_duration(text);
    if (!parsed) {
      std::cerr << "tunnel-core: " << flag << ": " << parsed.error << "\n";
      return false;
    }
    target = *parsed.value;
    return true;
  };
  if (!duration("--shutdown-grace", f.shutdown_grace, config.limits.shutdown_grace) ||
      !duration("--header-timeout", f.header_timeout, config.limits.header_timeout) ||
      !duration("--response-timeout", f.response_timeout, config.limits.response_timeout)) {
    return kExitUsage;
  }
  if (!f.tokens.empty()) add_default_account_tokens(config, f.tokens);
  errors = validate(config);
  if (!errors.empty()) {
    std::cerr << format_errors(errors, f.config_file.empty() ? "flags" : f.config_file);
    return kExitUsage;
  }
  if (auto error = observability::init_logging(config.log.format, config.log.level);
      !error.empty()) {
    std::cerr << "tunnel-core: " << error << "\n";
    return kExitUsage;
  }

  Server server(std::move(config));
  if (auto error = server.start(); !error.empty()) {
    std::cerr << "tunnel-core: " << error << "\n";
    return 1;
  }
  std::cout << server.banner() << std::flush;
  return server.run();
}

}  // namespace tunnel::core

#include "ctl/command.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ctl/http_client.hpp"

namespace tunnel::ctl {
namespace {

using nlohmann::json;

struct Flags {
  std::optional<std::string> server, key, key_file, output, ca;
  std::string data_dir = "./tunnel-data";
  bool insecure = false;
  double timeout = 10;
  std::optional<std::int64_t> limit;
  // tunnels
  std::optional<std::string> name, type, domain, local, bandwidth, agent_ref, if_match;
  std::optional<std::int64_t> port, agent, account, id, user, tunnel;
  std::optional<bool> proxy_protocol;
  // agents create
  std::optional<std::string> agent_server;
  // keys create
  std::optional<std::string> role, expires_at;
  // usage
  std::optional<std::string> from, to, by;
  // quota set
  std::optional<std::int64_t> max_agents, max_tunnels, max_connections, max_requests_per_second;
  std::optional<std::string> bytes_per_month;
};

// "1048576" -> 1048576 (a number), "10MiB/s" -> the string: the API takes either.
json number_or_string(const std::string& s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc() && end == s.data() + s.size()) return v;
  return s;
}

std::string key_file_path(const std::string& data_dir) {
  std::string dir = data_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/admin.key";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Environment process_environment() {
  Environment env;
  env.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): one thread
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
  env.read_file = [](const std::string& path) -> std::optional<std::string> {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) return std::nullopt;
    return s.str();
  };
  env.stdout_is_terminal = ::isatty(STDOUT_FILENO) == 1;
  return env;
}

ParseResult parse_command_line(const std::vector<std::string>& args, const Environment& env) {
  CLI::App app{
      "tunnelctl: manage a tunnel-core's tunnels, agents, keys and accounts through its "
      "REST API (docs/api.md)"};
  app.name("tunnelctl");
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(
      "Exit codes: 0 done, 1 the API refused or the server could not be reached, 2 bad usage.\n"
      "The key: --key, --key-file, TUNNEL_API_KEY, else <data-dir>/admin.key. A key given with\n"
      "--key is visible to other users in ps: prefer --key-file or TUNNEL_API_KEY.");
  Flags f;
  app.add_option("--server", f.server,
                 "the core's admin URL, http(s)://HOST:PORT (TUNNEL_API_URL, else "
                 "http://127.0.0.1:9000)");
  auto* key = app.add_option("--key", f.key, "API key tnk_... (visible in ps: prefer --key-file)");
  app.add_option("--key-file", f.key_file, "read the API key from FILE")->excludes(key);
  app.add_option("--data-dir", f.data_dir,
                 "a local core's data dir: the key defaults to its admin.key (./tunnel-data)");
  app.add_option("--output,-o", f.output,
                 "json or table (default: table on a terminal, json otherwise)")
      ->check(CLI::IsMember({"json", "table"}));
  app.add_option("--ca", f.ca, "PEM file to verify an https:// server's certificate");
  app.add_flag("--insecure", f.insecure, "do not verify an https:// server's certificate");
  app.add_option("--timeout", f.timeout, "seconds to connect and for each reply (10)")
      ->check(CLI::Range(0.1, 3600.0));

  Invocation inv;
  Request& r = inv.request;
  const auto add_limit = [&](CLI::App* c) {
    c->add_option("--limit", f.limit, "at most N items (default: all, page by page)")
        ->check(CLI::PositiveNumber);
  };
  const auto add_id = [&](CLI::App* c, const char* what) {
    c->add_option("ID", f.id, what)->required()->check(CLI::PositiveNumber);
  };

  // tunnels
  auto* tunnels = app.add_subcommand("tunnels", "tunnels: list, create, get, update, delete");
  tunnels->require_subcommand(1);
  auto* t_list = tunnels->add_subcommand("list", "list tunnels");
  t_list->add_option("--type", f.type, "http, tcp or udp");
  t_list->add_option("--agent", f.agent, "only those assigned to agent ID");
  t_list->add_option("--account", f.account, "only account ID's");
  add_limit(t_list);
  auto* t_create = tunnels->add_subcommand("create", "create a tunnel");
  const auto add_tunnel_fields = [&](CLI::App* c, bool create) {
    c->add_option("--name", f.name, "a DNS label under the base domain, or prefix-*");
    c->add_option("--domain", f.domain, "a custom domain (example.org, *.example.org)");
    c->add_option("--port", f.port, "the public port (tcp, udp)");
    c->add_option("--bandwidth", f.bandwidth, "bytes per second or 10MiB/s (0: the account's)");
    c->add_option("--proxy-protocol", f.proxy_protocol, "true or false");
    c->add_option(
        "--local", f.local,
        "HOST:PORT the assigned agent forwards to" + std::string(create ? "" : " (none: clear)"));
    if (create) {
      c->add_option("--type", f.type, "http, tcp or udp (http)");
      c->add_option("--agent", f.agent, "the registered agent ID that serves it");
      c->add_option("--account", f.account, "create it in account ID");
    } else {
      c->add_option("--agent", f.agent_ref, "the registered agent ID that serves it (none: clear)");
      c->add_option("--if-match", f.if_match, "only if its ETag is still this");
    }
  };
  add_tunnel_fields(t_create, true);
  auto* t_get = tunnels->add_subcommand("get", "show one tunnel and its live sessions");
  add_id(t_get, "tunnel id");
  auto* t_update = tunnels->add_subcommand("update", "change a tunnel's fields");
  add_id(t_update, "tunnel id");
  add_tunnel_fields(t_update, false);
  auto* t_delete = tunnels->add_subcommand("delete", "delete a tunnel (its connections close)");
  add_id(t_delete, "tunnel id");
  t_delete->add_option("--if-match", f.if_match, "only if its ETag is still this");

  // agents
  auto* agents = app.add_subcommand("agents", "registered agents: list, create, get, delete");
  agents->require_subcommand(1);
  auto* a_list = agents->add_subcommand("list", "list agents");
  a_list->add_option("--account", f.account, "only account ID's");
  add_limit(a_list);
  auto* a_create = agents->add_subcommand(
      "create", "register an agent: prints its token (once) and the command that runs it");
  a_create->add_option("--name", f.name, "the agent's name")->required();
  a_create->add_option("--account", f.account, "register it in account ID");
  a_create->add_option("--agent-server", f.agent_server,
                       "the core's agent address for the printed command (default: the one the "
                       "core answers)");
  auto* a_get = agents->add_subcommand("get", "show one agent and its live sessions");
  add_id(a_get, "agent id");
  auto* a_delete = agents->add_subcommand("delete", "remove an agent (its sessions close)");
  add_id(a_delete, "agent id");

  // keys
  auto* keys = app.add_subcommand("keys", "API keys: list, create, get, revoke");
  keys->require_subcommand(1);
  auto* k_list = keys->add_subcommand("list", "list the caller's keys (or --user's)");
  k_list->add_option("--user", f.user, "the keys of user ID (admins)");
  add_limit(k_list);
  auto* k_create = keys->add_subcommand("create", "create a key: prints its secret (once)");
  k_create->add_option("--name", f.name, "the key's name")->required();
  k_create->add_option("--role", f.role, "narrow it: owner, admin, member or viewer");
  k_create->add_option("--expires-at", f.expires_at, "Unix seconds or 2027-06-30T00:00:00Z");
  k_create->add_option("--user", f.user, "for user ID (admins)");
  auto* k_get = keys->add_subcommand("get", "show one key");
  add_id(k_get, "key id");
  auto* k_revoke = keys->add_subcommand("revoke", "revoke a key (refused from then on)");
  add_id(k_revoke, "key id");

  // usage
  auto* usage = app.add_subcommand("usage", "an account's traffic, by hour or day");
  usage->add_option("ACCOUNT", f.id, "account id")->required()->check(CLI::PositiveNumber);
  usage->add_option("--from", f.from, "Unix seconds or 2026-12-01T00:00:00Z (24 h before --to)");
  usage->add_option("--to", f.to, "Unix seconds or RFC 3339 UTC (now)");
  usage->add_option("--by", f.by, "hour or day (hour)");
  usage->add_option("--tunnel", f.tunnel, "only tunnel ID");

  // accounts
  auto* accounts = app.add_subcommand("accounts", "accounts: list, get, create");
  accounts->require_subcommand(1);
  auto* ac_list = accounts->add_subcommand("list", "list accounts (the operator sees all)");
  add_limit(ac_list);
  auto* ac_get = accounts->add_subcommand("get", "show one account");
  add_id(ac_get, "account id");
  auto* ac_create = accounts->add_subcommand("create", "create an account (operator admins)");
  ac_create->add_option("--name", f.name, "the account's name")->required();

  // quota
  auto* quota = app.add_subcommand("quota", "an account's quota: get, set");
  quota->require_subcommand(1);
  auto* q_get = quota->add_subcommand("get", "show an account's quota (0: unlimited)");
  q_get->add_option("ACCOUNT", f.id, "account id")->required()->check(CLI::PositiveNumber);
  auto* q_set =
      quota->add_subcommand("set", "change some of an account's limits (operator admins)");
  q_set->add_option("ACCOUNT", f.id, "account id")->required()->check(CLI::PositiveNumber);
  q_set->add_option("--max-agents", f.max_agents, "registered agents (0: unlimited)");
  q_set->add_option("--max-tunnels", f.max_tunnels, "tunnels (0: unlimited)");
  q_set->add_option("--max-connections", f.max_connections, "open connections (0: unlimited)");
  q_set->add_option("--max-requests-per-second", f.max_requests_per_second,
                    "HTTP requests per second (0: unlimited)");
  q_set->add_option("--bandwidth", f.bandwidth, "bytes per second or 50MiB/s (0: unlimited)");
  q_set->add_option("--bytes-per-month", f.bytes_per_month, "bytes or 100GiB (0: unlimited)");

  ParseResult result;
  std::ostringstream out, err;
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e, out, err);
    result.out = out.str();
    return result;
  } catch (const CLI::CallForAllHelp& e) {
    app.exit(e, out, err);
    result.out = out.str();
    return result;
  } catch (const CLI::ParseError& e) {
    app.exit(e, out, err);
    result.out = out.str();
    result.err = err.str();
    result.exit_code = kExitUsage;
    return result;
  }

  const auto usage_error = [&](const std::string& message) {
    result.err = "tunnelctl: " + message + "\nRun with --help for more information.\n";
    result.exit_code = kExitUsage;
    return result;
  };
  const auto id = [&] { return std::to_string(f.id.value_or(0)); };
  const auto set = [](json& body, const char* field, const auto& value) {
    if (value) body[field] = *value;
  };

  if (t_list->parsed()) {
    r.path = "/tunnels";
    if (f.type) r.query.emplace_back("type", *f.type);
    if (f.agent) r.query.emplace_back("agent", std::to_string(*f.agent));
    if (f.account) r.query.emplace_back("account", std::to_string(*f.account));
    r.paginate = true;
  } else if (t_create->parsed() || t_update->parsed()) {
    json body = json::object();
    set(body, "name", f.name);
    set(body, "domain", f.domain);
    set(body, "port", f.port);
    if (f.bandwidth) body["bandwidth"] = number_or_string(*f.bandwidth);
    set(body, "proxy_protocol", f.proxy_protocol);
    if (t_create->parsed()) {
      set(body, "type", f.type);
      set(body, "local", f.local);
      set(body, "agent", f.agent);
      set(body, "account", f.account);
      r.method = "POST";
      r.path = "/tunnels";
    } else {
      if (f.local) body["local"] = *f.local == "none" ? json(nullptr) : json(*f.local);
      if (f.agent_ref) {
        if (*f.agent_ref == "none") {
          body["agent"] = nullptr;
        } else {
          json v = number_or_string(*f.agent_ref);
          if (!v.is_number_integer() || v.get<std::int64_t>() <= 0) {
            return usage_error("--agent: an agent id or none, not \"" + *f.agent_ref + "\"");
          }
          body["agent"] = v;
        }
      }
      if (body.empty()) {
        return usage_error(
            "tunnels update: nothing to change (give --name, --domain, --port, "
            "--bandwidth, --proxy-protocol, --agent or --local)");
      }
      r.method = "PATCH";
      r.path = "/tunnels/" + id();
    }
    r.body = std::move(body);
  } else if (t_get->parsed()) {
    r.path = "/tunnels/" + id();
  } else if (t_delete->parsed()) {
    r.method = "DELETE";
    r.path = "/tunnels/" + id();
  } else if (a_list->parsed()) {
    inv.kind = Kind::agent;
    r.path = "/agents";
    if (f.account) r.query.emplace_back("account", std::to_string(*f.account));
    r.paginate = true;
  } else if (a_create->parsed()) {
    inv.kind = Kind::agent;
    json body = {{"name", *f.name}};
    set(body, "account", f.account);
    r.method = "POST";
    r.path = "/agents";
    r.body = std::move(body);
    inv.agent_create = true;
  } else if (a_get->parsed()) {
    inv.kind = Kind::agent;
    r.path = "/agents/" + id();
  } else if (a_delete->parsed()) {
    inv.kind = Kind::agent;
    r.method = "DELETE";
    r.path = "/agents/" + id();
  } else if (k_list->parsed()) {
    inv.kind = Kind::key;
    r.path = "/keys";
    if (f.user) r.query.emplace_back("user", std::to_string(*f.user));
    r.paginate = true;
  } else if (k_create->parsed()) {
    inv.kind = Kind::key;
    json body = {{"name", *f.name}};
    set(body, "role", f.role);
    if (f.expires_at) body["expires_at"] = number_or_string(*f.expires_at);
    set(body, "user", f.user);
    r.method = "POST";
    r.path = "/keys";
    r.body = std::move(body);
  } else if (k_get->parsed()) {
    inv.kind = Kind::key;
    r.path = "/keys/" + id();
  } else if (k_revoke->parsed()) {
    inv.kind = Kind::key;
    r.method = "DELETE";
    r.path = "/keys/" + id();
  } else if (usage->parsed()) {
    inv.kind = Kind::usage;
    r.path = "/accounts/" + id() + "/usage";
    if (f.from) r.query.emplace_back("from", *f.from);
    if (f.to) r.query.emplace_back("to", *f.to);
    if (f.by) r.query.emplace_back("by", *f.by);
    if (f.tunnel) r.query.emplace_back("tunnel", std::to_string(*f.tunnel));
  } else if (ac_list->parsed()) {
    inv.kind = Kind::account;
    r.path = "/accounts";
    r.paginate = true;
  } else if (ac_get->parsed()) {
    inv.kind = Kind::account;
    r.path = "/accounts/" + id();
  } else if (ac_create->parsed()) {
    inv.kind = Kind::account;
    r.method = "POST";
    r.path = "/accounts";
    r.body = json{{"name", *f.name}};
  } else if (q_get->parsed()) {
    inv.kind = Kind::quota;
    r.path = "/accounts/" + id() + "/quota";
  } else if (q_set->parsed()) {
    inv.kind = Kind::quota;
    json body = json::object();
    set(body, "max_agents", f.max_agents);
    set(body, "max_tunnels", f.max_tunnels);
    set(body, "max_connections", f.max_connections);
    set(body, "max_requests_per_second", f.max_requests_per_second);
    if (f.bandwidth) body["bandwidth"] = number_or_string(*f.bandwidth);
    if (f.bytes_per_month) body["bytes_per_month"] = number_or_string(*f.bytes_per_month);
    if (body.empty()) {
      return usage_error(
          "quota set: nothing to change (give --max-agents, --max-tunnels, "
          "--max-connections, --max-requests-per-second, --bandwidth or "
          "--bytes-per-month)");
    }
    r.method = "POST";
    r.path = "/accounts/" + id() + "/quota";
    r.body = std::move(body);
  }
  r.limit = f.limit;
  r.if_match = f.if_match.value_or("");

  // The server.
  inv.server = f.server.value_or(env.getenv("TUNNEL_API_URL").value_or("http://127.0.0.1:9000"));
  const auto url = parse_url(inv.server);
  if (!url) {
    return usage_error((f.server ? "--server" : "TUNNEL_API_URL") + std::string(": ") +
                       url.error().message);
  }
  const std::string& host = url.value().host;
  inv.agent_server = f.agent_server.value_or("");
  inv.agent_server_guess =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":8443";

  // The key.
  if (f.key) {
    inv.key = *f.key;
    inv.key_source = "--key";
  } else if (f.key_file) {
    const auto text = env.read_file(*f.key_file);
    if (!text) return usage_error("--key-file: cannot read " + *f.key_file);
    inv.key = trim(*text);
    inv.key_source = "--key-file " + *f.key_file;
  } else if (auto k = env.getenv("TUNNEL_API_KEY")) {
    inv.key = trim(*k);
    inv.key_source = "TUNNEL_API_KEY";
  } else {
    const std::string path = key_file_path(f.data_dir);
    if (const auto text = env.read_file(path)) {
      inv.key = trim(*text);
      inv.key_source = path + " (the default key file, from --data-dir)";
    } else {
      inv.key_source = "none: no --key, --key-file or TUNNEL_API_KEY, and " + path +
                       " cannot be read (use --data-dir for a core's data dir)";
    }
  }

  inv.output = f.output ? (*f.output == "table" ? Output::table : Output::json)
                        : (env.stdout_is_terminal ? Output::table : Output::json);
  inv.ca = f.ca.value_or("");
  inv.insecure = f.insecure;
  inv.timeout_seconds = f.timeout;
  result.invocation = std::move(inv);
  return result;
}

}  // namespace tunnel::ctl

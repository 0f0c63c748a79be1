// tunnelctl's command line -> one API request (no sockets here, so it is unit-tested).
//
//   tunnelctl [--server URL] [--key KEY | --key-file FILE] [--output json|table] COMMAND
//
// Settings: --server, else TUNNEL_API_URL, else http://127.0.0.1:9000 (a local core's admin
// listener). The key: --key, --key-file, TUNNEL_API_KEY, else <--data-dir>/admin.key
// (./tunnel-data/admin.key, where a core writes its operator key).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tunnel::ctl {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the API refused, or the server could not be reached
constexpr int kExitUsage = 2;   // bad flags or values, unreadable key file

// One API call, relative to <server>/api/v1.
struct Request {
  std::string method = "GET";
  std::string path;  // "/tunnels/3"
  std::vector<std::pair<std::string, std::string>> query;
  std::optional<nlohmann::json> body;
  std::string if_match;               // sent as If-Match when not empty
  bool paginate = false;              // a list: follow next_cursor to the end
  std::optional<std::int64_t> limit;  // a list: at most this many items
};

// What is printed: the table's columns depend on the kind of object.
enum class Kind { tunnel, agent, key, account, usage, quota };
enum class Output { json, table };

struct Invocation {
  std::string server;      // "http://127.0.0.1:9000"
  std::string key;         // may be empty: then no Authorization header is sent
  std::string key_source;  // for messages: "--key", "TUNNEL_API_KEY", "--key-file F", ...
  Output output = Output::json;
  std::string ca;
  bool insecure = false;
  double timeout_seconds = 10;
  Request request;
  Kind kind = Kind::tunnel;
  bool agent_create = false;  // print the token with the tunnel-agent command line
  // For that command line: the core's agent address given with --agent-server ("" = the one
  // the core answers), and the guess for a core that answers none (HOST:8443 of --server).
  std::string agent_server;
  std::string agent_server_guess;
};

struct Environment {
  std::function<std::optional<std::string>(const std::string&)> getenv;
  std::function<std::optional<std::string>(const std::string&)> read_file;  // nullopt: unreadable
  bool stdout_is_terminal = false;
};

// The real process environment (getenv, files, isatty(1)).
Environment process_environment();

struct ParseResult {
  std::optional<Invocation> invocation;  // set when there is a request to make
  int exit_code = kExitOk;               // otherwise: exit with this
  std::string out, err;                  // what to print before exiting (help, errors)
};

ParseResult parse_command_line(const std::vector<std::string>& args, const Environment& env);

}  // namespace tunnel::ctl

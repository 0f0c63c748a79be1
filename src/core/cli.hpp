// The tunnel-core command line: run the server (flags, TUNNEL_* variables and an optional
// YAML file; each later source wins: defaults < file < environment < flags), or
// `check-config FILE`.
//
// Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM) or --help/--version; 1 when the server
// cannot start (a port in use, an unreadable data dir) or `check-config` found errors; 2 for
// bad flags, variables or configuration (the message names the flag, variable or file line).
// systemd units use RestartPreventExitStatus=2: restarting cannot fix a bad configuration.
#pragma once

namespace tunnel::core {

inline constexpr int kExitUsage = 2;

int run_cli(int argc, char** argv);

}  // namespace tunnel::core

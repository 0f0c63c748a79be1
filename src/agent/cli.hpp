// The tunnel-agent command line: `http TARGET`, `start --config FILE`, `check-config FILE`,
// `version`.
//
// Settings come from the config file, then TUNNEL_* variables, then flags (each later source
// wins). Exit codes: 0 after SIGINT/SIGTERM, 1 when the core refuses the agent for good, 2 for
// bad flags, values or files (the message names the flag, variable or file line).
#pragma once

#include <functional>
#include <string>

#include "agent/config.hpp"
#include "agent/connector.hpp"

namespace tunnel::agent {

int run_cli(int argc, char** argv);

// Turns a validated Config into what the Connector needs: the server address, the token, TLS
// trust and the tunnels, or an error for the user. `warning` is set when verification is off.
common::Result<ConnectorOptions> make_connector_options(const Config& config, std::string& warning);

}  // namespace tunnel::agent

// tunnelctl: the command-line client of the core's REST API (docs/api.md). See command.hpp for
// the command line. Exit codes: 0 done, 1 the API refused or the server could not be reached,
// 2 bad usage.
#pragma once

#include <functional>
#include <string>

#include "common/result.hpp"
#include "ctl/command.hpp"
#include "ctl/http_client.hpp"

namespace tunnel::ctl {

int run_cli(int argc, char** argv);

using Send = std::function<common::Result<HttpResponse>(const HttpRequest&)>;

// Makes the invocation's request(s) through `send` (a list: page after page), writes the
// result to `out` and problems to `err`; returns the exit code.
int execute(const Invocation& invocation, const Send& send, std::string& out, std::string& err);

}  // namespace tunnel::ctl

// What tunnelctl prints: aligned tables of the fields that matter, and API problem documents
// (RFC 9457) as one line per problem. Pure functions of the API's JSON.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "ctl/command.hpp"

namespace tunnel::ctl {

// A list ({"items": [...]}) as a table with a header row; one object as "field  value" lines.
std::string render_table(Kind kind, const nlohmann::json& doc);

// Rows of cells -> columns padded to the widest cell, two spaces apart, no trailing blanks.
std::string align(const std::vector<std::vector<std::string>>& rows);

// 1765112400 -> "2025-12-07T13:00:00Z".
std::string format_time(std::int64_t unix_seconds);

// An error reply: "tunnelctl: 422 Unprocessable Content: port: ..." per problem in the
// document's errors (else its detail). A body that is not a problem document is quoted (cut
// at 200 bytes). For 401 a second line names where the key came from (key_source).
std::string render_problem(int status, const std::string& body, const std::string& key_source);

// The agent's token once, and the command that runs it: --server is `agent_server` when given,
// else the address the core answered ("server"), else `guess`; --fingerprint is the core's
// answer ("fingerprint") when it gave one.
std::string render_agent_created(const nlohmann::json& agent, const std::string& agent_server,
                                 const std::string& guess);

}  // namespace tunnel::ctl

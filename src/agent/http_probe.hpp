// Telling an agent that it dialled the core's public HTTP port instead of its agent port.
//
// An agent pointed at the HTTP port fails in ways that look like a protocol mismatch (a TLS
// "wrong version number", an AUTH reply that is not a frame), whose usual fix, --plain, is the
// wrong one here. After such a failure the connector asks answers_http() and, when it is true,
// says kHttpPortHint instead.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace tunnel::agent {

inline constexpr std::string_view kHttpPortHint =
    "this is the core's public HTTP port; agents connect to the agent port (default 8443)";

// Whether `bytes`, the start of what a server sent, is an HTTP/1.x response.
bool is_http_answer(std::string_view bytes);

// Dials host:port over plain TCP, sends a HEAD request and returns whether the answer is
// HTTP. False on any error, or when nothing came within `timeout`. One short connection:
// call it only on the failure paths named above.
boost::asio::awaitable<bool> answers_http(boost::asio::any_io_executor executor,
                                          const std::string& host, std::uint16_t port,
                                          std::chrono::milliseconds timeout);

}  // namespace tunnel::agent

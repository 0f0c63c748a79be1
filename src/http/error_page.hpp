// Responses the proxy itself writes: the page a user sees when a tunnel is missing, the
// agent cannot reach the local app, a request is malformed, and so on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tunnel::http {

// The standard reason phrase ("Not Found" for 404), or "" for a status it does not know.
std::string_view reason_phrase(int status);

// A complete HTTP/1.1 response (head and body) ready to write to the client: the standard
// reason, Content-Type text/html; charset=utf-8, Content-Length, Cache-Control: no-store,
// X-Request-Id when request_id is non-empty, Connection: close when close_connection, and a
// small HTML page naming the status, the (HTML-escaped) detail and the request id.
// status must be 400..599; anything else is answered as 500. `extra_headers`: more fields,
// each "Name: value\r\n", written as given (the caller builds them from trusted values).
std::string error_response(int status, std::string_view detail, std::string_view request_id,
                           bool close_connection, std::string_view extra_headers = {});

// The same with an RFC 9457 problem document (application/problem+json) as the body: `problem`
// is the JSON object, written as given. `retry_after` > 0 adds Retry-After (seconds).
std::string problem_response(int status, std::string_view problem, std::string_view request_id,
                             bool close_connection, std::uint64_t retry_after = 0);

}  // namespace tunnel::http

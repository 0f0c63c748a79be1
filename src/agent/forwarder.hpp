// Serves one stream of an http tunnel: the request head from OPEN_STREAM and the body from the
// stream go to the local app; the app's response comes back as raw bytes, ended with END_STREAM
// exactly where the response message ends (found with http::MessageParser).
//
// Request and response flow concurrently, so uploads and streamed responses never wait for each
// other. Failures reset the stream: LOCAL_UNREACHABLE when the app cannot be reached (the
// message names the address, for the core's 502 page), LOCAL_ERROR when it breaks the exchange.
// A 101 response turns the stream into a raw two-way pipe until both sides have ended.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/inspector.hpp"
#include "agent/local_pool.hpp"
#include "common/net_address.hpp"
#include "mux/session.hpp"
#include "protocol/proxy_header.hpp"
#include "tracing/tracer.hpp"

namespace tunnel::agent {

// What happened to one request, for the console.
struct ForwardResult {
  std::string method;      // from the request head ("" if it could not be parsed)
  std::string target;      // request-target, e.g. "/api/users?page=2"
  std::string request_id;  // X-Request-Id set by the core
  int status = 0;          // status of the final response sent back (0: none)
  std::string error;       // why the stream was reset; empty when the exchange completed
  std::chrono::steady_clock::duration elapsed{};
  std::uint64_t bytes_in = 0;   // request body bytes written to the app
  std::uint64_t bytes_out = 0;  // response bytes sent to the core
  bool reused_connection = false;
  bool upgraded = false;
  bool unreachable = false;       // the app could not be reached (LOCAL_UNREACHABLE)
  bool bad_request = false;       // the head from the core could not be read
  tracing::RequestTrace trace{};  // with tracing on: the request's trace and the agent's span
};

// The tracer forward_http() uses (the agent's --otlp-endpoint); null (the default) = tracing
// off. Set before streams are served and cleared after; not owned.
void set_tracer(tracing::Tracer* tracer);

// Relays `stream` to the app at `target` and returns once the stream is finished on our side.
// The connection goes back to `pool` only after a clean keep-alive exchange.
//
// With tracing on (set_tracer()), the app gets a traceparent naming the agent's span for the
// local call, whose parent is the core's (the incoming traceparent; a missing or invalid one
// starts a new trace), and the span is exported when sampled or when the exchange failed.
//
// With `proxy` set, the OPEN_STREAM payload starts with the core's address line; each new app
// connection starts with a PROXY header for that client, and is pooled for that public client
// connection only (its header named that client).
//
// With `capture` set (the inspector is on), the exchange's bytes and times are copied into it
// as they pass; the relay never waits for it.
asio::awaitable<ForwardResult> forward_http(
    std::shared_ptr<mux::Stream> stream, std::shared_ptr<LocalPool> pool, common::NetAddress target,
    protocol::ProxyProtocol proxy = protocol::ProxyProtocol::kNone,
    ExchangeCapture* capture = nullptr);

}  // namespace tunnel::agent

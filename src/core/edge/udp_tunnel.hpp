// The public side of udp tunnels: one UDP socket per claimed port. Datagrams stay datagrams:
// each client address ("ip:port") passes the connection pipeline at its first datagram
// (conn_pipeline.hpp: decide, the listener's and the tunnel's new-source filters) and gets its
// own stream to an agent of the port (round robin,
// picked at the client's first datagram; OPEN_STREAM payload: the client address), carrying
// length-prefixed records (protocol/udp_record.hpp) both ways. A client session ends after
// `limits.udp_idle_timeout` without a datagram either way, or when the agent ends the stream.
//
// Datagrams are dropped, never queued without bound: when a client's stream cannot take more
// (the agent is slow), when the socket's send buffer is full, or when no agent serves the port.
//
// The socket lives on the executor it was opened on (the first agent's session's); each client
// session runs on its agent session's executor. When the two are the same worker, datagrams
// pass between them in place; otherwise a copy crosses by asio::post. After each wake-up the
// socket is read until empty (at most 64 datagrams), and what a client's session gathered
// meanwhile goes down its stream as one write of records.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <string>

#include "core/agents/context.hpp"

namespace tunnel::core {

// Binds host:port (port != 0) and starts receiving, or says why it cannot.
// `listener_filters`: the chain every new client address of the port passes before its
// tunnel's (null = none; see conn_pipeline.hpp). `adopt_fd` >= 0: a socket already bound to
// the port (handed over by an upgrade; owned from here on) instead of a new one.
// `bound_fd`: set to the socket's descriptor (for an upgrade's hand-off).
common::Result<std::shared_ptr<PortListener>> open_udp_port(
    CoreContext& context, asio::any_io_executor executor, const std::string& host,
    std::uint16_t port, std::shared_ptr<const ConnectionFilterChain> listener_filters = nullptr,
    int adopt_fd = -1, int* bound_fd = nullptr);

}  // namespace tunnel::core

// The public side of tcp tunnels: one listener per claimed port. Each accepted connection
// passes the connection pipeline (conn_pipeline.hpp: decide, the listener's and the tunnel's
// filters) and becomes a stream to an agent of the port (round robin, via the registry), whose
// OPEN_STREAM payload is the client's and the listener's addresses. Bytes flow both ways with
// half-close kept: a client FIN becomes END_STREAM and the agent's END_STREAM becomes a FIN to
// the client. A RESET from the agent resets the client connection; a client reset resets the
// stream (mux::pump(), shared with the agent's tcp forwarder, with the tunnel's bandwidth limits
// and limits.tunnel_idle_timeout).
//
// The listener runs on the executor it was opened on; each connection's relay runs on its
// agent session's executor (the socket is moved there), as Stream requires.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <memory>
#include <optional>
#include <string>

#include "core/agents/context.hpp"

namespace tunnel::core {

// Binds host:port (port != 0) and starts accepting, or says why the port cannot be bound
// ("port 15432 is in use"). `listener_filters`: the chain every connection of the port passes
// before its tunnel's (null = none; see conn_pipeline.hpp). `adopt_fd` >= 0: a listening
// socket already bound to the port (handed over by an upgrade; owned from here on) instead of
// a new one. `bound_fd`: set to the socket's descriptor (for an upgrade's hand-off).
common::Result<std::shared_ptr<PortListener>> open_tcp_port(
    CoreContext& context, asio::any_io_executor executor, const std::string& host,
    std::uint16_t port, std::shared_ptr<const ConnectionFilterChain> listener_filters = nullptr,
    int adopt_fd = -1, int* bound_fd = nullptr);

// "port 15432 is in use" for EADDRINUSE, "port 80: Permission denied" otherwise.
std::string bind_error(std::uint16_t port, const boost::system::error_code& ec);

// The address tcp and udp tunnel ports bind (listen.tunnels_host); an error when it is not an
// IP literal.
common::Result<asio::ip::address> tunnels_host_address(const std::string& host);

}  // namespace tunnel::core

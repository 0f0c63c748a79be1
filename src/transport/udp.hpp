// What udp sockets of the core (public ports) and the agent (to the local app) share.
#pragma once

#include <boost/asio/ip/udp.hpp>
#include <cstddef>

namespace tunnel::transport {

// The receive and send buffer each udp socket asks for. A datagram that arrives while the
// socket's receive buffer is full is dropped by the kernel before the core or the agent sees
// it, and the kernel's default (net.core.rmem_default, 208 KiB on Debian) holds only about a
// hundred full-size datagrams: a short stall of the worker under a burst loses the rest. The
// kernel grants at most net.core.rmem_max / wmem_max (also 208 KiB by default; raising them
// lets this take effect, see docs/operations.md). Memory is used only while datagrams wait.
constexpr std::size_t kUdpSocketBuffer = 4 * 1024 * 1024;

// Asks for kUdpSocketBuffer both ways. Best effort: the kernel caps it silently, and failing
// to set it leaves the default, which works, only with more loss under bursts.
void size_udp_buffers(boost::asio::ip::udp::socket& socket);

}  // namespace tunnel::transport

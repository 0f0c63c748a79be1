// What udp sockets of the core (public ports) and the agent (to the local app) share.
#pragma once

#include <boost/asio/ip/udp.hpp>
#include <cstddef>
#include <string>

namespace tunnel::transport {

// The receive and send buffer each udp socket asks for unless configured otherwise (the core's
// limits.udp_socket_buffer). A datagram that arrives while the socket's receive buffer is full
// is dropped by the kernel before the core or the agent sees it, and the kernel's default
// (net.core.rmem_default, 208 KiB on Debian) holds only about a hundred full-size datagrams: a
// short stall of the worker under a burst loses the rest. The kernel grants at most
// net.core.rmem_max / wmem_max (also 208 KiB by default; raising them lets this take effect,
// see docs/operations.md). Memory is used only while datagrams wait.
constexpr std::size_t kUdpSocketBuffer = 4 * 1024 * 1024;

// Receive and send buffer sizes as the kernel reports them for a socket (0 = unknown).
struct UdpBufferSizes {
  std::size_t receive = 0;
  std::size_t send = 0;
};

// Asks for `bytes` of receive and send buffer (0 = keep the kernel's default) and returns what
// the kernel granted. Best effort: the kernel caps the request silently, and failing to set it
// leaves the default, which works, only with more loss under bursts. The first time in the
// process that the kernel grants less than asked, logs a warning that names the sysctl to raise.
UdpBufferSizes size_udp_buffers(boost::asio::ip::udp::socket& socket,
                                std::size_t bytes = kUdpSocketBuffer);

// The warning for a socket that asked for `asked` bytes and got `granted`; "" if it got them.
std::string udp_buffer_shortfall(std::size_t asked, const UdpBufferSizes& granted);

}  // namespace tunnel::transport

#include "transport/udp.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <climits>

namespace tunnel::transport {
namespace {

std::string kib(std::size_t bytes) {
  return std::to_string(bytes / 1024) + " KiB";
}

}  // namespace

UdpBufferSizes size_udp_buffers(boost::asio::ip::udp::socket& socket, std::size_t bytes) {
  using boost::asio::socket_base;
  boost::system::error_code ignored;
  if (bytes > 0) {
    const int value = static_cast<int>(std::min<std::size_t>(bytes, INT_MAX));
    socket.set_option(socket_base::receive_buffer_size(value), ignored);
    socket.set_option(socket_base::send_buffer_size(value), ignored);
  }
  // asio reports the size asked for and granted (on Linux it halves the kernel's doubled figure).
  socket_base::receive_buffer_size receive;
  socket_base::send_buffer_size send;
  UdpBufferSizes granted;
  boost::system::error_code ec;
  socket.get_option(receive, ec);
  if (!ec && receive.value() > 0) granted.receive = static_cast<std::size_t>(receive.value());
  socket.get_option(send, ec);
  if (!ec && send.value() > 0) granted.send = static_cast<std::size_t>(send.value());
  static std::atomic<bool> warned{false};
  if (bytes > 0 && !warned.load(std::memory_order_relaxed)) {
    const std::string warning = udp_buffer_shortfall(bytes, granted);
    if (!warning.empty() && !warned.exchange(true)) spdlog::warn("{}", warning);
  }
  return granted;
}

std::string udp_buffer_shortfall(std::size_t asked, const UdpBufferSizes& granted) {
  std::string sysctls;
  std::string got;
  if (granted.receive != 0 && granted.receive < asked) {
    sysctls = "net.core.rmem_max";
    got = kib(granted.receive) + " to receive";
  }
  if (granted.send != 0 && granted.send < asked) {
    sysctls += sysctls.empty() ? "net.core.wmem_max" : " and net.core.wmem_max";
    got += (got.empty() ? "" : ", ") + kib(granted.send) + " to send";
  }
  if (sysctls.empty()) return {};
  return "udp socket buffers: asked for " + kib(asked) + ", the kernel granted " + got +
         " (capped by " + sysctls + "): a burst that arrives while a worker is busy may be " +
         "dropped by the kernel. Raise " + sysctls + " to at least " + std::to_string(asked) +
         " (docs/operations.md, UDP socket buffers). Logged once.";
}

}  // namespace tunnel::transport

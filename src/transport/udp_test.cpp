#include "transport/udp.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <fstream>

namespace tunnel::transport {
namespace {

using boost::asio::ip::udp;

std::size_t sysctl_value(const char* path) {
  std::ifstream in(path);
  std::size_t v = 0;
  in >> v;
  return v;
}

// Linux caps the size asked for at the sysctl maximum (and then doubles it for its own
// bookkeeping, which asio's get_option halves again on Linux).
std::size_t expected(const char* max_path) {
  return std::min(kUdpSocketBuffer, sysctl_value(max_path));
}

TEST(UdpBuffers, AsksForTheLargerBufferUpToTheKernelsMaximum) {
  boost::asio::io_context io;
  udp::socket socket(io, udp::endpoint(udp::v4(), 0));
  udp::socket::receive_buffer_size before;
  socket.get_option(before);
  size_udp_buffers(socket);
  udp::socket::receive_buffer_size rcv;
  udp::socket::send_buffer_size snd;
  socket.get_option(rcv);
  socket.get_option(snd);
  const std::size_t rmem_max = sysctl_value("/proc/sys/net/core/rmem_max");
  if (rmem_max == 0) GTEST_SKIP() << "no /proc/sys/net/core/rmem_max";
  EXPECT_EQ(static_cast<std::size_t>(rcv.value()), expected("/proc/sys/net/core/rmem_max"));
  EXPECT_EQ(static_cast<std::size_t>(snd.value()), expected("/proc/sys/net/core/wmem_max"));
  // Never smaller than the default it replaces.
  EXPECT_GE(rcv.value(), before.value());
}

}  // namespace
}  // namespace tunnel::transport

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
  const UdpBufferSizes granted = size_udp_buffers(socket);
  EXPECT_EQ(granted.receive, expected("/proc/sys/net/core/rmem_max"));
  EXPECT_EQ(granted.send, expected("/proc/sys/net/core/wmem_max"));
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

// limits.udp_socket_buffer: a size below the kernel's maximum is granted as asked; 0 keeps the
// kernel's default.
TEST(UdpBuffers, TakesTheConfiguredSizeOrKeepsTheDefault) {
  boost::asio::io_context io;
  udp::socket sized(io, udp::endpoint(udp::v4(), 0));
  EXPECT_EQ(size_udp_buffers(sized, 64 * 1024).receive, 64u * 1024);
  udp::socket untouched(io, udp::endpoint(udp::v4(), 0));
  udp::socket::receive_buffer_size before;
  untouched.get_option(before);
  EXPECT_EQ(size_udp_buffers(untouched, 0).receive, static_cast<std::size_t>(before.value()));
}

TEST(UdpBuffers, ShortfallNamesTheSysctlsThatCapped) {
  const std::size_t asked = 4 * 1024 * 1024;
  EXPECT_EQ(udp_buffer_shortfall(asked, {asked, asked}), "");
  EXPECT_EQ(udp_buffer_shortfall(asked, {0, 0}), "") << "unknown sizes are no shortfall";
  const std::string receive_only = udp_buffer_shortfall(asked, {212992, asked});
  EXPECT_NE(receive_only.find("asked for 4096 KiB, the kernel granted 208 KiB to receive"),
            std::string::npos)
      << receive_only;
  EXPECT_NE(receive_only.find("Raise net.core.rmem_max to at least 4194304"), std::string::npos)
      << receive_only;
  EXPECT_EQ(receive_only.find("wmem_max"), std::string::npos) << receive_only;
  const std::string both = udp_buffer_shortfall(asked, {212992, 212992});
  EXPECT_NE(both.find("208 KiB to receive, 208 KiB to send"), std::string::npos) << both;
  EXPECT_NE(both.find("net.core.rmem_max and net.core.wmem_max"), std::string::npos) << both;
}

}  // namespace
}  // namespace tunnel::transport

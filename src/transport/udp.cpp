#include "transport/udp.hpp"

namespace tunnel::transport {

void size_udp_buffers(boost::asio::ip::udp::socket& socket) {
  using boost::asio::socket_base;
  boost::system::error_code ignored;
  socket.set_option(socket_base::receive_buffer_size(static_cast<int>(kUdpSocketBuffer)), ignored);
  socket.set_option(socket_base::send_buffer_size(static_cast<int>(kUdpSocketBuffer)), ignored);
}

}  // namespace tunnel::transport

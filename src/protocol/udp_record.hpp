// The byte format of a udp tunnel's stream: each datagram travels as one record, a u16
// big-endian length followed by that many bytes, so datagram boundaries survive the stream.
// See docs/protocol.md, "UDP tunnels". Pure code, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tunnel::protocol {

// The largest UDP payload over IPv4 (65,535 - 8 UDP header - 20 IP header bytes).
inline constexpr std::size_t kMaxDatagram = 65507;
inline constexpr std::size_t kUdpRecordHeader = 2;

// Appends one record holding `datagram`. False (nothing appended) above kMaxDatagram.
bool append_udp_record(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> datagram);

// Splits stream bytes back into datagrams, whatever the chunking of the bytes fed.
class UdpRecordReader {
 public:
  // Adds bytes read from the stream. Invalidates spans returned by next().
  void feed(std::span<const std::uint8_t> bytes);
  // The next complete datagram (valid until the next feed), or false when more bytes are
  // needed or the input is bad (error() is then non-empty; stop reading).
  bool next(std::span<const std::uint8_t>& datagram);
  // "udp record of 65535 bytes is above the maximum datagram size 65507"
  const std::string& error() const { return error_; }
  // Bytes of an incomplete record held back.
  std::size_t pending() const { return buffer_.size() - pos_; }

 private:
  std::vector<std::uint8_t> buffer_;
  std::size_t pos_ = 0;
  std::string error_;
};

}  // namespace tunnel::protocol

#include "protocol/udp_record.hpp"

namespace tunnel::protocol {

bool append_udp_record(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> datagram) {
  if (datagram.size() > kMaxDatagram) return false;
  out.push_back(static_cast<std::uint8_t>(datagram.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(datagram.size() & 0xff));
  out.insert(out.end(), datagram.begin(), datagram.end());
  return true;
}

void UdpRecordReader::feed(std::span<const std::uint8_t> bytes) {
  if (pos_ > 0) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

bool UdpRecordReader::next(std::span<const std::uint8_t>& datagram) {
  if (!error_.empty() || buffer_.size() - pos_ < kUdpRecordHeader) return false;
  const std::size_t length = (std::size_t{buffer_[pos_]} << 8) | buffer_[pos_ + 1];
  if (length > kMaxDatagram) {
    error_ = "udp record of " + std::to_string(length) +
             " bytes is above the maximum datagram size " + std::to_string(kMaxDatagram);
    return false;
  }
  if (buffer_.size() - pos_ - kUdpRecordHeader < length) return false;
  datagram = std::span<const std::uint8_t>(buffer_.data() + pos_ + kUdpRecordHeader, length);
  pos_ += kUdpRecordHeader + length;
  return true;
}

}  // namespace tunnel::protocol

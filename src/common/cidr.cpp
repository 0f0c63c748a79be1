#include "common/cidr.hpp"

#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <optional>

namespace tunnel::common {
namespace {

// The address as 16 bytes (IPv4 in the last 4) and whether it is IPv4 (mapped addresses too).
std::optional<std::pair<std::array<std::uint8_t, 16>, bool>> to_bytes(std::string_view text) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  std::array<std::uint8_t, 16> out{};
  if (address.is_v4()) {
    const auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.begin() + 12);
    return std::pair{out, true};
  }
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    const auto b = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_bytes();
    std::copy(b.begin(), b.end(), out.begin() + 12);
    return std::pair{out, true};
  }
  const auto b = v6.to_bytes();
  std::copy(b.begin(), b.end(), out.begin());
  return std::pair{out, false};
}

bool prefix_equal(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                  int first_bit, int bits) {
  for (int i = 0; i < bits; ++i) {
    const int bit = first_bit + i;
    const auto mask = static_cast<std::uint8_t>(0x80u >> (bit % 8));
    if ((a[bit / 8] & mask) != (b[bit / 8] & mask)) return false;
  }
  return true;
}

}  // namespace

Result<Cidr> Cidr::parse(std::string_view text) {
  const auto slash = text.find('/');
  const std::string_view address = text.substr(0, slash);
  const auto parsed = to_bytes(address);
  if (!parsed) {
    return fail("\"" + std::string(text) + "\": not an IP address or CIDR range");
  }
  Cidr cidr;
  cidr.bytes_ = parsed->first;
  cidr.v4_ = parsed->second;
  const int max_bits = cidr.v4_ ? 32 : 128;
  cidr.bits_ = max_bits;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    int bits = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || bits < 0) {
      return fail("\"" + std::string(text) + "\": the prefix length is not a number");
    }
    if (bits > max_bits) {
      return fail("\"" + std::string(text) + "\": prefix length above " + std::to_string(max_bits));
    }
    cidr.bits_ = bits;
  }
  // Clear the host bits, so to_string() shows the network.
  const int first = cidr.v4_ ? 96 : 0;
  for (int bit = first + cidr.bits_; bit < 128; ++bit) {
    cidr.bytes_[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  return cidr;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  const auto parsed = to_bytes(text);
  if (!parsed) return std::nullopt;
  return IpAddress{parsed->first, parsed->second};
}

bool Cidr::contains(std::string_view ip) const {
  const auto parsed = IpAddress::parse(ip);
  return parsed && contains(*parsed);
}

bool Cidr::contains(const IpAddress& ip) const {
  return ip.v4 == v4_ && prefix_equal(ip.bytes, bytes_, v4_ ? 96 : 0, bits_);
}

std::string Cidr::to_string() const {
  std::string address;
  if (v4_) {
    boost::asio::ip::address_v4::bytes_type b{};
    std::copy(bytes_.begin() + 12, bytes_.end(), b.begin());
    address = boost::asio::ip::make_address_v4(b).to_string();
  } else {
    address = boost::asio::ip::make_address_v6(bytes_).to_string();
  }
  return address + "/" + std::to_string(bits_);
}

}  // namespace tunnel::common

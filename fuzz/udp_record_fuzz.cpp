// Feeds arbitrary stream bytes, cut at a fuzz-chosen point, to the UDP record reader; every
// datagram it returns must re-encode to exactly the bytes it was cut from.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "protocol/udp_record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tunnel::protocol;
  if (size == 0) return 0;
  const std::size_t cut = data[0] % (size);
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  UdpRecordReader reader;
  std::vector<std::uint8_t> reencoded;
  std::size_t consumed = 0;
  const auto drain = [&] {
    std::span<const std::uint8_t> datagram;
    while (reader.next(datagram)) {
      if (datagram.size() > kMaxDatagram) std::abort();
      if (!append_udp_record(reencoded, datagram)) std::abort();
      consumed += kUdpRecordHeader + datagram.size();
    }
  };
  const std::size_t first = cut < input.size() ? cut : input.size();
  reader.feed(input.first(first));
  drain();
  reader.feed(input.subspan(first));
  drain();
  if (reader.error().empty()) {
    // Without an error, everything fed is either returned or still pending.
    if (consumed + reader.pending() != input.size()) std::abort();
    for (std::size_t i = 0; i < reencoded.size(); ++i) {
      if (reencoded[i] != input[i]) std::abort();
    }
  }
  return 0;
}

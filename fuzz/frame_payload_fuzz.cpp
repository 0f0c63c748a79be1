// Feeds arbitrary payloads to the RESET, GOAWAY, NOTICE and OPEN_STREAM codecs (the first byte
// picks the frame, and for OPEN_STREAM the version). Aborts on a broken contract: a decoder that
// refuses a payload long enough for its fixed fields or accepts a shorter one, an error without
// text, a value that does not encode back to the same bytes, or encoded_size() disagreeing.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/frame_payload.hpp"

namespace {

using namespace tunnel::protocol;

void check(bool ok) {
  if (!ok) std::abort();
}

template <typename P, typename Encode>
void round_trip(const tunnel::common::Result<P>& decoded, std::span<const std::uint8_t> payload,
                std::size_t fixed, std::size_t size, Encode encode_to) {
  check(decoded.has_value() == (payload.size() >= fixed));
  if (!decoded) {
    check(!decoded.error().message.empty());
    return;
  }
  check(size == payload.size());
  std::vector<std::uint8_t> again(size);
  encode_to(decoded.value(), again.data());
  check(std::equal(again.begin(), again.end(), payload.begin()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::uint8_t> payload(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      const auto d = decode_reset(payload);
      round_trip(d, payload, kResetFixedSize, d ? encoded_size(d.value()) : 0,
                 [](const ResetPayload& p, std::uint8_t* out) { encode(p, out); });
      break;
    }
    case 1: {
      const auto d = decode_go_away(payload);
      round_trip(d, payload, kGoAwayFixedSize, d ? encoded_size(d.value()) : 0,
                 [](const GoAwayPayload& p, std::uint8_t* out) { encode(p, out); });
      break;
    }
    case 2: {
      const auto d = decode_notice(payload);
      round_trip(d, payload, kNoticeFixedSize, d ? encoded_size(d.value()) : 0,
                 [](const NoticePayload& p, std::uint8_t* out) { encode(p, out); });
      break;
    }
    default: {
      const std::uint8_t version = data[0] % 5 == 3 ? kVersion1 : kVersion2;
      const auto d = decode_open_stream(payload, version);
      round_trip(
          d, payload, version == kVersion2 ? kOpenStreamIndexSize : 0,
          d ? encoded_size(d.value(), version) : 0,
          [version](const OpenStreamPayload& p, std::uint8_t* out) { encode(p, version, out); });
      if (d && version == kVersion1) check(d.value().tunnel_index == 0);
      break;
    }
  }
  return 0;
}

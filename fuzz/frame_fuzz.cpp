// Feeds arbitrary bytes to the frame header decoder of both versions, then walks the buffer as
// a sequence of frames the way a session reads a connection. Aborts on a broken invariant.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "protocol/error_code.hpp"
#include "protocol/frame.hpp"

namespace {

using namespace tunnel::protocol;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void check_header(std::span<const std::uint8_t> bytes, std::uint8_t version) {
  const HeaderDecode d = decode_header(bytes, version);
  switch (d.status) {
    case DecodeStatus::kNeedMore:
      check(bytes.size() < kHeaderSize && d.error.empty());
      return;
    case DecodeStatus::kError:
      check(!d.error.empty());
      return;
    case DecodeStatus::kOk:
      break;
  }
  const FrameHeader& h = d.header;
  check(h.length >= kMinLength && h.length <= kMaxLength);
  check(h.payload_size() <= kMaxPayload);
  check(h.version == version);
  check(version != kVersion1 || is_known_type(kVersion1, h.type));
  check(!type_name(h.type).empty());
  // Re-encoding a decoded header gives back the same 13 bytes.
  std::uint8_t again[kHeaderSize];
  encode_header(again, h.version, h.frame_type(), h.flags, h.stream_id, h.payload_size());
  check(std::memcmp(again, bytes.data(), kHeaderSize) == 0);
}

// Reads the fixed fields a v2 session reads from control payloads.
void touch_payload(const FrameHeader& h, std::span<const std::uint8_t> payload) {
  switch (h.frame_type()) {
    case FrameType::kWindowUpdate:
    case FrameType::kReset:
      if (payload.size() >= 4) {
        (void)error_code_name(static_cast<ErrorCode>(get_u32(payload.data())));
      }
      break;
    case FrameType::kGoAway:
      if (payload.size() >= 8) {
        (void)get_u32(payload.data());
        (void)error_code_name(static_cast<ErrorCode>(get_u32(payload.data() + 4)));
      }
      break;
    case FrameType::kOpenStream:
      if (h.version == kVersion2 && payload.size() >= 2) {
        (void)get_u16(payload.data());
      }
      break;
    default:
      break;
  }
}

void walk(std::span<const std::uint8_t> bytes, std::uint8_t version) {
  while (true) {
    const HeaderDecode d = decode_header(bytes, version);
    if (d.status != DecodeStatus::kOk) {
      return;
    }
    const std::size_t frame_size = kLengthFieldSize + d.header.length;
    if (bytes.size() < frame_size) {
      return;  // a session would wait for the rest of the payload
    }
    touch_payload(d.header, bytes.subspan(kHeaderSize, d.header.payload_size()));
    bytes = bytes.subspan(frame_size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  for (const std::uint8_t version : {kVersion1, kVersion2}) {
    check_header(bytes, version);
    walk(bytes, version);
  }
  return 0;
}

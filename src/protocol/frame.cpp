#include "protocol/frame.hpp"

#include <fmt/format.h>

#include <cassert>

namespace tunnel::protocol {
namespace {

constexpr std::uint8_t kLastV1Type = static_cast<std::uint8_t>(FrameType::kHeartbeat);
constexpr std::uint8_t kLastV2Type = static_cast<std::uint8_t>(FrameType::kNotice);

// Out of line and cold: formatting stays off the decoding path (inlined, fmt's code changed
// how the compiler treated the valid-header path).
template <typename... Args>
[[gnu::cold, gnu::noinline]] HeaderDecode fail(fmt::format_string<Args...> format, Args&&... args) {
  HeaderDecode result;
  result.status = DecodeStatus::kError;
  result.error = fmt::format(format, std::forward<Args>(args)...);
  return result;
}

}  // namespace

HeaderDecode decode_header(std::span<const std::uint8_t> bytes, std::uint8_t version) {
  if (bytes.size() < kHeaderSize) {
    return {};
  }
  const std::uint8_t* p = bytes.data();
  // The length comes first: a caller allocates for the payload only after this returns kOk.
  const std::uint32_t length = get_u32(p);
  if (length < kMinLength) {
    return fail("frame length {} is below the minimum {}", length, kMinLength);
  }
  if (length > kMaxLength) {
    return fail("frame length {} is above the maximum {}", length, kMaxLength);
  }
  if (p[4] != kMagic0 || p[5] != kMagic1) {
    return fail("bad magic 0x{:02X}{:02X} (expected 0x{:02X}{:02X} \"RT\")", p[4], p[5], kMagic0,
                kMagic1);
  }
  if (p[6] != version) {
    return fail("unsupported version {} (expected {})", p[6], version);
  }
  // Version 2 lets unknown types through so that the session can skip them.
  if (version == kVersion1 && !is_known_type(kVersion1, p[7])) {
    return fail("unknown frame type {} for protocol version 1", p[7]);
  }
  HeaderDecode result;
  result.status = DecodeStatus::kOk;
  result.header.length = length;
  result.header.version = p[6];
  result.header.type = p[7];
  result.header.flags = p[8];
  result.header.stream_id = get_u32(p + 9);
  return result;
}

void encode_header(std::uint8_t* out, std::uint8_t version, FrameType type, std::uint8_t flags,
                   std::uint32_t stream_id, std::size_t payload_size) {
  assert(payload_size <= kMaxPayload);
  put_u32(out, static_cast<std::uint32_t>(kMinLength + payload_size));
  out[4] = kMagic0;
  out[5] = kMagic1;
  out[6] = version;
  out[7] = static_cast<std::uint8_t>(type);
  out[8] = flags;
  put_u32(out + 9, stream_id);
}

bool is_known_type(std::uint8_t version, std::uint8_t type) {
  switch (version) {
    case kVersion1:
      return type >= 1 && type <= kLastV1Type;
    case kVersion2:
      return type >= 1 && type <= kLastV2Type;
    default:
      return false;
  }
}

std::string_view type_name(std::uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kAuth:
      return "AUTH";
    case FrameType::kOpenStream:
      return "OPEN_STREAM";
    case FrameType::kData:
      return "DATA";
    case FrameType::kClose:
      return "CLOSE";
    case FrameType::kHeartbeat:
      return "HEARTBEAT";
    case FrameType::kWindowUpdate:
      return "WINDOW_UPDATE";
    case FrameType::kReset:
      return "RESET";
    case FrameType::kGoAway:
      return "GOAWAY";
    case FrameType::kPing:
      return "PING";
    case FrameType::kNotice:
      return "NOTICE";
  }
  return "UNKNOWN";
}

}  // namespace tunnel::protocol

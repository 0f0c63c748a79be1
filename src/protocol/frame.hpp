// Frame codec for the tunnel wire protocol, versions 1 and 2 (see docs/protocol.md).
//
// Every frame is (big-endian):
//   u32 length | u16 magic "RT" | u8 version | u8 type | u8 flags | u32 stream | payload
// `length` counts the bytes after itself (9 + payload). This file is pure: no I/O, no
// allocation. The decoder validates the header before the caller allocates for the payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tunnel::protocol {

inline constexpr std::size_t kLengthFieldSize = 4;
inline constexpr std::size_t kHeaderSize = 13;         // length field + 9 bytes counted by length
inline constexpr std::uint32_t kMinLength = 9;         // header without payload
inline constexpr std::uint32_t kMaxLength = 1u << 24;  // 16 MiB, the 9 header bytes included
inline constexpr std::size_t kMaxPayload = kMaxLength - kMinLength;
inline constexpr std::uint8_t kMagic0 = 0x52;  // 'R'
inline constexpr std::uint8_t kMagic1 = 0x54;  // 'T'

inline constexpr std::uint8_t kVersion1 = 1;
inline constexpr std::uint8_t kVersion2 = 2;

enum class FrameType : std::uint8_t {
  kAuth = 1,
  kOpenStream = 2,
  kData = 3,
  kClose = 4,
  kHeartbeat = 5,
  // Version 2 only.
  kWindowUpdate = 6,  // payload: u32 credit increment (bytes)
  kReset = 7,         // payload: u32 error code, then UTF-8 message
  kGoAway = 8,        // payload: u32 last accepted stream id, u32 error code, then UTF-8 message
  kPing = 9,          // payload: 8 opaque bytes, echoed with ACK
  kNotice = 10,       // core -> agent, stream 0: u16 tunnel index, then a UTF-8 message to log
};

namespace flags {
inline constexpr std::uint8_t kEndStream = 0x01;
inline constexpr std::uint8_t kAck = 0x02;
inline constexpr std::uint8_t kError = 0x04;
}  // namespace flags

struct FrameHeader {
  std::uint32_t length = kMinLength;  // bytes after the length field
  std::uint8_t version = kVersion1;
  std::uint8_t type = 0;  // raw: v2 carries types this build may not know
  std::uint8_t flags = 0;
  std::uint32_t stream_id = 0;

  std::size_t payload_size() const { return length - kMinLength; }
  FrameType frame_type() const { return static_cast<FrameType>(type); }
  bool has(std::uint8_t f) const { return (flags & f) != 0; }
};

enum class DecodeStatus { kOk, kNeedMore, kError };

struct HeaderDecode {
  DecodeStatus status = DecodeStatus::kNeedMore;
  FrameHeader header;
  std::string error;  // set when status == kError: names the field and the bad value
};

// Decodes and validates the 13-byte header at the start of `bytes`.
// Rejects: length < 9 or > 16 MiB, wrong magic, version other than `version`,
// and in version 1 a type outside 1..5. Version 2 accepts any type (unknown ones are ignored
// by the session so the protocol can grow). Returns kNeedMore when fewer than 13 bytes are given.
HeaderDecode decode_header(std::span<const std::uint8_t> bytes, std::uint8_t version);

// Writes a 13-byte header into `out`. `payload_size` must be <= kMaxPayload.
void encode_header(std::uint8_t* out, std::uint8_t version, FrameType type, std::uint8_t flags,
                   std::uint32_t stream_id, std::size_t payload_size);

// True if `type` is a type this build understands for `version`.
bool is_known_type(std::uint8_t version, std::uint8_t type);

std::string_view type_name(std::uint8_t type);

// Big-endian helpers for payload fields.
inline void put_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
inline std::uint16_t get_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline void put_u32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
inline std::uint32_t get_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace tunnel::protocol

// Payload codecs for the frames whose payload has fields: RESET, GOAWAY, NOTICE (version 2) and
// OPEN_STREAM (both versions). See docs/protocol.md for the layouts:
//   RESET        u32 error code | UTF-8 message
//   GOAWAY       u32 last accepted stream id | u32 error code | UTF-8 message
//   NOTICE       u16 tunnel index | UTF-8 message
//   OPEN_STREAM  v2: u16 tunnel index | opaque bytes;  v1: opaque bytes
// Pure: no I/O. Decoders never throw and never allocate on success; the views they return point
// into the payload given (valid as long as it is). A payload too short for its fixed fields is an
// error naming the frame, the field and the size; the message and the opaque bytes are not
// interpreted (any bytes, any length). Error codes this build does not know are kept as numbers.
// encode() writes exactly encoded_size() bytes; decode(encode(x)) == x and, for any payload a
// decoder accepts, encode(decode(p)) == p.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/result.hpp"
#include "protocol/error_code.hpp"

namespace tunnel::protocol {

struct ResetPayload {
  ErrorCode code = ErrorCode::kNoError;
  std::string_view message;
  bool operator==(const ResetPayload&) const = default;
};

struct GoAwayPayload {
  std::uint32_t last_stream_id = 0;
  ErrorCode code = ErrorCode::kNoError;
  std::string_view message;
  bool operator==(const GoAwayPayload&) const = default;
};

struct NoticePayload {
  std::uint16_t tunnel_index = 0;
  std::string_view message;
  bool operator==(const NoticePayload&) const = default;
};

// In version 1 there is no tunnel index (it reads as 0).
struct OpenStreamPayload {
  std::uint16_t tunnel_index = 0;
  std::string_view data;  // what the core puts after the index (an address line, or nothing)
  bool operator==(const OpenStreamPayload&) const = default;
};

inline constexpr std::size_t kResetFixedSize = 4;
inline constexpr std::size_t kGoAwayFixedSize = 8;
inline constexpr std::size_t kNoticeFixedSize = 2;
inline constexpr std::size_t kOpenStreamIndexSize = 2;  // version 2 only

common::Result<ResetPayload> decode_reset(std::span<const std::uint8_t> payload);
common::Result<GoAwayPayload> decode_go_away(std::span<const std::uint8_t> payload);
common::Result<NoticePayload> decode_notice(std::span<const std::uint8_t> payload);
common::Result<OpenStreamPayload> decode_open_stream(std::span<const std::uint8_t> payload,
                                                     std::uint8_t version);

inline std::size_t encoded_size(const ResetPayload& p) {
  return kResetFixedSize + p.message.size();
}
inline std::size_t encoded_size(const GoAwayPayload& p) {
  return kGoAwayFixedSize + p.message.size();
}
inline std::size_t encoded_size(const NoticePayload& p) {
  return kNoticeFixedSize + p.message.size();
}
inline std::size_t encoded_size(const OpenStreamPayload& p, std::uint8_t version) {
  return (version >= 2 ? kOpenStreamIndexSize : 0) + p.data.size();
}

// Each writes encoded_size() bytes at `out`. In version 1 OPEN_STREAM drops the tunnel index.
void encode(const ResetPayload& p, std::uint8_t* out);
void encode(const GoAwayPayload& p, std::uint8_t* out);
void encode(const NoticePayload& p, std::uint8_t* out);
void encode(const OpenStreamPayload& p, std::uint8_t version, std::uint8_t* out);

}  // namespace tunnel::protocol

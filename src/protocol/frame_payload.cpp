#include "protocol/frame_payload.hpp"

#include <fmt/format.h>

#include <cstring>

#include "protocol/frame.hpp"

namespace tunnel::protocol {
namespace {

std::string_view text(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void put_text(std::uint8_t* out, std::string_view s) {
  if (!s.empty()) std::memcpy(out, s.data(), s.size());
}

// Out of line and cold: formatting stays off the decoding path.
template <typename T>
[[gnu::cold, gnu::noinline]] common::Result<T> too_short(std::string_view frame, std::size_t size,
                                                         std::string_view field, int first,
                                                         int last) {
  return common::fail(fmt::format("{} payload of {} bytes is too short for its {} (bytes {}..{})",
                                  frame, size, field, first, last));
}

}  // namespace

common::Result<ResetPayload> decode_reset(std::span<const std::uint8_t> payload) {
  if (payload.size() < kResetFixedSize) {
    return too_short<ResetPayload>("RESET", payload.size(), "error code", 0, 3);
  }
  return ResetPayload{static_cast<ErrorCode>(get_u32(payload.data())),
                      text(payload.subspan(kResetFixedSize))};
}

common::Result<GoAwayPayload> decode_go_away(std::span<const std::uint8_t> payload) {
  if (payload.size() < 4) {
    return too_short<GoAwayPayload>("GOAWAY", payload.size(), "last stream id", 0, 3);
  }
  if (payload.size() < kGoAwayFixedSize) {
    return too_short<GoAwayPayload>("GOAWAY", payload.size(), "error code", 4, 7);
  }
  return GoAwayPayload{get_u32(payload.data()), static_cast<ErrorCode>(get_u32(payload.data() + 4)),
                       text(payload.subspan(kGoAwayFixedSize))};
}

common::Result<NoticePayload> decode_notice(std::span<const std::uint8_t> payload) {
  if (payload.size() < kNoticeFixedSize) {
    return too_short<NoticePayload>("NOTICE", payload.size(), "tunnel index", 0, 1);
  }
  return NoticePayload{get_u16(payload.data()), text(payload.subspan(kNoticeFixedSize))};
}

common::Result<OpenStreamPayload> decode_open_stream(std::span<const std::uint8_t> payload,
                                                     std::uint8_t version) {
  if (version < kVersion2) return OpenStreamPayload{0, text(payload)};
  if (payload.size() < kOpenStreamIndexSize) {
    return too_short<OpenStreamPayload>("OPEN_STREAM", payload.size(), "tunnel index", 0, 1);
  }
  return OpenStreamPayload{get_u16(payload.data()), text(payload.subspan(kOpenStreamIndexSize))};
}

void encode(const ResetPayload& p, std::uint8_t* out) {
  put_u32(out, static_cast<std::uint32_t>(p.code));
  put_text(out + kResetFixedSize, p.message);
}

void encode(const GoAwayPayload& p, std::uint8_t* out) {
  put_u32(out, p.last_stream_id);
  put_u32(out + 4, static_cast<std::uint32_t>(p.code));
  put_text(out + kGoAwayFixedSize, p.message);
}

void encode(const NoticePayload& p, std::uint8_t* out) {
  put_u16(out, p.tunnel_index);
  put_text(out + kNoticeFixedSize, p.message);
}

void encode(const OpenStreamPayload& p, std::uint8_t version, std::uint8_t* out) {
  if (version >= kVersion2) {
    put_u16(out, p.tunnel_index);
    out += kOpenStreamIndexSize;
  }
  put_text(out, p.data);
}

}  // namespace tunnel::protocol

#include "agent/websocket_frames.hpp"

#include <algorithm>

namespace tunnel::agent {

std::string_view websocket_opcode_name(std::uint8_t opcode) {
  switch (opcode) {
    case 0x0:
      return "continuation";
    case 0x1:
      return "text";
    case 0x2:
      return "binary";
    case 0x8:
      return "close";
    case 0x9:
      return "ping";
    case 0xA:
      return "pong";
    default:
      return "reserved";
  }
}

WebSocketFrames parse_websocket_frames(std::string_view bytes, const WebSocketLimits& limits) {
  WebSocketFrames out;
  std::size_t shown = 0;  // payload bytes returned so far
  std::size_t at = 0;
  const auto u8 = [&](std::size_t i) { return static_cast<std::uint8_t>(bytes[i]); };
  while (at < bytes.size()) {
    const std::size_t start = at;
    const std::size_t left = bytes.size() - at;
    if (left < 2) {
      out.incomplete = true;
      break;
    }
    WebSocketFrame frame;
    frame.offset = start;
    frame.fin = (u8(at) & 0x80) != 0;
    frame.rsv1 = (u8(at) & 0x40) != 0;
    frame.opcode = u8(at) & 0x0f;
    frame.masked = (u8(at + 1) & 0x80) != 0;
    std::uint64_t size = u8(at + 1) & 0x7f;
    std::size_t header = 2;
    if (size == 126) {
      header = 4;
    } else if (size == 127) {
      header = 10;
    }
    if (frame.masked) header += 4;
    if (left < header) {
      out.incomplete = true;
      break;
    }
    if (size == 126) {
      size = (std::uint64_t{u8(at + 2)} << 8) | u8(at + 3);
    } else if (size == 127) {
      size = 0;
      for (std::size_t i = 0; i < 8; ++i) size = (size << 8) | u8(at + 2 + i);
      if ((size >> 63) != 0) {
        out.error = "not a WebSocket frame at byte " + std::to_string(start) +
                    ": a 64-bit length with its top bit set";
        break;
      }
    }
    frame.size = size;
    if (websocket_opcode_name(frame.opcode) == "reserved") {
      out.error = "not a WebSocket frame at byte " + std::to_string(start) + ": reserved opcode " +
                  std::to_string(frame.opcode);
      break;
    }
    if (frame.opcode >= 0x8 && (size > 125 || !frame.fin)) {
      out.error = "not a WebSocket frame at byte " + std::to_string(start) + ": a " +
                  std::string(websocket_opcode_name(frame.opcode)) +
                  " frame must be one unfragmented frame of at most 125 bytes";
      break;
    }
    std::uint8_t mask[4] = {0, 0, 0, 0};
    if (frame.masked) {
      for (std::size_t i = 0; i < 4; ++i) mask[i] = u8(at + header - 4 + i);
    }
    at += header;
    const std::size_t available = bytes.size() - at;
    const bool whole = size <= available;
    ++out.total;
    if (out.frames.size() < limits.max_frames) {
      const std::size_t budget = limits.total_cap - std::min(shown, limits.total_cap);
      const std::size_t keep = static_cast<std::size_t>(
          std::min<std::uint64_t>({size, available, limits.payload_cap, budget}));
      frame.payload.assign(bytes.substr(at, keep));
      for (std::size_t i = 0; i < keep; ++i) {
        frame.payload[i] =
            static_cast<char>(static_cast<std::uint8_t>(frame.payload[i]) ^ mask[i % 4]);
      }
      shown += keep;
      frame.cut = keep < size;
      out.frames.push_back(std::move(frame));
    }
    if (!whole) {
      out.incomplete = true;
      break;
    }
    at += static_cast<std::size_t>(size);
  }
  return out;
}

}  // namespace tunnel::agent

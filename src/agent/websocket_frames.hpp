// WebSocket frames (RFC 6455 section 5) in the bytes the inspector kept of an upgraded
// exchange, one direction at a time, parsed when the API is asked (never on the relay's path).
// Bounded whatever the bytes say: at most `max_frames` frames are returned, each with at most
// `payload_cap` payload bytes (unmasked), `total_cap` payload bytes in all; a length that runs
// past the kept bytes ends the parse (the frame is marked cut), and bytes that are not a frame
// (reserved opcode, a 64-bit length with its top bit set, a control frame over 125 bytes or
// fragmented) end it with an error naming the offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tunnel::agent {

struct WebSocketFrame {
  std::uint64_t offset = 0;  // where the frame starts in its direction's bytes
  bool fin = false;
  bool rsv1 = false;  // permessage-deflate: the payload is compressed
  std::uint8_t opcode = 0;
  bool masked = false;
  std::uint64_t size = 0;  // the payload's length, as the frame header says
  std::string payload;     // unmasked, at most payload_cap bytes of it
  bool cut = false;        // payload.size() < size (the cap, or the kept bytes ended)
};

struct WebSocketFrames {
  std::vector<WebSocketFrame> frames;  // the first max_frames
  std::uint64_t total = 0;             // frames seen in all (complete headers)
  std::string error;                   // why parsing stopped early; "" otherwise
  bool incomplete = false;             // the kept bytes end inside a frame
};

struct WebSocketLimits {
  std::size_t max_frames = 1000;
  std::size_t payload_cap = 4096;
  std::size_t total_cap = 1024 * 1024;
};

WebSocketFrames parse_websocket_frames(std::string_view bytes, const WebSocketLimits& limits);

// "text", "binary", "close", "ping", "pong", "continuation", or "reserved".
std::string_view websocket_opcode_name(std::uint8_t opcode);

}  // namespace tunnel::agent

#include "agent/websocket_frames.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace tunnel::agent {
namespace {

// One frame as a peer sends it: masked when `mask` is given (a client's frames are).
std::string frame(std::uint8_t opcode, const std::string& payload, bool fin = true,
                  const char* mask = nullptr) {
  std::string out;
  out += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const std::uint8_t m = mask != nullptr ? 0x80 : 0;
  const std::uint64_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(m | n);
  } else if (n <= 0xffff) {
    out += static_cast<char>(m | 126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  } else {
    out += static_cast<char>(m | 127);
    for (int i = 7; i >= 0; --i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  }
  if (mask == nullptr) return out + payload;
  out.append(mask, 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    out += static_cast<char>(payload[i] ^ mask[i % 4]);
  return out;
}

TEST(WebSocketFrames, MaskedAndUnmaskedTextAndBinary) {
  const std::string bytes =
      frame(0x1, "hello", true, "\x12\x34\x56\x78") + frame(0x2, std::string("\x00\xff", 2));
  const WebSocketFrames got = parse_websocket_frames(bytes, {});
  ASSERT_EQ(got.frames.size(), 2u);
  EXPECT_EQ(got.total, 2u);
  EXPECT_TRUE(got.error.empty());
  EXPECT_FALSE(got.incomplete);
  EXPECT_EQ(got.frames[0].opcode, 0x1);
  EXPECT_TRUE(got.frames[0].masked);
  EXPECT_TRUE(got.frames[0].fin);
  EXPECT_EQ(got.frames[0].payload, "hello");  // unmasked
  EXPECT_EQ(got.frames[0].size, 5u);
  EXPECT_EQ(got.frames[0].offset, 0u);
  EXPECT_EQ(got.frames[1].payload, std::string("\x00\xff", 2));
  EXPECT_FALSE(got.frames[1].masked);
  EXPECT_EQ(got.frames[1].offset, 11u);
  EXPECT_EQ(websocket_opcode_name(got.frames[1].opcode), "binary");
}

TEST(WebSocketFrames, SixteenAndSixtyFourBitLengthsAndTheCaps) {
  const std::string mid(300, 'm');
  const std::string big(70000, 'b');
  const std::string bytes = frame(0x2, mid, true, "abcd") + frame(0x2, big);
  WebSocketLimits limits;
  limits.payload_cap = 100;
  const WebSocketFrames got = parse_websocket_frames(bytes, limits);
  ASSERT_EQ(got.frames.size(), 2u);
  EXPECT_EQ(got.frames[0].size, 300u);
  EXPECT_EQ(got.frames[0].payload, std::string(100, 'm'));  // unmasked, cut at the cap
  EXPECT_TRUE(got.frames[0].cut);
  EXPECT_EQ(got.frames[1].size, 70000u);
  EXPECT_EQ(got.frames[1].payload.size(), 100u);
  EXPECT_FALSE(got.incomplete);

  limits.total_cap = 150;  // the second frame gets what is left of the total
  EXPECT_EQ(parse_websocket_frames(bytes, limits).frames[1].payload.size(), 50u);
  limits.max_frames = 1;
  const WebSocketFrames one = parse_websocket_frames(bytes, limits);
  EXPECT_EQ(one.frames.size(), 1u);
  EXPECT_EQ(one.total, 2u);  // counted, not returned
}

TEST(WebSocketFrames, FragmentsAndControlFrames) {
  std::string close_payload =
      "\x03\xe8"
      "bye";  // 1000, "bye"
  const std::string bytes = frame(0x1, "hel", false) + frame(0x9, "p") + frame(0x0, "lo", true) +
                            frame(0xA, "p", true, "wxyz") + frame(0x8, close_payload);
  const WebSocketFrames got = parse_websocket_frames(bytes, {});
  ASSERT_EQ(got.frames.size(), 5u);
  EXPECT_FALSE(got.frames[0].fin);
  EXPECT_EQ(websocket_opcode_name(got.frames[1].opcode), "ping");  // between fragments
  EXPECT_EQ(websocket_opcode_name(got.frames[2].opcode), "continuation");
  EXPECT_EQ(got.frames[2].payload, "lo");
  EXPECT_EQ(websocket_opcode_name(got.frames[3].opcode), "pong");
  EXPECT_EQ(got.frames[3].payload, "p");
  EXPECT_EQ(got.frames[4].payload, close_payload);
  EXPECT_TRUE(got.error.empty());
}

TEST(WebSocketFrames, CutCaptureAndGarbageStopWithoutUnboundedWork) {
  // The kept bytes end inside a frame whose header claims 2^62 bytes: one cut frame, no
  // allocation of its length.
  std::string huge = "\x82\x7f";
  huge += std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8);
  huge += "abc";
  WebSocketFrames got = parse_websocket_frames(huge, {});
  ASSERT_EQ(got.frames.size(), 1u);
  EXPECT_EQ(got.frames[0].size, std::uint64_t{1} << 62);
  EXPECT_EQ(got.frames[0].payload, "abc");
  EXPECT_TRUE(got.frames[0].cut);
  EXPECT_TRUE(got.incomplete);

  // A header cut in the middle.
  got = parse_websocket_frames(frame(0x1, "ok") + "\x81\x7e\x01", {});
  EXPECT_EQ(got.frames.size(), 1u);
  EXPECT_TRUE(got.incomplete);

  // A 64-bit length with its top bit set, a reserved opcode, an oversized or fragmented
  // control frame: not frames; what came before stays.
  std::string top = "\x82\x7f\x80";
  top += std::string(7, '\0');
  got = parse_websocket_frames(frame(0x1, "a") + top, {});
  EXPECT_EQ(got.frames.size(), 1u);
  EXPECT_NE(got.error.find("byte 3"), std::string::npos) << got.error;
  EXPECT_NE(
      parse_websocket_frames(std::string_view("\x83\x00", 2), {}).error.find("reserved opcode 3"),
      std::string::npos);
  EXPECT_NE(parse_websocket_frames(frame(0x9, std::string(126, 'x')), {}).error.find("ping"),
            std::string::npos);
  EXPECT_NE(parse_websocket_frames(frame(0x8, "", false), {}).error.find("close"),
            std::string::npos);
  // HTTP bytes are not frames either ('G' = 0x47: reserved opcode 7).
  EXPECT_FALSE(parse_websocket_frames("GET / HTTP/1.1\r\n\r\n", {}).error.empty());

  // Many tiny frames: counted, at most max_frames kept.
  std::string many;
  for (int i = 0; i < 5000; ++i) many += frame(0x2, "");
  got = parse_websocket_frames(many, {});
  EXPECT_EQ(got.total, 5000u);
  EXPECT_EQ(got.frames.size(), 1000u);
}

}  // namespace
}  // namespace tunnel::agent

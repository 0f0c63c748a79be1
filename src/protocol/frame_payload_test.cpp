#include "protocol/frame_payload.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/frame.hpp"

namespace tunnel::protocol {
namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

template <typename P>
std::string encoded(const P& p) {
  std::string out(encoded_size(p), '\0');
  encode(p, reinterpret_cast<std::uint8_t*>(out.data()));
  return out;
}

std::string encoded_open(const OpenStreamPayload& p, std::uint8_t version) {
  std::string out(encoded_size(p, version), '\0');
  encode(p, version, reinterpret_cast<std::uint8_t*>(out.data()));
  return out;
}

TEST(FramePayloadTest, ResetLayoutAndRoundTrip) {
  const ResetPayload p{ErrorCode::kRefused, "the agent has 5 open streams"};
  const std::string wire = encoded(p);
  EXPECT_EQ(wire, std::string("\0\0\0\x06", 4) + "the agent has 5 open streams");
  auto back = decode_reset(bytes(wire));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value(), p);
}

TEST(FramePayloadTest, GoAwayLayoutAndRoundTrip) {
  const GoAwayPayload p{0x01020304, ErrorCode::kGoingAway, "draining"};
  const std::string wire = encoded(p);
  EXPECT_EQ(wire, std::string("\x01\x02\x03\x04\0\0\0\x0b", 8) + "draining");
  auto back = decode_go_away(bytes(wire));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value(), p);
}

TEST(FramePayloadTest, NoticeLayoutAndRoundTrip) {
  const NoticePayload p{0x0102, "slow down"};
  const std::string wire = encoded(p);
  EXPECT_EQ(wire, std::string("\x01\x02", 2) + "slow down");
  auto back = decode_notice(bytes(wire));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value(), p);
}

TEST(FramePayloadTest, OpenStreamCarriesTheTunnelIndexInV2Only) {
  const OpenStreamPayload p{7, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"};
  const std::string v2 = encoded_open(p, kVersion2);
  EXPECT_EQ(v2, std::string("\0\x07", 2) + std::string(p.data));
  auto back = decode_open_stream(bytes(v2), kVersion2);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value(), p);

  const std::string v1 = encoded_open(p, kVersion1);
  EXPECT_EQ(v1, p.data);
  back = decode_open_stream(bytes(v1), kVersion1);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value().tunnel_index, 0);
  EXPECT_EQ(back.value().data, p.data);
}

TEST(FramePayloadTest, EmptyMessagesAndFixedFieldsOnly) {
  EXPECT_EQ(decode_reset(bytes(std::string(4, '\0'))).value(), ResetPayload{});
  EXPECT_EQ(decode_go_away(bytes(std::string(8, '\0'))).value(), GoAwayPayload{});
  EXPECT_EQ(decode_notice(bytes(std::string(2, '\0'))).value(), NoticePayload{});
  EXPECT_EQ(decode_open_stream(bytes(std::string(2, '\0')), kVersion2).value(),
            OpenStreamPayload{});
  EXPECT_EQ(decode_open_stream({}, kVersion1).value(), OpenStreamPayload{});
}

TEST(FramePayloadTest, UnknownErrorCodesAndAnyMessageBytesAreKept) {
  const std::string wire = std::string("\xff\xff\xff\xfe", 4) + std::string("\0\x1b[2J\xff", 6);
  auto reset = decode_reset(bytes(wire));
  ASSERT_TRUE(reset) << reset.error().message;
  EXPECT_EQ(static_cast<std::uint32_t>(reset.value().code), 0xfffffffeu);
  EXPECT_EQ(reset.value().message, std::string("\0\x1b[2J\xff", 6));
  EXPECT_EQ(encoded(reset.value()), wire);
}

TEST(FramePayloadTest, ShortPayloadsNameTheFrameTheFieldAndTheSize) {
  EXPECT_EQ(decode_reset(bytes("abc")).error().message,
            "RESET payload of 3 bytes is too short for its error code (bytes 0..3)");
  EXPECT_EQ(decode_go_away(bytes("abc")).error().message,
            "GOAWAY payload of 3 bytes is too short for its last stream id (bytes 0..3)");
  EXPECT_EQ(decode_go_away(bytes("abcdefg")).error().message,
            "GOAWAY payload of 7 bytes is too short for its error code (bytes 4..7)");
  EXPECT_EQ(decode_notice(bytes("a")).error().message,
            "NOTICE payload of 1 bytes is too short for its tunnel index (bytes 0..1)");
  EXPECT_EQ(decode_open_stream({}, kVersion2).error().message,
            "OPEN_STREAM payload of 0 bytes is too short for its tunnel index (bytes 0..1)");
  EXPECT_FALSE(decode_reset({}));
  EXPECT_FALSE(decode_go_away({}));
  EXPECT_FALSE(decode_notice({}));
}

}  // namespace
}  // namespace tunnel::protocol

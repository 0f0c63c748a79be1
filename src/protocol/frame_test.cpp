#include "protocol/frame.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "protocol/error_code.hpp"

namespace tunnel::protocol {
namespace {

using Bytes = std::vector<std::uint8_t>;

// A raw header with every field chosen by the test, bypassing encode_header's checks.
Bytes raw_header(std::uint32_t length, std::uint8_t m0, std::uint8_t m1, std::uint8_t version,
                 std::uint8_t type, std::uint8_t flags = 0, std::uint32_t stream = 0) {
  Bytes b(kHeaderSize);
  put_u32(b.data(), length);
  b[4] = m0;
  b[5] = m1;
  b[6] = version;
  b[7] = type;
  b[8] = flags;
  put_u32(b.data() + 9, stream);
  return b;
}

Bytes header(std::uint32_t length, std::uint8_t version, std::uint8_t type) {
  return raw_header(length, kMagic0, kMagic1, version, type);
}

TEST(FrameHeader, EncodesTheDocumentedLayout) {
  std::array<std::uint8_t, kHeaderSize> out{};
  encode_header(out.data(), kVersion1, FrameType::kData, flags::kEndStream, 0x01020304, 5);
  const std::array<std::uint8_t, kHeaderSize> expected = {
      0x00, 0x00, 0x00, 0x0E,  // length 9 + 5
      0x52, 0x54,              // "RT"
      0x01,                    // version
      0x03,                    // DATA
      0x01,                    // END_STREAM
      0x01, 0x02, 0x03, 0x04,  // stream id
  };
  EXPECT_EQ(out, expected);
}

// The byte examples printed in docs/protocol.md.
TEST(FrameHeader, MatchesTheDocumentedExamples) {
  const std::string auth = R"({"token":"t"})";
  Bytes frame(kHeaderSize);
  encode_header(frame.data(), kVersion1, FrameType::kAuth, 0, 0, auth.size());
  frame.insert(frame.end(), auth.begin(), auth.end());
  EXPECT_EQ(frame,
            (Bytes{0x00, 0x00, 0x00, 0x16, 0x52, 0x54, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
                   0x7b, 0x22, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x22, 0x3a, 0x22, 0x74, 0x22, 0x7d}));

  Bytes update(kHeaderSize + 4);
  encode_header(update.data(), kVersion2, FrameType::kWindowUpdate, 0, 1, 4);
  put_u32(update.data() + kHeaderSize, 65536);
  EXPECT_EQ(update, (Bytes{0x00, 0x00, 0x00, 0x0d, 0x52, 0x54, 0x02, 0x06, 0x00, 0x00, 0x00, 0x00,
                           0x01, 0x00, 0x01, 0x00, 0x00}));

  const std::string message = "localhost:3000";
  Bytes reset(kHeaderSize + 4);
  encode_header(reset.data(), kVersion2, FrameType::kReset, 0, 3, 4 + message.size());
  put_u32(reset.data() + kHeaderSize, static_cast<std::uint32_t>(ErrorCode::kLocalUnreachable));
  reset.insert(reset.end(), message.begin(), message.end());
  EXPECT_EQ(reset, (Bytes{0x00, 0x00, 0x00, 0x1b, 0x52, 0x54, 0x02, 0x07, 0x00, 0x00, 0x00,
                          0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x6c,
                          0x68, 0x6f, 0x73, 0x74, 0x3a, 0x33, 0x30, 0x30, 0x30}));
}

TEST(FrameHeader, RoundTripsEveryFieldInBothVersions) {
  for (std::uint8_t version : {kVersion1, kVersion2}) {
    std::array<std::uint8_t, kHeaderSize> out{};
    encode_header(out.data(), version, FrameType::kHeartbeat, flags::kAck | flags::kError,
                  0xFFFFFFFF, 1234);
    const HeaderDecode d = decode_header(out, version);
    ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
    EXPECT_EQ(d.header.length, 9u + 1234u);
    EXPECT_EQ(d.header.payload_size(), 1234u);
    EXPECT_EQ(d.header.version, version);
    EXPECT_EQ(d.header.frame_type(), FrameType::kHeartbeat);
    EXPECT_TRUE(d.header.has(flags::kAck));
    EXPECT_TRUE(d.header.has(flags::kError));
    EXPECT_FALSE(d.header.has(flags::kEndStream));
    EXPECT_EQ(d.header.stream_id, 0xFFFFFFFFu);
    EXPECT_TRUE(d.error.empty());
  }
}

TEST(FrameHeader, NeedsThirteenBytes) {
  const Bytes full = header(9, kVersion1, 5);
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    const HeaderDecode d = decode_header(std::span(full.data(), n), kVersion1);
    EXPECT_EQ(d.status, DecodeStatus::kNeedMore) << n;
  }
  EXPECT_EQ(decode_header(full, kVersion1).status, DecodeStatus::kOk);
}

TEST(FrameHeader, IgnoresBytesAfterTheHeader) {
  Bytes b = header(12, kVersion1, 3);
  b.insert(b.end(), {'a', 'b', 'c', 0xFF});
  const HeaderDecode d = decode_header(b, kVersion1);
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.header.payload_size(), 3u);
}

TEST(FrameHeader, RejectsLengthBelowNine) {
  for (std::uint32_t len : {0u, 1u, 3u, 8u}) {
    const HeaderDecode d = decode_header(header(len, kVersion1, 3), kVersion1);
    EXPECT_EQ(d.status, DecodeStatus::kError);
    EXPECT_EQ(d.error, "frame length " + std::to_string(len) + " is below the minimum 9");
  }
  EXPECT_EQ(decode_header(header(9, kVersion1, 3), kVersion1).status, DecodeStatus::kOk);
}

TEST(FrameHeader, AcceptsExactlySixteenMiBAndRejectsOneMore) {
  for (std::uint8_t version : {kVersion1, kVersion2}) {
    const HeaderDecode max = decode_header(header(16u * 1024 * 1024, version, 3), version);
    ASSERT_EQ(max.status, DecodeStatus::kOk) << max.error;
    EXPECT_EQ(max.header.payload_size(), kMaxPayload);
    EXPECT_EQ(max.header.payload_size(), 16u * 1024 * 1024 - 9);

    const HeaderDecode over = decode_header(header(16u * 1024 * 1024 + 1, version, 3), version);
    EXPECT_EQ(over.status, DecodeStatus::kError);
    EXPECT_EQ(over.error, "frame length 16777217 is above the maximum 16777216");
  }
  const HeaderDecode huge = decode_header(header(0xFFFFFFFF, kVersion1, 3), kVersion1);
  EXPECT_EQ(huge.error, "frame length 4294967295 is above the maximum 16777216");
}

TEST(FrameHeader, ChecksLengthBeforeEverythingElse) {
  // Every other field is wrong too: the length is what gets reported.
  const HeaderDecode d = decode_header(raw_header(2, 'G', 'E', 7, 200), kVersion1);
  EXPECT_EQ(d.error, "frame length 2 is below the minimum 9");
}

TEST(FrameHeader, RejectsBadMagic) {
  // "GET /" is what arrives when someone points a browser at the agent port.
  const Bytes http = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.'};
  EXPECT_EQ(decode_header(http, kVersion1).error,
            "frame length 1195725856 is above the maximum 16777216");
  const HeaderDecode d = decode_header(raw_header(9, 0x47, 0x45, 1, 1), kVersion1);
  EXPECT_EQ(d.status, DecodeStatus::kError);
  EXPECT_EQ(d.error, "bad magic 0x4745 (expected 0x5254 \"RT\")");
  EXPECT_EQ(decode_header(raw_header(9, 0x54, 0x52, 2, 1), kVersion2).error,
            "bad magic 0x5452 (expected 0x5254 \"RT\")");
}

TEST(FrameHeader, RejectsAnotherVersion) {
  EXPECT_EQ(decode_header(header(9, 7, 1), kVersion1).error, "unsupported version 7 (expected 1)");
  EXPECT_EQ(decode_header(header(9, 2, 1), kVersion1).error, "unsupported version 2 (expected 1)");
  EXPECT_EQ(decode_header(header(9, 1, 1), kVersion2).error, "unsupported version 1 (expected 2)");
  EXPECT_EQ(decode_header(header(9, 0, 1), kVersion2).error, "unsupported version 0 (expected 2)");
}

TEST(FrameHeader, VersionOneAcceptsOnlyTypesOneToFive) {
  for (int type = 0; type <= 255; ++type) {
    const auto t = static_cast<std::uint8_t>(type);
    const HeaderDecode d = decode_header(header(9, kVersion1, t), kVersion1);
    if (type >= 1 && type <= 5) {
      EXPECT_EQ(d.status, DecodeStatus::kOk) << type;
    } else {
      EXPECT_EQ(d.status, DecodeStatus::kError) << type;
      EXPECT_EQ(d.error, "unknown frame type " + std::to_string(type) + " for protocol version 1");
    }
  }
}

TEST(FrameHeader, VersionTwoAcceptsUnknownTypesSoTheProtocolCanGrow) {
  for (int type = 0; type <= 255; ++type) {
    const auto t = static_cast<std::uint8_t>(type);
    const HeaderDecode d = decode_header(header(9 + 4, kVersion2, t), kVersion2);
    ASSERT_EQ(d.status, DecodeStatus::kOk) << type;
    EXPECT_EQ(d.header.type, t);
    EXPECT_EQ(d.header.payload_size(), 4u);
  }
}

TEST(FrameHeader, KnownTypesPerVersion) {
  EXPECT_FALSE(is_known_type(kVersion1, 0));
  EXPECT_TRUE(is_known_type(kVersion1, 1));
  EXPECT_TRUE(is_known_type(kVersion1, 5));
  EXPECT_FALSE(is_known_type(kVersion1, 6));
  EXPECT_FALSE(is_known_type(kVersion2, 0));
  EXPECT_TRUE(is_known_type(kVersion2, 6));
  EXPECT_TRUE(is_known_type(kVersion2, 9));
  EXPECT_TRUE(is_known_type(kVersion2, 10));
  EXPECT_FALSE(is_known_type(kVersion2, 11));
  EXPECT_FALSE(is_known_type(3, 1));
}

TEST(FrameHeader, TypeNames) {
  EXPECT_EQ(type_name(1), "AUTH");
  EXPECT_EQ(type_name(2), "OPEN_STREAM");
  EXPECT_EQ(type_name(3), "DATA");
  EXPECT_EQ(type_name(4), "CLOSE");
  EXPECT_EQ(type_name(5), "HEARTBEAT");
  EXPECT_EQ(type_name(6), "WINDOW_UPDATE");
  EXPECT_EQ(type_name(7), "RESET");
  EXPECT_EQ(type_name(8), "GOAWAY");
  EXPECT_EQ(type_name(9), "PING");
  EXPECT_EQ(type_name(0), "UNKNOWN");
  EXPECT_EQ(type_name(10), "NOTICE");
  EXPECT_EQ(type_name(11), "UNKNOWN");
  EXPECT_EQ(type_name(255), "UNKNOWN");
}

TEST(FrameHeader, BigEndianHelpers) {
  std::array<std::uint8_t, 4> b{};
  put_u32(b.data(), 0xA1B2C3D4);
  EXPECT_EQ(b, (std::array<std::uint8_t, 4>{0xA1, 0xB2, 0xC3, 0xD4}));
  EXPECT_EQ(get_u32(b.data()), 0xA1B2C3D4u);
  put_u16(b.data(), 0xBEEF);
  EXPECT_EQ(b[0], 0xBE);
  EXPECT_EQ(b[1], 0xEF);
  EXPECT_EQ(get_u16(b.data()), 0xBEEF);
}

TEST(ErrorCode, NamesEveryCode) {
  EXPECT_EQ(error_code_name(ErrorCode::kNoError), "NO_ERROR");
  EXPECT_EQ(error_code_name(ErrorCode::kProtocolError), "PROTOCOL_ERROR");
  EXPECT_EQ(error_code_name(ErrorCode::kInternalError), "INTERNAL_ERROR");
  EXPECT_EQ(error_code_name(ErrorCode::kFlowControlError), "FLOW_CONTROL_ERROR");
  EXPECT_EQ(error_code_name(ErrorCode::kStreamClosed), "STREAM_CLOSED");
  EXPECT_EQ(error_code_name(ErrorCode::kFrameTooLarge), "FRAME_TOO_LARGE");
  EXPECT_EQ(error_code_name(ErrorCode::kRefused), "REFUSED");
  EXPECT_EQ(error_code_name(ErrorCode::kCancel), "CANCEL");
  EXPECT_EQ(error_code_name(ErrorCode::kLocalUnreachable), "LOCAL_UNREACHABLE");
  EXPECT_EQ(error_code_name(ErrorCode::kTimeout), "TIMEOUT");
  EXPECT_EQ(error_code_name(ErrorCode::kAuthFailed), "AUTH_FAILED");
  EXPECT_EQ(error_code_name(ErrorCode::kGoingAway), "GOING_AWAY");
  EXPECT_EQ(error_code_name(ErrorCode::kLocalError), "LOCAL_ERROR");
  EXPECT_EQ(error_code_name(static_cast<ErrorCode>(13)), "UNKNOWN");
  EXPECT_EQ(error_code_name(static_cast<ErrorCode>(0xFFFFFFFF)), "UNKNOWN");
}

}  // namespace
}  // namespace tunnel::protocol

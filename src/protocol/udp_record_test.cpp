#include "protocol/udp_record.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tunnel::protocol {
namespace {

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text(std::span<const std::uint8_t> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

TEST(UdpRecord, EncodesLengthBigEndianThenBytes) {
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(append_udp_record(out, bytes("abc")));
  ASSERT_TRUE(append_udp_record(out, {}));
  EXPECT_EQ(out, (std::vector<std::uint8_t>{0x00, 0x03, 'a', 'b', 'c', 0x00, 0x00}));
  std::vector<std::uint8_t> big(300, 7);
  out.clear();
  ASSERT_TRUE(append_udp_record(out, big));
  EXPECT_EQ(out[0], 0x01);
  EXPECT_EQ(out[1], 0x2c);
  EXPECT_EQ(out.size(), 302u);
}

TEST(UdpRecord, DocumentedExample) {
  // docs/protocol.md, "UDP tunnels": "hi" then an empty datagram.
  std::vector<std::uint8_t> out;
  append_udp_record(out, bytes("hi"));
  append_udp_record(out, {});
  EXPECT_EQ(out, (std::vector<std::uint8_t>{0x00, 0x02, 0x68, 0x69, 0x00, 0x00}));
}

TEST(UdpRecord, RefusesDatagramsAboveTheUdpMaximum) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> max(kMaxDatagram, 1);
  EXPECT_TRUE(append_udp_record(out, max));
  EXPECT_EQ(out.size(), kMaxDatagram + 2);
  std::vector<std::uint8_t> over(kMaxDatagram + 1, 1);
  out.clear();
  EXPECT_FALSE(append_udp_record(out, over));
  EXPECT_TRUE(out.empty());
}

TEST(UdpRecord, ReaderSplitsRecordsFedOneByteAtATime) {
  std::vector<std::uint8_t> wire;
  const std::vector<std::string> datagrams = {"one", "", std::string(70000 / 2, 'x'), "last"};
  for (const auto& d : datagrams) ASSERT_TRUE(append_udp_record(wire, bytes(d)));
  UdpRecordReader reader;
  std::vector<std::string> got;
  for (std::uint8_t b : wire) {
    reader.feed(std::span<const std::uint8_t>(&b, 1));
    std::span<const std::uint8_t> d;
    while (reader.next(d)) got.push_back(text(d));
    ASSERT_TRUE(reader.error().empty());
  }
  EXPECT_EQ(got, datagrams);
  EXPECT_EQ(reader.pending(), 0u);
}

TEST(UdpRecord, ReaderTakesManyRecordsFromOneChunk) {
  std::vector<std::uint8_t> wire;
  for (int i = 0; i < 100; ++i) append_udp_record(wire, bytes("datagram " + std::to_string(i)));
  wire.push_back(0x00);  // half a header
  UdpRecordReader reader;
  reader.feed(wire);
  std::span<const std::uint8_t> d;
  int n = 0;
  while (reader.next(d)) EXPECT_EQ(text(d), "datagram " + std::to_string(n++));
  EXPECT_EQ(n, 100);
  EXPECT_EQ(reader.pending(), 1u);
  const std::uint8_t rest[] = {0x02, 'h', 'i'};
  reader.feed(rest);
  ASSERT_TRUE(reader.next(d));
  EXPECT_EQ(text(d), "hi");
}

TEST(UdpRecord, ReaderRejectsRecordsAboveTheMaximum) {
  const std::uint8_t wire[] = {0xff, 0xff, 'x'};
  UdpRecordReader reader;
  reader.feed(wire);
  std::span<const std::uint8_t> d;
  EXPECT_FALSE(reader.next(d));
  EXPECT_EQ(reader.error(), "udp record of 65535 bytes is above the maximum datagram size 65507");
  EXPECT_FALSE(reader.next(d));
}

}  // namespace
}  // namespace tunnel::protocol

// FrameReader against a scripted Conn: its memory follows the bytes that arrived, not the length
// a peer announces, and frames of every size still decode however the bytes are cut.
#include "mux/frame_io.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>

#include "protocol/handshake.hpp"

namespace tunnel::mux {
namespace {

using transport::error_code;

// A Conn whose reads return the scripted bytes, at most `per_read` at a time, then EOF.
class ScriptedConn : public transport::Conn {
 public:
  ScriptedConn(asio::io_context& io, std::vector<std::uint8_t> bytes, std::size_t per_read)
      : io_(io), socket_(io), bytes_(std::move(bytes)), per_read_(per_read) {
    peer_ = "scripted";
  }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, error_code& ec) override {
    if (at_ == bytes_.size()) {
      ec = asio::error::eof;
      co_return 0;
    }
    const std::size_t n = std::min({buf.size(), per_read_, bytes_.size() - at_});
    std::memcpy(buf.data(), bytes_.data() + at_, n);
    at_ += n;
    co_return n;
  }
  asio::awaitable<void> write(std::span<const asio::const_buffer>, error_code&) override {
    co_return;
  }
  asio::awaitable<void> shutdown_send() override { co_return; }
  void close() override {}
  asio::any_io_executor get_executor() override { return io_.get_executor(); }
  void move_to(const asio::any_io_executor&, error_code&) override {}
  transport::tcp::socket& socket() override { return socket_; }
  bool is_tls() const override { return false; }

  std::size_t consumed() const { return at_; }

 private:
  asio::io_context& io_;
  transport::tcp::socket socket_;
  std::vector<std::uint8_t> bytes_;
  std::size_t per_read_;
  std::size_t at_ = 0;
};

std::vector<std::uint8_t> frame_bytes(std::uint8_t type, std::size_t payload_size,
                                      std::uint8_t seed) {
  std::vector<std::uint8_t> payload(payload_size);
  for (std::size_t i = 0; i < payload_size; ++i) {
    payload[i] = static_cast<std::uint8_t>(i * 31 + seed);
  }
  std::vector<std::uint8_t> out;
  append_frame(out, protocol::kVersion2, static_cast<protocol::FrameType>(type), 0, 7, payload);
  return out;
}

std::vector<std::uint8_t> header_only(std::uint32_t payload_size) {
  std::vector<std::uint8_t> out(protocol::kHeaderSize);
  protocol::encode_header(out.data(), protocol::kVersion2, protocol::FrameType::kData, 0, 1,
                          payload_size);
  return out;
}

struct Outcome {
  std::vector<std::vector<std::uint8_t>> payloads;  // each frame's payload, in order
  std::string error;
  error_code ec;
};

// Reads frames until the reader reports an error or EOF.
Outcome read_all(FrameReader& reader, ScriptedConn& conn, asio::io_context& io) {
  Outcome out;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Frame frame;
        for (;;) {
          auto read = co_await reader.next(conn, frame, out.ec);
          if (!read) {
            out.error = read.error().message;
            break;
          }
          out.payloads.emplace_back(frame.payload.begin(), frame.payload.end());
        }
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  io.run();
  io.restart();
  return out;
}

TEST(FrameReaderTest, AnnouncedLengthAloneDoesNotGrowTheBuffer) {
  asio::io_context io;
  auto bytes = header_only(static_cast<std::uint32_t>(protocol::kMaxPayload));
  bytes.resize(bytes.size() + 10, 'x');  // a few bytes of the 16 MiB that never come
  ScriptedConn conn(io, bytes, 1 << 20);
  FrameReader reader(protocol::kVersion2);
  const Outcome out = read_all(reader, conn, io);
  EXPECT_TRUE(out.payloads.empty());
  EXPECT_EQ(out.error, "connection closed in the middle of a frame");
  EXPECT_LE(reader.capacity(), 100u * 1024)
      << "the reader sized its buffer to the announced length";
  EXPECT_EQ(reader.buffered(), protocol::kHeaderSize + 10);
}

TEST(FrameReaderTest, BufferGrowsWithWhatArrivesNotWithTheAnnouncedLength) {
  asio::io_context io;
  auto bytes = header_only(static_cast<std::uint32_t>(protocol::kMaxPayload));
  bytes.resize(bytes.size() + 1024 * 1024, 'x');  // 1 MiB of a 16 MiB frame, then EOF
  ScriptedConn conn(io, bytes, 64 * 1024);
  FrameReader reader(protocol::kVersion2);
  const Outcome out = read_all(reader, conn, io);
  EXPECT_TRUE(out.payloads.empty());
  EXPECT_EQ(reader.buffered(), bytes.size());
  EXPECT_LE(reader.capacity(), 2 * bytes.size() + FrameReader::kReadChunk);
}

TEST(FrameReaderTest, OverLimitHeaderIsRefusedFromTheHeaderAlone) {
  asio::io_context io;
  // Only the header: the old reader waited for the payload (and sized its buffer for it).
  ScriptedConn conn(io, header_only(protocol::kMaxAuthPayload + 1), 1 << 20);
  FrameReader reader(protocol::kVersion1);
  reader.set_version(protocol::kVersion2);
  reader.set_max_payload(protocol::kMaxAuthPayload);
  const Outcome out = read_all(reader, conn, io);
  EXPECT_TRUE(out.payloads.empty());
  EXPECT_FALSE(out.ec) << out.ec.message();
  EXPECT_EQ(out.error,
            "a DATA frame announces a payload of 65537 bytes, above the limit of 65536 "
            "bytes");
  EXPECT_LE(reader.capacity(), FrameReader::kInitialBuffer);
}

TEST(FrameReaderTest, FrameAtTheLimitIsAccepted) {
  asio::io_context io;
  const auto bytes = frame_bytes(1, protocol::kMaxAuthPayload, 3);
  ScriptedConn conn(io, bytes, 1 << 20);
  FrameReader reader(protocol::kVersion2, protocol::kMaxAuthPayload);
  const Outcome out = read_all(reader, conn, io);
  ASSERT_EQ(out.payloads.size(), 1u) << out.error;
  EXPECT_EQ(out.payloads[0].size(), protocol::kMaxAuthPayload);
  EXPECT_TRUE(std::equal(out.payloads[0].begin(), out.payloads[0].end(),
                         bytes.begin() + protocol::kHeaderSize));
  EXPECT_EQ(out.error, "connection closed by peer");
}

// Frames of sizes around every boundary of the buffer, back to back, cut into reads of
// different sizes: each decodes to its bytes.
class FrameReaderSizesTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(FrameReaderSizesTest, EverySizeDecodes) {
  const std::vector<std::size_t> sizes = {
      0,
      1,
      FrameReader::kInitialBuffer - protocol::kHeaderSize,
      FrameReader::kInitialBuffer - protocol::kHeaderSize + 1,
      FrameReader::kInitialBuffer,
      64 * 1024,
      FrameReader::kReadChunk - protocol::kHeaderSize,
      FrameReader::kReadChunk,
      FrameReader::kReadChunk * 2 + 5,
      1024 * 1024 + 3,
      7,
      protocol::kMaxPayload,
      100,
  };
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto f = frame_bytes(3, sizes[i], static_cast<std::uint8_t>(i));
    bytes.insert(bytes.end(), f.begin(), f.end());
  }
  asio::io_context io;
  ScriptedConn conn(io, bytes, GetParam());
  FrameReader reader(protocol::kVersion2);
  const Outcome out = read_all(reader, conn, io);
  EXPECT_EQ(out.error, "connection closed by peer");
  ASSERT_EQ(out.payloads.size(), sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto want = frame_bytes(3, sizes[i], static_cast<std::uint8_t>(i));
    ASSERT_EQ(out.payloads[i].size(), sizes[i]) << "frame " << i;
    EXPECT_TRUE(std::equal(out.payloads[i].begin(), out.payloads[i].end(),
                           want.begin() + protocol::kHeaderSize))
        << "frame " << i << " of " << sizes[i] << " bytes";
  }
  // After the big frames the buffer went back to its busy size.
  EXPECT_LE(reader.capacity(), 2 * FrameReader::kReadChunk);
}

INSTANTIATE_TEST_SUITE_P(ReadSizes, FrameReaderSizesTest,
                         ::testing::Values(std::size_t{1} << 30, 65536, 4099, 13));

TEST(FrameReaderTest, FramesArrivingOneByteAtATimeDecode) {
  std::vector<std::uint8_t> bytes;
  const std::vector<std::size_t> sizes = {0, 5, 20'000, 100'000, 1};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto f = frame_bytes(3, sizes[i], static_cast<std::uint8_t>(i));
    bytes.insert(bytes.end(), f.begin(), f.end());
  }
  asio::io_context io;
  ScriptedConn conn(io, bytes, 1);
  FrameReader reader(protocol::kVersion2);
  const Outcome out = read_all(reader, conn, io);
  EXPECT_EQ(out.error, "connection closed by peer");
  ASSERT_EQ(out.payloads.size(), sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto want = frame_bytes(3, sizes[i], static_cast<std::uint8_t>(i));
    EXPECT_TRUE(std::equal(out.payloads[i].begin(), out.payloads[i].end(),
                           want.begin() + protocol::kHeaderSize, want.end()))
        << "frame " << i;
  }
}

}  // namespace
}  // namespace tunnel::mux

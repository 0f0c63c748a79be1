#include "mux/frame_io.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace tunnel::mux {

using protocol::DecodeStatus;

namespace {
// Out of line and cold: formatting stays off the decoding path.
[[gnu::cold, gnu::noinline]] std::string over_limit(const protocol::FrameHeader& header,
                                                    std::size_t max_payload) {
  return fmt::format("a {} frame announces a payload of {} bytes, above the limit of {} bytes",
                     protocol::type_name(header.type), header.payload_size(), max_payload);
}
}  // namespace

asio::awaitable<common::Status> FrameReader::next(transport::Conn& conn, Frame& frame,
                                                  transport::error_code& ec) {
  for (;;) {
    const std::size_t have = end_ - start_;
    if (have >= protocol::kHeaderSize) {
      auto decoded = protocol::decode_header({buf_.data() + start_, have}, version_);
      if (decoded.status == DecodeStatus::kError) co_return common::fail(std::move(decoded.error));
      if (decoded.header.payload_size() > max_payload_) {
        co_return common::fail(over_limit(decoded.header, max_payload_));
      }
      const std::size_t need = protocol::kHeaderSize + decoded.header.payload_size();
      if (have >= need) {
        frame.header = decoded.header;
        frame.payload = {buf_.data() + start_ + protocol::kHeaderSize,
                         decoded.header.payload_size()};
        start_ += need;
        co_return common::success();
      }
      if (buf_.size() - start_ < need) {
        // The frame will not fit behind start_: move it to the front. When the buffer is full,
        // grow by what arrived (at least doubling while small), never to the announced length
        // up front: the length is only the peer's word.
        if (start_ != 0) {
          std::memmove(buf_.data(), buf_.data() + start_, have);
          end_ = have;
          start_ = 0;
        }
        if (end_ == buf_.size()) buf_.resize(std::min(need, std::max(2 * have, have + kReadChunk)));
      }
    } else if (start_ == end_) {
      start_ = end_ = 0;
      if (buf_.size() > kReadChunk) {
        // A big frame grew the buffer; give the memory back.
        buf_.resize(kReadChunk);
        buf_.shrink_to_fit();
      } else if (last_read_full_ && buf_.size() < kReadChunk) {
        buf_.resize(kReadChunk);  // busy session: read in larger chunks
      }
    }
    if (buf_.empty()) buf_.resize(kInitialBuffer);
    if (end_ == buf_.size()) {
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    const std::size_t n =
        co_await conn.read_some(asio::buffer(buf_.data() + end_, buf_.size() - end_), ec);
    if (ec) {
      if (ec != asio::error::eof) co_return common::fail(ec.message());
      co_return common::fail(end_ != start_ ? "connection closed in the middle of a frame"
                                            : "connection closed by peer");
    }
    last_read_full_ = end_ + n == buf_.size();
    end_ += n;
  }
}

void append_frame(std::vector<std::uint8_t>& out, std::uint8_t version, protocol::FrameType type,
                  std::uint8_t flags, std::uint32_t stream_id,
                  std::span<const std::uint8_t> payload) {
  std::array<std::uint8_t, protocol::kHeaderSize> header{};
  protocol::encode_header(header.data(), version, type, flags, stream_id, payload.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());  // no zero-fill first, unlike resize()
}

asio::awaitable<void> write_frame(transport::Conn& conn, std::uint8_t version,
                                  protocol::FrameType type, std::uint8_t flags,
                                  std::uint32_t stream_id, std::span<const std::uint8_t> payload,
                                  transport::error_code& ec) {
  std::array<std::uint8_t, protocol::kHeaderSize> header{};
  protocol::encode_header(header.data(), version, type, flags, stream_id, payload.size());
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(header),
                                               asio::buffer(payload.data(), payload.size())};
  co_await conn.write(bufs, ec);
}

}  // namespace tunnel::mux

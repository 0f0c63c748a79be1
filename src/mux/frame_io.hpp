// Reading and writing whole frames on a Conn: used for the AUTH exchange and by the Session.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "protocol/frame.hpp"
#include "transport/conn.hpp"

namespace tunnel::mux {

namespace asio = boost::asio;

struct Frame {
  protocol::FrameHeader header;
  std::span<const std::uint8_t> payload;  // valid until the next call to FrameReader::next
};

// Buffers bytes from a Conn and cuts them into frames.
//
// Memory follows the bytes that arrived, never a length the peer announced: a header whose
// payload is over max_payload() is refused from the header alone, and a frame still arriving
// grows the buffer only when it is full, to at most twice what is buffered (or what is
// buffered + kReadChunk), so a peer that announces 16 MiB and sends 10 bytes costs one initial
// buffer. Callers set the limit for the state they are in: kMaxAuthPayload before AUTH.
class FrameReader {
 public:
  static constexpr std::size_t kInitialBuffer = 16 * 1024;
  // A busy session's buffer: room for a full 64 KiB DATA frame (our peers' largest) and the start
  // of the next, so a stream of them neither reallocates nor moves more than the tail each read.
  static constexpr std::size_t kReadChunk = 80 * 1024;

  explicit FrameReader(std::uint8_t version, std::size_t max_payload = protocol::kMaxPayload)
      : version_(version), max_payload_(max_payload) {}

  void set_version(std::uint8_t version) { version_ = version; }
  std::uint8_t version() const { return version_; }
  // The largest payload accepted (at most protocol::kMaxPayload); a header announcing more is a
  // protocol error naming both lengths.
  void set_max_payload(std::size_t max) { max_payload_ = std::min(max, protocol::kMaxPayload); }
  std::size_t max_payload() const { return max_payload_; }

  // The next frame into `frame`, or an error: a protocol error (the message names the problem),
  // or the connection's error/EOF (then `ec` is set too and the message describes it).
  asio::awaitable<common::Status> next(transport::Conn& conn, Frame& frame,
                                       transport::error_code& ec);

  // Bytes received but not yet returned as frames.
  std::size_t buffered() const { return end_ - start_; }
  // Bytes the reader's buffer holds allocated (for tests of the memory bound).
  std::size_t capacity() const { return buf_.capacity(); }

 private:
  std::uint8_t version_;
  std::size_t max_payload_;
  std::vector<std::uint8_t> buf_;
  std::size_t start_ = 0;
  std::size_t end_ = 0;
  bool last_read_full_ = false;
};

// Encodes one frame (header + payload) into `out` (appended).
void append_frame(std::vector<std::uint8_t>& out, std::uint8_t version, protocol::FrameType type,
                  std::uint8_t flags, std::uint32_t stream_id,
                  std::span<const std::uint8_t> payload = {});

// Writes one frame straight to the connection (handshake only; the Session batches writes).
asio::awaitable<void> write_frame(transport::Conn& conn, std::uint8_t version,
                                  protocol::FrameType type, std::uint8_t flags,
                                  std::uint32_t stream_id, std::span<const std::uint8_t> payload,
                                  transport::error_code& ec);

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_text(std::span<const std::uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace tunnel::mux

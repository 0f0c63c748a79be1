// The read side of a Session: one handler per frame type, dispatched by handle_frame(). Each
// returns false when the frame ended the session (a protocol error or the peer's CLOSE).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "mux/session.hpp"
#include "protocol/frame_payload.hpp"

namespace tunnel::mux {

using protocol::ErrorCode;
using protocol::FrameType;
namespace flags = protocol::flags;

bool Session::handle_frame(const Frame& frame) {
  switch (frame.header.frame_type()) {
    case FrameType::kAuth:
      return protocol_error("AUTH frame after the handshake");
    case FrameType::kOpenStream:
      return handle_open_stream(frame);
    case FrameType::kData:
      return handle_data(frame);
    case FrameType::kClose:
      return handle_close(frame);
    case FrameType::kHeartbeat:
      return handle_heartbeat(frame);
    default:
      break;
  }
  if (options_.version < protocol::kVersion2) {
    return protocol_error("frame type " + std::to_string(frame.header.type) + " in protocol v1");
  }
  switch (frame.header.frame_type()) {
    case FrameType::kWindowUpdate:
      return handle_window_update(frame);
    case FrameType::kReset:
      return handle_reset(frame);
    case FrameType::kGoAway:
      return handle_go_away(frame);
    case FrameType::kPing:
      return handle_ping(frame);
    case FrameType::kNotice:
      return handle_notice(frame);
    default:
      return true;  // unknown v2 types are skipped so the protocol can grow
  }
}

Stream* Session::find_stream(std::uint32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool Session::handle_open_stream(const Frame& frame) {
  const auto& h = frame.header;
  if (role_ != Role::kAgent) return protocol_error("OPEN_STREAM from the agent");
  if (h.stream_id == 0 || h.stream_id <= last_peer_stream_id_) {
    return protocol_error("OPEN_STREAM reuses stream id " + std::to_string(h.stream_id));
  }
  auto open = protocol::decode_open_stream(frame.payload, options_.version);
  if (!open) return protocol_error(open.error().message);
  last_peer_stream_id_ = h.stream_id;
  if (streams_.size() >= options_.max_streams) {
    // Refuse rather than hold unbounded streams; late DATA for it is dropped (id <= last).
    const std::string why =
        "the agent has " + std::to_string(streams_.size()) + " open streams (the limit)";
    if (options_.version >= protocol::kVersion2) {
      queue_reset(h.stream_id, ErrorCode::kRefused, why);
    } else {
      queue(FrameType::kData, flags::kError | flags::kEndStream, h.stream_id, as_bytes(why));
    }
    return true;
  }
  auto stream = std::make_shared<Stream>(shared_from_this(), h.stream_id,
                                         options_.peer_initial_window, options_.initial_window);
  stream->tunnel_index_ = open.value().tunnel_index;
  stream->open_payload_.assign(open.value().data);
  streams_.emplace(h.stream_id, stream);
  accept_queue_.push_back(std::move(stream));
  acceptable_.notify();
  return true;
}

bool Session::handle_data(const Frame& frame) {
  const auto& h = frame.header;
  const bool v2 = options_.version >= protocol::kVersion2;
  Stream* stream = find_stream(h.stream_id);
  if (stream == nullptr) {
    const std::uint32_t highest = role_ == Role::kCore ? highest_stream_id_ : last_peer_stream_id_;
    if (h.stream_id == 0 || h.stream_id > highest) {
      return protocol_error("DATA for stream " + std::to_string(h.stream_id) +
                            " that was never opened");
    }
    return true;  // a stream we already finished or reset: late frames are dropped
  }
  if (h.has(flags::kError)) {
    stream->on_reset(ErrorCode::kLocalError, std::string(as_text(frame.payload)));
    remove_if_done(*stream);
    return true;
  }
  if (stream->remote_closed_) {
    if (v2) stream->reset(ErrorCode::kStreamClosed, "DATA after END_STREAM");
    return true;
  }
  if (v2 && stream->received_ + frame.payload.size() > stream->granted_) {
    stream->reset(ErrorCode::kFlowControlError, "DATA of " + std::to_string(frame.payload.size()) +
                                                    " bytes exceeds the stream's credit");
    return true;
  }
  stream->on_data(frame.payload, h.has(flags::kEndStream));
  if (h.has(flags::kEndStream)) remove_if_done(*stream);
  return true;
}

bool Session::handle_close(const Frame& frame) {
  if (frame.header.stream_id == 0) {
    close("the peer closed the session", false);
    return false;
  }
  if (Stream* stream = find_stream(frame.header.stream_id)) {
    if (options_.version >= protocol::kVersion2) {
      stream->on_reset(ErrorCode::kNoError, "closed by peer");
    } else {
      stream->remote_closed_ = true;
      stream->local_closed_ = true;
      stream->readable_.notify();
      stream->writable_.notify();
      stream->gone();  // v1's CLOSE is its reset
    }
    remove_if_done(*stream);
  }
  return true;
}

bool Session::handle_heartbeat(const Frame& frame) {
  if (frame.header.has(flags::kAck)) {
    if (ping_sent_at_.time_since_epoch().count() != 0) {
      rtt_ = std::max(std::chrono::microseconds(1),
                      std::chrono::duration_cast<std::chrono::microseconds>(time_.monotonic_time() -
                                                                            ping_sent_at_));
    }
  } else {
    queue(FrameType::kHeartbeat, flags::kAck, 0);
  }
  return true;
}

bool Session::handle_window_update(const Frame& frame) {
  if (frame.payload.size() != 4) return protocol_error("WINDOW_UPDATE payload is not 4 bytes");
  const std::uint32_t increment = protocol::get_u32(frame.payload.data());
  if (frame.header.stream_id == 0) return true;  // no session-level window
  if (increment == 0) return protocol_error("WINDOW_UPDATE with increment 0");
  if (Stream* stream = find_stream(frame.header.stream_id)) stream->on_window_update(increment);
  return true;
}

bool Session::handle_reset(const Frame& frame) {
  auto reset = protocol::decode_reset(frame.payload);
  if (!reset) return protocol_error(reset.error().message);
  if (Stream* stream = find_stream(frame.header.stream_id)) {
    stream->on_reset(reset.value().code, std::string(reset.value().message));
    remove_if_done(*stream);
  }
  return true;
}

bool Session::handle_go_away(const Frame& frame) {
  auto go_away = protocol::decode_go_away(frame.payload);
  if (!go_away) return protocol_error(go_away.error().message);
  peer_going_away_ = true;
  if (on_go_away) on_go_away(go_away.value().code, std::string(go_away.value().message));
  return true;
}

bool Session::handle_ping(const Frame& frame) {
  if (!frame.header.has(flags::kAck)) {
    queue(FrameType::kPing, flags::kAck, 0, frame.payload);
    return true;
  }
  // The ACK echoes our send time: pairs each answer with its own PING even when several are in
  // flight. An echo that is not one of our times is ignored.
  if (frame.payload.size() != 8) return true;
  const std::uint64_t sent = (std::uint64_t{protocol::get_u32(frame.payload.data())} << 32) |
                             protocol::get_u32(frame.payload.data() + 4);
  const std::uint64_t now = ping_ticks(time_.monotonic_time());
  if (ping_sent_at_.time_since_epoch().count() != 0 && sent != 0 && sent <= now) {
    rtt_ = std::max(std::chrono::microseconds(1),
                    std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::duration(now - sent)));
  }
  return true;
}

bool Session::handle_notice(const Frame& frame) {
  auto notice = protocol::decode_notice(frame.payload);
  if (!notice) return protocol_error(notice.error().message);
  if (on_notice) on_notice(notice.value().tunnel_index, std::string(notice.value().message));
  return true;
}

bool Session::protocol_error(std::string message) {
  spdlog::warn("session {} ({}): protocol error: {}", name_, peer(), message);
  if (options_.version >= protocol::kVersion2 && !closed_) {
    queue_go_away(ErrorCode::kProtocolError, message);
  }
  close("protocol error: " + message, false);
  return false;
}

}  // namespace tunnel::mux

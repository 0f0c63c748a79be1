#include "mux/session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cstring>

#include "observability/metrics.hpp"
#include "protocol/frame_payload.hpp"

namespace tunnel::mux {

namespace {
// Constant-initialized: no guard to check on each use.
constinit SessionStats g_session_stats;
}  // namespace

using protocol::ErrorCode;
using protocol::FrameType;
namespace flags = protocol::flags;

namespace {
constexpr std::size_t kCompactAbove = 64 * 1024;
constexpr auto kFlushTimeout = std::chrono::seconds(2);
// Control frames (WINDOW_UPDATE, PING acks, RESET) and OPEN_STREAM are not held back by the
// write-queue bound; a peer that never reads ours would grow the queue forever. Past this much on
// top of the data bound, the session ends.
constexpr std::size_t kControlSlack = 1024 * 1024;
constexpr std::size_t kMaxNoticeBytes = 4096;  // longer NOTICE messages are cut
}  // namespace

// ---------------------------------------------------------------------------------------------
// Stream

Stream::Stream(std::shared_ptr<Session> session, std::uint32_t id, std::uint32_t send_credit,
               std::uint32_t window)
    : session_(std::move(session)),
      id_(id),
      readable_(session_->get_executor()),
      writable_(session_->get_executor()),
      send_credit_(send_credit),
      granted_(window),
      opened_at_(session_->time_.monotonic_time()),
      window_(window) {}

Stream::~Stream() {
  if (grown_ != 0) session_->return_window_growth(grown_);
}

asio::awaitable<std::size_t> Stream::read_some(asio::mutable_buffer buf, transport::error_code& ec,
                                               std::chrono::steady_clock::time_point deadline) {
  TUNNEL_ASSERT_ON_EXECUTOR(session_->get_executor(), "mux::Stream::read_some");
  for (;;) {
    if (buffered() > 0 && !reset_) {
      const std::size_t n = recv_.read({static_cast<std::uint8_t*>(buf.data()), buf.size()});
      consumed_ += n;
      maybe_update_window();
      co_return n;
    }
    // All data arrived before a clean END_STREAM: that is EOF, even if the session died later.
    if (remote_closed_ && !reset_) co_return 0;
    if (error_) {
      ec = error_;
      co_return 0;
    }
    // Wait with `buf` offered to on_data. The guard withdraws the offer however the wait ends
    // (the coroutine may be destroyed while suspended); bytes delivered but not returned then go
    // back in front of anything buffered after them, so none is lost.
    direct_ = {static_cast<std::uint8_t*>(buf.data()), buf.size()};
    direct_filled_ = 0;
    struct Guard {
      Stream& s;
      ~Guard() {  // after the normal path's take_direct() this finds nothing left
        const auto held = s.direct_.first(s.direct_filled_);
        s.take_direct();
        if (!held.empty() && !s.reset_) s.recv_.prepend(held);
      }
    } guard{*this};
    bool woken = true;
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      co_await readable_.wait();
    } else {
      woken = co_await readable_.wait_until(deadline);
    }
    if (const std::size_t n = take_direct(); n > 0 && !reset_) {
      consumed_ += n;
      maybe_update_window();
      co_return n;
    }
    if (!woken) {
      ec = asio::error::timed_out;
      co_return 0;
    }
  }
}

std::size_t Stream::take_direct() {
  const std::size_t n = direct_filled_;
  direct_ = {};
  direct_filled_ = 0;
  return n;
}

asio::awaitable<void> Stream::write(std::span<const std::uint8_t> data, transport::error_code& ec,
                                    bool end) {
  TUNNEL_ASSERT_ON_EXECUTOR(session_->get_executor(), "mux::Stream::write");
  std::size_t offset = 0;
  const bool v2 = session_->version() >= protocol::kVersion2;
  for (;;) {
    if (error_) {
      ec = error_;
      co_return;
    }
    if (local_closed_) {
      ec = asio::error::broken_pipe;
      co_return;
    }
    const std::size_t remaining = data.size() - offset;
    if (remaining == 0 && !end) co_return;
    if (v2 && remaining > 0 && send_credit_ <= 0) {
      g_session_stats.credit_stalls.fetch_add(1, std::memory_order_relaxed);
      co_await writable_.wait();
      continue;
    }
    if (session_->out_.size() >= session_->options_.write_queue_limit) {
      g_session_stats.queue_stalls.fetch_add(1, std::memory_order_relaxed);
      co_await session_->out_drained_.wait();
      continue;
    }
    std::size_t chunk = std::min(remaining, session_->options_.max_data_payload);
    if (v2) chunk = std::min(chunk, static_cast<std::size_t>(send_credit_));
    const bool last = end && chunk == remaining;
    session_->queue(FrameType::kData, last ? flags::kEndStream : 0, id_,
                    data.subspan(offset, chunk));
    send_credit_ -= static_cast<std::int64_t>(chunk);
    sent_ += chunk;
    offset += chunk;
    if (last) {
      local_closed_ = true;
      session_->remove_if_done(*this);
      co_return;
    }
  }
}

void Stream::reset(ErrorCode code, std::string_view message) {
  TUNNEL_ASSERT_ON_EXECUTOR(session_->get_executor(), "mux::Stream::reset");
  if (reset_ || session_->closed_) return;
  const bool v2 = session_->version() >= protocol::kVersion2;
  if (v2) {
    session_->queue_reset(id_, code, message);
  } else if (session_->role_ == Role::kAgent) {
    if (!local_closed_) {
      session_->queue(FrameType::kData, flags::kError | flags::kEndStream, id_, as_bytes(message));
    }
  } else {
    session_->queue(FrameType::kClose, 0, id_);
  }
  reset_ = true;
  local_closed_ = true;
  reset_code_ = code;
  discard_buffered();  // nobody will read it; v1 reading may resume
  fail(asio::error::operation_aborted);
  session_->remove_if_done(*this);
}

void Stream::on_data(std::span<const std::uint8_t> payload, bool end) {
  received_ += payload.size();
  if (!payload.empty() && buffered() == 0 && direct_filled_ < direct_.size()) {
    const std::size_t n = std::min(payload.size(), direct_.size() - direct_filled_);
    std::memcpy(direct_.data() + direct_filled_, payload.data(), n);
    direct_filled_ += n;
    payload = payload.subspan(n);
  }
  recv_.append(payload);
  if (end) remote_closed_ = true;
  readable_.notify();
}

void Stream::on_reset(ErrorCode code, std::string message) {
  reset_ = true;
  reset_code_ = code;
  reset_message_ = std::move(message);
  discard_buffered();
  remote_closed_ = true;
  local_closed_ = true;
  fail(asio::error::connection_reset);
}

void Stream::discard_buffered() {
  recv_.clear();
}

void Stream::on_window_update(std::uint32_t increment) {
  send_credit_ += increment;
  writable_.notify();
}

void Stream::fail(const transport::error_code& ec) {
  if (!error_) error_ = ec;
  readable_.notify();
  writable_.notify();
  // A writer may wait for the session's write queue rather than for credit: wake it too.
  session_->out_drained_.notify();
  if (ec != asio::error::operation_aborted) gone();  // operation_aborted: our own reset()
}

void Stream::gone() {
  if (!on_gone_) return;
  const auto fn = std::move(on_gone_);
  on_gone_ = nullptr;
  fn();
}

void Stream::maybe_update_window() {
  if (session_->version() < protocol::kVersion2) {
    session_->v1_resume_.notify();
    return;
  }
  if (remote_closed_ || reset_ || session_->closed_) return;
  if (granted_ - consumed_ > window_ / 2) return;
  // The reader keeps up (nothing left buffered): the window, not the reader, limits the stream,
  // so let it grow toward max_window. A slow reader never reaches this with an empty buffer.
  if (buffered() == 0) grow_window();
  const std::uint64_t target = consumed_ + window_;
  session_->queue_u32(FrameType::kWindowUpdate, id_, static_cast<std::uint32_t>(target - granted_));
  granted_ = target;
}

void Stream::grow_window() {
  const std::uint32_t max_window = session_->options_.max_window;
  if (window_ >= max_window) return;
  const std::uint32_t step = session_->take_window_growth(std::min(window_, max_window - window_));
  window_ += step;
  grown_ += step;
}

// ---------------------------------------------------------------------------------------------
// Session

Session::Session(std::unique_ptr<transport::Conn> conn, FrameReader reader, Role role,
                 Options options, std::string name, TimeSource& time)
    : conn_(std::move(conn)),
      reader_(std::move(reader)),
      role_(role),
      options_(options),
      name_(std::move(name)),
      time_(time),
      heartbeat_(options_.heartbeat_interval, options_.heartbeat_timeout, options_.send_heartbeats,
                 time_.monotonic_time()),
      acceptable_(conn_->get_executor()),
      out_ready_(conn_->get_executor()),
      out_drained_(conn_->get_executor()),
      idle_(conn_->get_executor()),
      stop_(conn_->get_executor()),
      v1_resume_(conn_->get_executor()) {
  reader_.set_version(options_.version);
  reader_.set_max_payload(protocol::kMaxPayload);  // the AUTH limit ends with the handshake
  next_stream_id_ = 1;
}

Session::~Session() = default;

asio::awaitable<std::string> Session::run() {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::run");
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  try {
    co_await (read_loop() && write_loop() && heartbeat_loop());
  } catch (const std::exception& e) {
    close(std::string("session failed: ") + e.what(), false);
  }
  co_return close_reason_;
}

common::Result<std::shared_ptr<Stream>> Session::open_stream(std::uint16_t tunnel_index,
                                                             std::string_view payload) {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::open_stream");
  if (closed_) return common::fail("the agent's session is closed");
  if (is_draining()) return common::fail("the agent's session is draining");
  if (streams_.size() >= options_.max_streams) {
    return common::fail("the agent has " + std::to_string(streams_.size()) +
                        " open streams (the limit)");
  }
  if (heartbeat_.silent()) {
    return common::fail("the agent has sent nothing for over " +
                        std::to_string(heartbeat_.silent_after().count()) +
                        " ms (2 heartbeat intervals); it is dropped after " +
                        std::to_string(options_.heartbeat_timeout.count()) + " ms");
  }
  const std::uint32_t id = next_stream_id_;
  next_stream_id_ += options_.version >= protocol::kVersion2 ? 2 : 1;
  highest_stream_id_ = id;
  auto stream = std::make_shared<Stream>(shared_from_this(), id, options_.peer_initial_window,
                                         options_.initial_window);
  stream->tunnel_index_ = tunnel_index;
  streams_.emplace(id, stream);
  queue_open(id, tunnel_index, payload);
  if (closed_) {  // over the queue's hard limit: queue_open() ended the session
    return common::fail("the agent's session is closed: " + close_reason_);
  }
  return stream;
}

asio::awaitable<std::shared_ptr<Stream>> Session::accept() {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::accept");
  for (;;) {
    if (!accept_queue_.empty()) {
      auto stream = std::move(accept_queue_.front());
      accept_queue_.pop_front();
      co_return stream;
    }
    if (closed_) co_return nullptr;
    co_await acceptable_.wait();
  }
}

void Session::go_away(ErrorCode code, std::string_view message) {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::go_away");
  if (closed_ || going_away_) return;
  going_away_ = true;
  if (options_.version >= protocol::kVersion2) queue_go_away(code, message);
  if (streams_.empty()) idle_.notify();
}

void Session::notice(std::uint16_t tunnel_index, std::string_view message) {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::notice");
  if (closed_ || options_.version < protocol::kVersion2) return;
  const protocol::NoticePayload payload{tunnel_index, message.substr(0, kMaxNoticeBytes)};
  protocol::encode(payload, reserve_frame(FrameType::kNotice, 0, 0, encoded_size(payload)));
  frame_queued();
}

void Session::close(std::string reason, bool tell_peer) {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::close");
  if (closed_) return;
  if (tell_peer) queue(FrameType::kClose, 0, 0);
  if (closed_) return;  // the queue was over its hard limit: queue() closed the session
  closed_ = true;
  close_reason_ = std::move(reason);
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) stream->fail(asio::error::connection_aborted);
  for (auto& stream : accept_queue_) stream->fail(asio::error::connection_aborted);
  accept_queue_.clear();
  acceptable_.notify();
  out_ready_.notify();
  out_drained_.notify();
  idle_.notify();
  stop_.notify();
  v1_resume_.notify();
}

asio::awaitable<void> Session::wait_idle() {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::wait_idle");
  while (!closed_ && !streams_.empty()) co_await idle_.wait();
}

asio::awaitable<void> Session::read_loop() {
  // Each loop ends the session itself on an exception: run()'s && would otherwise wait forever
  // for the other two loops, whose waits swallow the cancellation.
  try {
    Frame frame;
    transport::error_code ec;
    while (!closed_) {
      if (options_.version < protocol::kVersion2 && any_stream_over_v1_buffer()) {
        // v1 has no credits: stop reading while a stream holds too much unread data (the whole
        // session waits; this is v1's limit, v2 streams never block each other). While we do not
        // read, the peer's silence proves nothing: the heartbeat check is suspended.
        reading_paused_ = true;
        while (!closed_ && any_stream_over_v1_buffer()) co_await v1_resume_.wait();
        reading_paused_ = false;
        touch();
        if (closed_) break;
      }
      if (auto read = co_await reader_.next(*conn_, frame, ec); !read) {
        if (ec) {
          close(closed_ ? close_reason_ : "connection lost: " + read.error().message, false);
        } else {
          protocol_error(read.error().message);
        }
        break;
      }
      // A frame that arrives after close() is dropped: an OPEN_STREAM handled now would put a
      // stream back into the maps close() emptied, and the stream (which holds the session)
      // and the session would then keep each other alive.
      if (closed_) break;
      touch();
      bytes_received_ += protocol::kHeaderSize + frame.payload.size();
      if (!handle_frame(frame)) break;
    }
  } catch (const std::exception& e) {
    close(std::string("session failed while reading: ") + e.what(), false);
  }
}

SessionInfo Session::inspect() const {
  TUNNEL_ASSERT_ON_EXECUTOR(conn_->get_executor(), "mux::Session::inspect");
  SessionInfo info;
  info.version = options_.version;
  info.rtt = rtt_;
  info.bytes_received = bytes_received_;
  info.bytes_sent = bytes_sent_;
  info.queued_bytes = out_.size() + writing_.size();
  info.peer_window = options_.peer_initial_window;
  info.window_growth = window_growth_;
  info.draining = going_away_ || peer_going_away_;
  info.open = !closed_;
  info.streams.reserve(streams_.size());
  for (const auto& [id, stream] : streams_) {
    StreamInfo& s = info.streams.emplace_back();
    s.id = id;
    s.tunnel_index = stream->tunnel_index_;
    s.opened_at = stream->opened_at_;
    s.bytes_received = stream->received_;
    s.bytes_sent = stream->sent_;
    s.receive_window = stream->window_;
    s.send_credit = stream->send_credit_;
    s.buffered = stream->buffered();
    s.read_closed = stream->remote_closed_;
    s.write_closed = stream->local_closed_;
  }
  std::sort(info.streams.begin(), info.streams.end(), [](const StreamInfo& a, const StreamInfo& b) {
    return a.opened_at != b.opened_at ? a.opened_at < b.opened_at : a.id < b.id;
  });
  return info;
}

SessionStats& session_stats() {
  return g_session_stats;
}

void register_session_stats(observability::Registry& registry) {
  SessionStats& stats = session_stats();
  registry.counter_fn(
      "tunnel_mux_credit_stalls_total",
      "Times a stream's writer waited for the peer's flow-control credit (all sessions).",
      [&stats] {
        return static_cast<double>(stats.credit_stalls.load(std::memory_order_relaxed));
      });
  registry.counter_fn(
      "tunnel_mux_queue_stalls_total",
      "Times a stream's writer waited for a session's full write queue to drain (all sessions).",
      [&stats] { return static_cast<double>(stats.queue_stalls.load(std::memory_order_relaxed)); });
  registry.gauge_fn(
      "tunnel_mux_writing_bytes",
      "Bytes of frames being written to the peers now (all sessions): a peer that reads slowly "
      "keeps its batch here.",
      [&stats] {
        return static_cast<double>(stats.writing_bytes.load(std::memory_order_relaxed));
      });
}

void Session::count_writing(bool started) {
  // writing_ does not change while it is being written.
  const auto n = static_cast<std::int64_t>(writing_.size());
  g_session_stats.writing_bytes.fetch_add(started ? n : -n, std::memory_order_relaxed);
}

asio::awaitable<void> Session::write_loop() {
  // Once the session is closed, a write that does not finish within kFlushTimeout (a peer that
  // stopped reading) is aborted by heartbeat_loop closing the connection.
  try {
    transport::error_code ec;
    for (;;) {
      if (out_.empty()) {
        if (closed_) break;
        co_await out_ready_.wait();
        continue;
      }
      writing_.swap(out_);
      out_.clear();
      count_writing(true);  // not inline: GCC keeps a coroutine's temporaries in its frame
      co_await conn_->write(asio::buffer(writing_), ec);
      count_writing(false);
      bytes_sent_ += writing_.size();
      writing_.clear();
      if (out_.empty() && writing_.capacity() > kCompactAbove) {
        writing_.shrink_to_fit();  // idle: give a burst's buffer back
      }
      out_drained_.notify();
      if (ec) {
        close(closed_ ? close_reason_ : "connection lost while writing: " + ec.message(), false);
        break;
      }
    }
  } catch (const std::exception& e) {
    close(std::string("session failed while writing: ") + e.what(), false);
  }
  out_.clear();
  write_done_ = true;
  stop_.notify();
  co_await conn_->shutdown_send();
  conn_->close();
}

void Session::time_moved() {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::time_moved");
  stop_.notify();
}

asio::awaitable<void> Session::heartbeat_loop() {
  try {
    // Decisions read the TimeSource (heartbeat_); the wait between them is a real timer that
    // wakes for the next PING and exactly when the peer's silence reaches the silent bound or
    // the timeout, so a dead peer is dropped at heartbeat_timeout, not at the next PING after.
    while (!closed_) {
      const auto wake = heartbeat_.next_check(reading_paused_);
      if (const auto now = time_.monotonic_time(); wake > now) co_await stop_.wait_for(wake - now);
      if (closed_) break;
      const auto now = time_.monotonic_time();
      const Heartbeat::Step step = heartbeat_.check(now, reading_paused_);
      if (step.drop) {
        const auto quiet = now - heartbeat_.last_received();
        close("no frame from the peer for " +
                  std::to_string(
                      std::chrono::duration_cast<std::chrono::milliseconds>(quiet).count()) +
                  " ms (heartbeat timeout " + std::to_string(options_.heartbeat_timeout.count()) +
                  " ms)",
              false);
        break;
      }
      if (!step.ping) continue;
      ping_sent_at_ = now;
      if (options_.version >= protocol::kVersion2) {
        std::array<std::uint8_t, 8> payload{};
        const std::uint64_t ticks = ping_ticks(now);
        protocol::put_u32(payload.data(), static_cast<std::uint32_t>(ticks >> 32));
        protocol::put_u32(payload.data() + 4, static_cast<std::uint32_t>(ticks));
        queue(FrameType::kPing, 0, 0, payload);
      } else {
        queue(FrameType::kHeartbeat, 0, 0);
      }
    }
  } catch (const std::exception& e) {
    close(std::string("session failed in the heartbeat loop: ") + e.what(), false);
  }
  // The session is closed: give the final flush kFlushTimeout, then abort it. This bounds real
  // I/O (a peer that stopped reading), so it is measured on the timer's clock, not time_.
  const auto deadline = std::chrono::steady_clock::now() + kFlushTimeout;
  while (!write_done_) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      conn_->close();
      break;
    }
    co_await stop_.wait_for(deadline - now);
  }
}

void Session::queue(FrameType type, std::uint8_t frame_flags, std::uint32_t stream_id,
                    std::span<const std::uint8_t> payload) {
  if (closed_) return;
  append_frame(out_, options_.version, type, frame_flags, stream_id, payload);
  frame_queued();
}

std::uint8_t* Session::reserve_frame(FrameType type, std::uint8_t frame_flags,
                                     std::uint32_t stream_id, std::size_t payload_size) {
  const std::size_t at = out_.size();
  out_.resize(at + protocol::kHeaderSize + payload_size);
  std::uint8_t* p = out_.data() + at;
  protocol::encode_header(p, options_.version, type, frame_flags, stream_id, payload_size);
  return p + protocol::kHeaderSize;
}

void Session::frame_queued() {
  out_ready_.notify();
  const std::size_t hard_limit = options_.write_queue_limit + options_.max_data_payload +
                                 protocol::kHeaderSize + kControlSlack;
  if (out_.size() > hard_limit) {
    close("the peer does not read: " + std::to_string(out_.size()) +
              " bytes of frames wait to be written",
          false);
  }
}

void Session::queue_raw(std::span<const std::uint8_t> bytes) {
  TUNNEL_ASSERT_ON_EXECUTOR(get_executor(), "mux::Session::queue_raw");
  if (closed_) return;
  out_.insert(out_.end(), bytes.begin(), bytes.end());
  out_ready_.notify();
}

void Session::queue_u32(FrameType type, std::uint32_t stream_id, std::uint32_t value) {
  std::array<std::uint8_t, 4> payload{};
  protocol::put_u32(payload.data(), value);
  queue(type, 0, stream_id, payload);
}

void Session::queue_open(std::uint32_t stream_id, std::uint16_t tunnel_index,
                         std::string_view payload) {
  const protocol::OpenStreamPayload open{tunnel_index, payload};
  const std::uint8_t version = options_.version;
  protocol::encode(
      open, version,
      reserve_frame(FrameType::kOpenStream, 0, stream_id, encoded_size(open, version)));
  frame_queued();  // cannot wait like a DATA writer: counts against the hard limit
}

void Session::queue_reset(std::uint32_t stream_id, ErrorCode code, std::string_view message) {
  if (closed_) return;
  const protocol::ResetPayload payload{code, message};
  protocol::encode(payload, reserve_frame(FrameType::kReset, 0, stream_id, encoded_size(payload)));
  frame_queued();
}

void Session::queue_go_away(ErrorCode code, std::string_view message) {
  if (closed_) return;
  const protocol::GoAwayPayload payload{highest_stream_id_, code, message};
  protocol::encode(payload, reserve_frame(FrameType::kGoAway, 0, 0, encoded_size(payload)));
  frame_queued();
}

std::size_t WindowBudget::take(std::size_t want) {
  std::size_t used = used_.load(std::memory_order_relaxed);
  for (;;) {
    const std::size_t step = std::min(want, used < limit_ ? limit_ - used : 0);
    if (step == 0) return 0;
    if (used_.compare_exchange_weak(used, used + step, std::memory_order_relaxed)) return step;
  }
}

std::uint32_t Session::take_window_growth(std::uint32_t want) {
  const std::size_t budget = options_.window_growth_budget;
  std::size_t step =
      std::min<std::size_t>(want, window_growth_ < budget ? budget - window_growth_ : 0);
  if (step != 0 && options_.shared_window_budget) {
    step = options_.shared_window_budget->take(step);
  }
  if (step == 0) return 0;
  window_growth_ += step;
  if (on_window_growth) on_window_growth(static_cast<std::int64_t>(step));
  return static_cast<std::uint32_t>(step);
}

void Session::return_window_growth(std::uint32_t n) {
  if (options_.shared_window_budget) options_.shared_window_budget->give_back(n);
  window_growth_ -= n;
  if (on_window_growth) on_window_growth(-std::int64_t{n});
}

bool Session::any_stream_over_v1_buffer() const {
  return std::any_of(streams_.begin(), streams_.end(), [&](const auto& entry) {
    return entry.second->buffered() > options_.v1_stream_buffer;
  });
}

void Session::remove_if_done(Stream& stream) {
  if (!(stream.reset_ || (stream.local_closed_ && stream.remote_closed_))) return;
  auto it = streams_.find(stream.id_);
  if (it == streams_.end()) return;
  auto keep = std::move(it->second);  // the erase must not destroy `stream` under our feet
  streams_.erase(it);
  if (streams_.empty()) idle_.notify();
  v1_resume_.notify();  // a removed stream no longer holds v1 reading back
}

}  // namespace tunnel::mux

// A multiplexed session over one Conn: streams, per-stream credit windows, a batched write queue
// and heartbeats. The same class serves both ends: the core opens streams, the agent accepts them.
//
// Threading: a Session and its Streams live on the Conn's executor; call them only from there.
// Debug builds check it: each entry point that reads or changes their state aborts, naming
// itself, when the calling thread is not running that executor (common/executor_check.hpp).
// Memory: each stream holds at most its receive window (v2) of unread bytes; the write queue is
// bounded (writers wait), so a slow reader slows only its own stream.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/async.hpp"
#include "common/executor_check.hpp"
#include "common/time_source.hpp"
#include "mux/chunk_queue.hpp"
#include "mux/frame_io.hpp"
#include "mux/heartbeat.hpp"
#include "protocol/error_code.hpp"
#include "protocol/frame.hpp"
#include "transport/conn.hpp"

namespace tunnel::observability {
class Registry;
}

namespace tunnel::mux {

enum class Role { kCore, kAgent };

// Window growth shared by many sessions (the core's limit for all its agents together). Sessions
// run on different threads: take() and give_back() are atomic.
class WindowBudget {
 public:
  explicit WindowBudget(std::size_t limit) : limit_(limit) {}
  // Takes up to `want` bytes of growth; returns how many were taken (0 when none is left).
  std::size_t take(std::size_t want);
  void give_back(std::size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }
  std::size_t limit() const { return limit_; }

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

struct Options {
  std::uint8_t version = protocol::kVersion2;
  std::uint32_t initial_window = 256 * 1024;       // our receive window per stream (v2)
  std::uint32_t peer_initial_window = 256 * 1024;  // the peer's, from the AUTH exchange (v2)
  std::uint32_t max_window = 16 * 1024 * 1024;     // auto-tuning stops here
  // Auto-tuning draws on one budget per session: together, the receive windows of its streams
  // grow at most this far beyond their initial_window (0: no stream's window ever grows). What
  // readers that were fast and then stalled can make the session hold is then bounded by
  // streams x initial_window + this, not streams x max_window.
  std::size_t window_growth_budget = 32 * 1024 * 1024;
  // Optional: a budget that the growth of this session also draws on, shared with other sessions
  // (core: limits.window_budget_total, for all agents together).
  std::shared_ptr<WindowBudget> shared_window_budget;
  std::size_t max_data_payload = 64 * 1024;    // largest DATA payload we send
  std::size_t v1_stream_buffer = 1024 * 1024;  // v1 has no credits: pause reading above this
  std::size_t write_queue_limit = 512 * 1024;  // DATA writers wait above this
  std::size_t max_streams = 1000;
  std::chrono::milliseconds heartbeat_interval{10'000};
  std::chrono::milliseconds heartbeat_timeout{30'000};
  bool send_heartbeats = true;  // v1 core: only answers the agent's heartbeats
};

class Session;

// For relays that read a socket into a Stream (tcp tunnels: the core's client side, the agent's
// app side). They read 64 KiB at a time; once a read of `n` bytes filled `buf`, this grows it to
// kBulkRelayRead, so a bulk sender's bytes go out as several DATA frames per read and per
// session write (a quarter of the reads and wake-ups). Connections that never fill 64 KiB keep
// their smaller buffer.
constexpr std::size_t kBulkRelayRead = 256 * 1024;
inline void grow_after_full_read(std::vector<std::uint8_t>& buf, std::size_t n) {
  if (n == buf.size() && buf.size() < kBulkRelayRead) buf.resize(kBulkRelayRead);
}

// Saturation counts of every session of the process together (the core's and the agent's
// /metrics read them): relaxed atomics, touched when a writer waits and once per written batch.
struct SessionStats {
  std::atomic<std::uint64_t> credit_stalls{0};  // a DATA writer waited for the peer's credit
  std::atomic<std::uint64_t> queue_stalls{0};   // a DATA writer waited for the write queue
  std::atomic<std::int64_t> writing_bytes{0};   // bytes of frames being written to peers now
};
SessionStats& session_stats();
// Adds tunnel_mux_credit_stalls_total, tunnel_mux_queue_stalls_total and
// tunnel_mux_writing_bytes (read from session_stats()) to `registry`.
void register_session_stats(observability::Registry& registry);

// One stream's state, for connection inspection (the core's /debug/connections).
struct StreamInfo {
  std::uint32_t id = 0;
  std::uint16_t tunnel_index = 0;
  MonotonicTime opened_at{};
  std::uint64_t bytes_received = 0;  // DATA payload from the peer
  std::uint64_t bytes_sent = 0;      // DATA payload to the peer
  std::uint32_t receive_window = 0;  // ours (v2)
  std::int64_t send_credit = 0;      // what we may still send (v2)
  std::size_t buffered = 0;          // received, not read yet
  bool read_closed = false;
  bool write_closed = false;
};

// A session's state at one moment, taken on its executor (Session::inspect).
struct SessionInfo {
  std::uint8_t version = 0;
  std::chrono::microseconds rtt{0};
  std::uint64_t bytes_received = 0;  // frames from the peer, headers included
  std::uint64_t bytes_sent = 0;      // frames written to the peer, headers included
  std::size_t queued_bytes = 0;      // frames waiting or being written
  std::uint32_t peer_window = 0;     // each stream's initial send window (the peer's, v2)
  std::size_t window_growth = 0;
  bool draining = false;
  bool open = false;
  std::vector<StreamInfo> streams;  // oldest first
};

// One bidirectional stream. Reads return 0 at the peer's END_STREAM; writes wait for credit.
class Stream {
 public:
  Stream(std::shared_ptr<Session> session, std::uint32_t id, std::uint32_t send_credit,
         std::uint32_t window);
  ~Stream();  // gives its window's growth back to the session's budget
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  std::uint32_t id() const { return id_; }
  // Agent side: what the core put in OPEN_STREAM (v2: the part after the tunnel index).
  const std::string& open_payload() const { return open_payload_; }
  std::uint16_t tunnel_index() const { return tunnel_index_; }

  // Reads up to buf.size() bytes. 0 with no error: the peer ended its side. On a reset or a dead
  // session, sets `ec` (asio::error::connection_reset / connection_aborted); when nothing came
  // by `deadline`, asio::error::timed_out (the stream stays usable).
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, transport::error_code& ec,
                                         std::chrono::steady_clock::time_point deadline =
                                             std::chrono::steady_clock::time_point::max());
  // Sends all of `data`; with `end` also ends our side (END_STREAM on the last frame).
  asio::awaitable<void> write(std::span<const std::uint8_t> data, transport::error_code& ec,
                              bool end = false);
  asio::awaitable<void> close_write(transport::error_code& ec) { co_await write({}, ec, true); }
  // Aborts both directions. v2: RESET with `code`; v1: DATA|ERROR (agent) or CLOSE (core).
  void reset(protocol::ErrorCode code, std::string_view message);
  // `fn` runs once if the peer resets the stream or the session ends while it is set (not for
  // our own reset()): for a relay that is waiting on something else, such as a silent app.
  // Set an empty function to clear it before what `fn` refers to goes away.
  void on_gone(std::function<void()> fn);

  bool read_closed() const { return remote_closed_; }
  bool write_closed() const { return local_closed_; }
  bool is_reset() const { return reset_; }
  // Reset either way, or its session ended: reads and writes fail.
  bool failed() const { return static_cast<bool>(error_); }
  // Why the peer reset the stream (v2 RESET, v1 DATA|ERROR): code and message.
  protocol::ErrorCode reset_code() const { return reset_code_; }
  const std::string& reset_message() const { return reset_message_; }

  // Unread bytes held for this stream (bounded by the receive window).
  std::size_t buffered() const { return recv_.size(); }
  // Our current receive window (v2): starts at Options::initial_window, grows toward max_window
  // while the reader keeps up and the session's window budgets have room.
  std::uint32_t window() const { return window_; }

 private:
  friend class Session;
  void on_data(std::span<const std::uint8_t> payload, bool end);
  void on_reset(protocol::ErrorCode code, std::string message);
  void on_window_update(std::uint32_t increment);
  void fail(const transport::error_code& ec);
  void gone();  // runs the on_gone hook
  void maybe_update_window();
  void grow_window();  // doubles window_ as far as max_window and the window budgets allow
  void discard_buffered();
  std::size_t take_direct();  // ends a direct read: how many bytes it received

  std::shared_ptr<Session> session_;  // cycle broken when the session forgets the stream
  std::uint32_t id_;
  std::uint16_t tunnel_index_ = 0;
  std::string open_payload_;

  ChunkQueue recv_;  // unread DATA
  // While a reader waits in read_some with nothing buffered, DATA is copied straight into its
  // buffer instead of into recv_ (one copy per byte fewer on a busy stream).
  std::span<std::uint8_t> direct_;
  std::size_t direct_filled_ = 0;
  Signal readable_;
  Signal writable_;

  std::int64_t send_credit_;  // v2: bytes we may still send
  std::uint64_t granted_;     // v2: total bytes we allowed the peer to send
  std::uint64_t received_ = 0;
  std::uint64_t consumed_ = 0;
  std::uint64_t sent_ = 0;  // DATA payload queued to the peer
  MonotonicTime opened_at_{};
  std::uint32_t window_;
  std::uint32_t grown_ = 0;  // how far window_ grew: drawn from the session's growth budget

  bool remote_closed_ = false;
  bool local_closed_ = false;
  bool reset_ = false;
  transport::error_code error_;
  protocol::ErrorCode reset_code_ = protocol::ErrorCode::kNoError;
  std::string reset_message_;
  std::function<void()> on_gone_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `reader` carries bytes already read past the AUTH exchange; its payload limit is raised from
  // the handshake's to protocol::kMaxPayload. `time` decides heartbeats and silence (it must
  // outlive the session).
  Session(std::unique_ptr<transport::Conn> conn, FrameReader reader, Role role, Options options,
          std::string name, TimeSource& time);
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Runs until the connection ends or close() is called; returns why it ended.
  asio::awaitable<std::string> run();

  // Core: opens a stream. v2 sends `tunnel_index` before the payload. An error when the session
  // is closed, draining, at its stream limit, or silent: nothing received for 2 heartbeat
  // intervals although we PING every interval (the error says which). OPEN_STREAM counts
  // against the write queue's hard limit: one that takes the queue past it ends the session (a
  // peer that does not read) and gets an error.
  common::Result<std::shared_ptr<Stream>> open_stream(std::uint16_t tunnel_index,
                                                      std::string_view payload);
  // Agent: the next stream the core opened; nullptr once the session has ended.
  asio::awaitable<std::shared_ptr<Stream>> accept();

  // Sends GOAWAY (v2) and refuses new streams; open streams finish.
  void go_away(protocol::ErrorCode code, std::string_view message);
  // Ends the session now: every stream fails; frames already queued are flushed (bounded time),
  // then the connection closes. With `tell_peer`, a CLOSE frame on stream 0 goes first.
  void close(std::string reason, bool tell_peer = true);

  // Called when the peer sends GOAWAY (the agent uses it to reconnect before the core leaves).
  std::function<void(protocol::ErrorCode, const std::string&)> on_go_away;

  // Core: tells the agent something about one of its tunnels that it should log (v2 NOTICE;
  // nothing on v1 sessions). Agent: `on_notice` receives them.
  void notice(std::uint16_t tunnel_index, std::string_view message);
  std::function<void(std::uint16_t tunnel_index, const std::string&)> on_notice;
  // Runs with the change each time window_growth() changes (for a metric).
  std::function<void(std::int64_t delta)> on_window_growth;

  // Queues bytes already encoded as frames, ahead of anything queued later (the core's AUTH
  // reply, which travels as version 1 before the session switches to its version).
  void queue_raw(std::span<const std::uint8_t> bytes);

  // Resolves when every stream has finished (or the session ended), for graceful drains.
  asio::awaitable<void> wait_idle();

  bool is_open() const { return !closed_; }
  bool is_draining() const { return going_away_ || peer_going_away_; }
  bool peer_going_away() const { return peer_going_away_; }
  std::uint8_t version() const { return options_.version; }
  std::size_t stream_count() const { return streams_.size(); }
  std::chrono::microseconds rtt() const { return rtt_; }
  // When the last frame from the peer arrived (by the session's TimeSource).
  MonotonicTime last_received() const { return heartbeat_.last_received(); }
  // For tests on a SimulatedTimeSource: the clock moved, so the heartbeat loop decides again
  // now instead of when its timer (which runs in real time) fires.
  void time_moved();
  // How far the receive windows of this session's streams have grown beyond their initial size,
  // in all (at most Options::window_growth_budget).
  std::size_t window_growth() const { return window_growth_; }
  const std::string& name() const { return name_; }
  const std::string& peer() const { return conn_->peer(); }
  // Its state and its streams' now (oldest first), for connection inspection. Bounded by the
  // session's stream limit (Options::max_streams).
  SessionInfo inspect() const;
  asio::any_io_executor get_executor() { return conn_->get_executor(); }

 private:
  friend class Stream;

  asio::awaitable<void> read_loop();
  asio::awaitable<void> write_loop();
  void count_writing(bool started);  // SessionStats::writing_bytes, around each write
  asio::awaitable<void> heartbeat_loop();
  // Frame handlers (session_frames.cpp): false when the frame ended the session (a protocol
  // error, `close_reason_` set, or the peer's CLOSE).
  bool handle_frame(const Frame& frame);
  bool handle_open_stream(const Frame& frame);
  bool handle_data(const Frame& frame);
  bool handle_close(const Frame& frame);
  bool handle_heartbeat(const Frame& frame);
  bool handle_window_update(const Frame& frame);
  bool handle_reset(const Frame& frame);
  bool handle_go_away(const Frame& frame);
  bool handle_ping(const Frame& frame);
  bool handle_notice(const Frame& frame);
  bool protocol_error(std::string message);
  Stream* find_stream(std::uint32_t id) const;
  static std::uint64_t ping_ticks(MonotonicTime t) {
    return static_cast<std::uint64_t>(t.time_since_epoch().count());
  }
  void queue_open(std::uint32_t stream_id, std::uint16_t tunnel_index, std::string_view payload);
  bool any_stream_over_v1_buffer() const;
  void queue(protocol::FrameType type, std::uint8_t flags, std::uint32_t stream_id,
             std::span<const std::uint8_t> payload = {});
  void queue_u32(protocol::FrameType type, std::uint32_t stream_id, std::uint32_t value);
  void queue_reset(std::uint32_t stream_id, protocol::ErrorCode code, std::string_view message);
  void queue_go_away(protocol::ErrorCode code, std::string_view message);  // v2 only
  // Appends a frame header for `payload_size` bytes to the write queue and returns where the
  // payload goes; frame_queued() then wakes the writer and enforces the queue's hard limit.
  std::uint8_t* reserve_frame(protocol::FrameType type, std::uint8_t flags, std::uint32_t stream_id,
                              std::size_t payload_size);
  void frame_queued();
  void remove_if_done(Stream& stream);
  // Growth for one stream's window: up to `want` bytes, as far as this session's budget and the
  // shared one allow; return_window_growth() gives it back. Both keep window_growth_ and run
  // on_window_growth.
  std::uint32_t take_window_growth(std::uint32_t want);
  void return_window_growth(std::uint32_t n);
  void touch() { heartbeat_.received(time_.monotonic_time()); }

  std::unique_ptr<transport::Conn> conn_;
  FrameReader reader_;
  Role role_;
  Options options_;
  std::string name_;
  TimeSource& time_;
  Heartbeat heartbeat_;  // when to PING, silence, the timeout

  std::unordered_map<std::uint32_t, std::shared_ptr<Stream>> streams_;
  std::uint32_t next_stream_id_ = 1;
  std::uint32_t last_peer_stream_id_ = 0;
  std::deque<std::shared_ptr<Stream>> accept_queue_;
  Signal acceptable_;

  std::vector<std::uint8_t> out_;      // frames waiting to be written
  std::vector<std::uint8_t> writing_;  // frames being written
  Signal out_ready_;
  Signal out_drained_;
  Signal idle_;
  Signal stop_;       // wakes the heartbeat loop (close, time_moved)
  Signal v1_resume_;  // v1: a reader drained its stream, reading may resume
  std::uint32_t highest_stream_id_ = 0;
  std::size_t window_growth_ = 0;  // the sum of the streams' grown_

  MonotonicTime ping_sent_at_{};
  std::chrono::microseconds rtt_{0};
  std::uint64_t bytes_received_ = 0;
  std::uint64_t bytes_sent_ = 0;
  bool closed_ = false;
  bool going_away_ = false;
  bool reading_paused_ = false;  // v1 backpressure: frames are not being read
  bool write_done_ = false;      // write_loop has ended
  bool peer_going_away_ = false;
  std::string close_reason_;
};

inline void Stream::on_gone(std::function<void()> fn) {
  TUNNEL_ASSERT_ON_EXECUTOR(session_->get_executor(), "mux::Stream::on_gone");
  on_gone_ = std::move(fn);
}

}  // namespace tunnel::mux

// The socket<->stream pump of raw tunnels: relays bytes both ways between a TCP socket and a
// mux Stream, the one place where half-close, resets and the idle timeout of a raw connection
// are decided. The core pumps a public client's connection into its stream to the agent (tcp
// tunnels); the agent pumps the stream into its connection to the local app.
//
// Contract of pump(socket, stream, hooks, options):
//   Runs until both directions have ended, then returns what happened; it never closes the
//   socket's descriptor for good (the caller does, after) unless one side failed.
//   Socket -> stream: bytes read from the socket are written to the stream (after
//     hooks.throttle() when hooks.throttled()). The socket's FIN becomes END_STREAM, unless
//     hooks.refuse_socket_eof() gives a reason: then the stream is reset with it.
//   Stream -> socket: bytes read from the stream are written to the socket (throttled the same
//     way); END_STREAM becomes a FIN (shutdown of the socket's send side).
//   Each chunk that reached the other side is reported to hooks.forwarded() and counted in the
//   result.
//   A side that fails ends both, once:
//     the socket fails (read or write error, or a refused EOF): the stream is reset with
//       options.reset_code and hooks.socket_failed()'s reason, and the socket closed;
//     the stream fails (RESET from the peer, or the session ended): the socket is reset (RST,
//       SO_LINGER 0) when the stream was reset, else shut down and closed; the outcome is
//       "reset by <peer> (CODE: message)" or "<session> ended (error)".
//   With options.idle_timeout > 0, a connection with no byte read either way for that long
//   is ended as a socket failure with "idle for N s (<idle_setting>)".
//   Everything runs on the caller's executor, which must be the stream's session's.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mux/session.hpp"
#include "protocol/error_code.hpp"

namespace tunnel::mux {

enum class PumpDirection { kToStream, kToSocket };

// What differs between the users of the pump. Called on the pump's executor.
class PumpHooks {
 public:
  virtual ~PumpHooks() = default;
  // True when throttle() must be awaited before each chunk goes on (bandwidth limits). A
  // throttled pump also keeps its socket reads at 64 KiB.
  virtual bool throttled() const { return false; }
  virtual boost::asio::awaitable<void> throttle(PumpDirection direction, std::size_t n);
  // `n` bytes reached the other side.
  virtual void forwarded(PumpDirection /*direction*/, std::size_t /*n*/) {}
  // The reason the stream is reset with when the socket failed reading or writing.
  virtual std::string socket_failed(bool reading, const boost::system::error_code& ec) = 0;
  // Called at the socket's EOF: empty passes it on as END_STREAM; anything else resets the
  // stream with that reason.
  virtual std::string refuse_socket_eof() { return {}; }
};

struct PumpOptions {
  protocol::ErrorCode reset_code = protocol::ErrorCode::kCancel;  // for socket failures
  std::string_view peer = "the peer";         // at the stream's far end, for outcomes
  std::string_view session = "the session";   // "<session> ended (...)"
  std::chrono::milliseconds idle_timeout{0};  // 0: none
  std::string_view idle_setting;              // the setting named in the idle outcome
};

struct PumpResult {
  std::uint64_t to_stream = 0;  // bytes from the socket that went into the stream
  std::uint64_t to_socket = 0;  // bytes from the stream written to the socket
  std::string outcome;          // why it ended abnormally; empty after a clean close both ways
  bool socket_failed = false;   // the outcome is the socket's (or the idle timeout's)
  bool idle = false;            // the idle timeout ended it (socket_failed is set too)
};

boost::asio::awaitable<PumpResult> pump(boost::asio::ip::tcp::socket& socket, Stream& stream,
                                        PumpHooks& hooks, const PumpOptions& options);

}  // namespace tunnel::mux

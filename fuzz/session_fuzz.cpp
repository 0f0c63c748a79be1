// Feeds arbitrary bytes to a mux::Session as what its peer sends, in both roles and both protocol
// versions, while a local user opens, reads, writes and closes streams the way the core's and the
// agent's relays do. Whatever the peer sends, the session must end when its bytes run out: no
// crash, no sanitizer report, no leak, no hang (aborts if the io_context still has work after the
// session ended and the user let go of its streams).
//
// Input layout: byte 0: bit 0 role (0 core, 1 agent), bit 1 version (0 v1, 1 v2), bits 2-7 the
// largest piece the connection hands to one read (1-64 bytes, so that frames split across
// reads); the rest is the peer's byte stream.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mux/session.hpp"

namespace {

namespace asio = boost::asio;
using tunnel::mux::Options;
using tunnel::mux::Role;
using tunnel::mux::Session;
using tunnel::mux::Stream;
using tunnel::transport::error_code;

void check(bool ok) {
  if (!ok) std::abort();
}

// The peer: hands out the fuzz input in pieces, one piece per read, after a trip through the
// executor so that the session's other coroutines run in between. Writes are dropped.
class PeerConn : public tunnel::transport::Conn {
 public:
  PeerConn(asio::io_context& io, std::string_view input, std::size_t piece)
      : io_(io), socket_(io), input_(input), piece_(piece) {
    peer_ = "fuzz";
  }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, error_code& ec) override {
    co_await asio::post(io_, asio::use_awaitable);
    if (closed_) {
      ec = asio::error::operation_aborted;
      co_return 0;
    }
    if (input_.empty()) {
      ec = asio::error::eof;
      co_return 0;
    }
    const std::size_t n = std::min({piece_, buf.size(), input_.size()});
    std::memcpy(buf.data(), input_.data(), n);
    input_.remove_prefix(n);
    co_return n;
  }

  asio::awaitable<void> write(std::span<const asio::const_buffer> bufs, error_code& ec) override {
    co_await asio::post(io_, asio::use_awaitable);
    if (closed_) ec = asio::error::broken_pipe;
    (void)bufs;
  }

  asio::awaitable<void> shutdown_send() override { co_return; }
  void close() override { closed_ = true; }
  asio::any_io_executor get_executor() override { return io_.get_executor(); }
  void move_to(const asio::any_io_executor&, error_code& ec) override {
    ec = asio::error::operation_not_supported;
  }
  tunnel::transport::tcp::socket& socket() override { return socket_; }
  bool is_tls() const override { return false; }

 private:
  asio::io_context& io_;
  tunnel::transport::tcp::socket socket_;  // never opened
  std::string_view input_;
  std::size_t piece_;
  bool closed_ = false;
};

// What a relay does with a stream: reads until the end, answers with more bytes than one
// initial window holds (so that writes wait for credit), then ends its side; resets some.
asio::awaitable<void> serve_stream(std::shared_ptr<Stream> stream) {
  std::vector<std::uint8_t> buf(4096);
  error_code ec;
  std::size_t total = 0;
  for (;;) {
    const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
    if (ec || n == 0) break;
    total += n;
    check(stream->buffered() <= 16u * 1024 * 1024);
  }
  if (ec) co_return;
  const std::vector<std::uint8_t> answer(10 * 1024, 'a');
  co_await stream->write(answer, ec);
  if (!ec) co_await stream->close_write(ec);
  if (total % 3 == 0) stream->reset(tunnel::protocol::ErrorCode::kCancel, "fuzz");
}

asio::awaitable<void> agent_user(std::shared_ptr<Session> session) {
  for (;;) {
    std::shared_ptr<Stream> stream = co_await session->accept();
    if (!stream) co_return;
    asio::co_spawn(session->get_executor(), serve_stream(std::move(stream)), asio::detached);
  }
}

asio::awaitable<void> core_user(std::shared_ptr<Session> session) {
  for (int i = 0; i < 3; ++i) {
    auto opened = session->open_stream(0, "GET / HTTP/1.1\r\n\r\n");
    if (!opened) {
      check(!opened.error().message.empty());
      co_return;
    }
    std::shared_ptr<Stream> stream = std::move(opened).value();
    asio::co_spawn(session->get_executor(), serve_stream(std::move(stream)), asio::detached);
    co_await asio::post(session->get_executor(), asio::use_awaitable);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protocol errors are the point here; SESSION_FUZZ_VERBOSE=1 shows them and why each ended.
  if (std::getenv("SESSION_FUZZ_VERBOSE") == nullptr) spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const Role role = (data[0] & 1) != 0 ? Role::kAgent : Role::kCore;
  const std::uint8_t version =
      (data[0] & 2) != 0 ? tunnel::protocol::kVersion2 : tunnel::protocol::kVersion1;
  const std::size_t piece = (data[0] >> 2) + 1;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  tunnel::SimulatedTimeSource time;  // outlives the session
  asio::io_context io(1);
  Options options;
  options.version = version;
  options.send_heartbeats = false;
  options.max_streams = 8;
  // Small windows, so that flow control (waiting for credit, growing windows, a peer that sends
  // past its credit) is reached with small inputs.
  options.initial_window = 4096;
  options.peer_initial_window = 4096;
  options.max_window = 64 * 1024;
  options.window_growth_budget = 32 * 1024;
  options.max_data_payload = 1024;
  options.v1_stream_buffer = 16 * 1024;
  auto session =
      std::make_shared<Session>(std::make_unique<PeerConn>(io, input, piece),
                                tunnel::mux::FrameReader(version), role, options, "fuzz", time);
  bool ended = false;
  asio::co_spawn(io, session->run(), [&ended](std::exception_ptr e, const std::string& why) {
    check(!e && !why.empty());
    if (std::getenv("SESSION_FUZZ_VERBOSE") != nullptr)
      std::fprintf(stderr, "ended: %s\n", why.c_str());
    ended = true;
  });
  asio::co_spawn(io, role == Role::kAgent ? agent_user(session) : core_user(session),
                 [](std::exception_ptr e) { check(!e); });
  io.run_for(std::chrono::seconds(20));
  session.reset();
  check(ended);
  check(io.stopped());  // nothing left waiting: every stream failed or finished
  return 0;
}

// The bound on what a Session queues for a peer that does not read, for every frame that the
// session's own user (not a waiting writer) puts in the queue.
#include <gtest/gtest.h>

#include <boost/asio/post.hpp>

#include "mux/session_test_support.hpp"

namespace tunnel::mux::test {
namespace {

class SessionQueueTest : public ::testing::TestWithParam<std::uint8_t> {};

// The core opens stream after stream to an agent that reads nothing. OPEN_STREAM cannot wait
// like a DATA writer, so it counts against the queue's hard limit: past it the session ends
// ("the peer does not read") and open_stream() refuses, instead of queueing without bound
// (before, 5,000 opens of 16 KiB queued 80 MB).
TEST_P(SessionQueueTest, OpenStreamToAPeerThatNeverReadsIsBounded) {
  asio::io_context io;
  Options options = options_for(GetParam());
  options.max_streams = 1'000'000;
  RawPeer peer(io, Role::kCore, options);
  const std::string head(16 * 1024, 'h');
  constexpr int kMaxOpens = 5000;
  int opened = 0;
  std::string error;
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (opened < kMaxOpens) {
          auto stream = peer.session->open_stream(0, head);
          if (!stream) {
            error = stream.error().message;
            break;
          }
          ++opened;
          // Lets the write loop move what the socket takes.
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        }
        done = true;
      },
      asio::detached);
  ASSERT_TRUE(run_until(
      io, [&] { return done; }, 60s));
  EXPECT_LT(opened, kMaxOpens) << "every OPEN_STREAM was queued for a peer that reads nothing";
  EXPECT_NE(error.find("does not read"), std::string::npos) << error;
  // What was accepted: the socket buffers (a few MiB on loopback) plus the queue's bound.
  EXPECT_LT(static_cast<std::size_t>(opened) * head.size(), 32u * 1024 * 1024);
  EXPECT_TRUE(run_until(
      io, [&] { return peer.reason.has_value(); }, 10s));
  EXPECT_NE(peer.reason.value_or("").find("the peer does not read"), std::string::npos)
      << peer.reason.value_or("");
  EXPECT_FALSE(peer.session->is_open());
}

INSTANTIATE_TEST_SUITE_P(Versions, SessionQueueTest,
                         ::testing::Values(protocol::kVersion1, protocol::kVersion2),
                         [](const auto& p) { return "v" + std::to_string(p.param); });

}  // namespace
}  // namespace tunnel::mux::test

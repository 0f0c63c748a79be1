// Data path of two real Sessions over loopback TCP/TLS: opening streams, bulk echo, many streams,
// credit flow control and window auto-tuning, for protocol v1 and v2.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <thread>

#include "mux/session_test_support.hpp"

namespace tunnel::mux::test {
namespace {

using namespace asio::experimental::awaitable_operators;

class SessionDataTest : public ::testing::TestWithParam<std::uint8_t> {
 protected:
  std::uint8_t version() const { return GetParam(); }
};

std::string version_name(const ::testing::TestParamInfo<std::uint8_t>& info) {
  return "v" + std::to_string(info.param);
}

TEST_P(SessionDataTest, OpenStreamCarriesPayloadAndTunnelIndex) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(7, "GET / HTTP/1.1\r\n"));
    CO_ASSERT_TRUE(stream != nullptr);
    auto accepted = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted != nullptr);
    EXPECT_EQ(accepted->id(), stream->id());
    EXPECT_EQ(accepted->open_payload(), "GET / HTTP/1.1\r\n");
    if (version() >= protocol::kVersion2) {
      EXPECT_EQ(accepted->tunnel_index(), 7);
    }
    // A second stream gets a new id and its own payload.
    auto second = opened(pair.core->open_stream(300, ""));
    CO_ASSERT_TRUE(second != nullptr);
    auto accepted2 = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted2 != nullptr);
    EXPECT_NE(accepted2->id(), accepted->id());
    EXPECT_EQ(accepted2->open_payload(), "");
    if (version() >= protocol::kVersion2) {
      EXPECT_EQ(accepted2->tunnel_index(), 300);
    }
    EXPECT_EQ(pair.core->stream_count(), 2u);
    EXPECT_EQ(pair.agent->stream_count(), 2u);
  });
}

// inspect() (the core's /debug/connections) shows each open stream with its tunnel, its bytes
// each way and its windows, oldest first, and the session's byte counts.
TEST_P(SessionDataTest, InspectShowsStreamsWithTheirBytes) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto first = opened(pair.core->open_stream(3, "one"));
    CO_ASSERT_TRUE(first != nullptr);
    auto second = opened(pair.core->open_stream(5, "two"));
    CO_ASSERT_TRUE(second != nullptr);
    auto accepted = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted != nullptr);
    error_code ec;
    const std::vector<std::uint8_t> up(1000, 'u');
    const std::vector<std::uint8_t> down(300, 'd');
    co_await first->write(up, ec);
    co_await accepted->write(down, ec);
    CO_ASSERT_TRUE(!ec);
    std::vector<std::uint8_t> buf(4096);
    std::size_t got = 0;
    while (got < down.size()) got += co_await first->read_some(asio::buffer(buf), ec);
    const SessionInfo core = pair.core->inspect();
    EXPECT_EQ(core.version, version());
    EXPECT_TRUE(core.open);
    CO_ASSERT_TRUE(core.streams.size() == 2u);
    EXPECT_EQ(core.streams[0].id, first->id());  // oldest first
    EXPECT_EQ(core.streams[0].bytes_sent, 1000u);
    EXPECT_EQ(core.streams[0].bytes_received, 300u);
    EXPECT_EQ(core.streams[1].bytes_sent, 0u);
    if (version() >= protocol::kVersion2) {
      EXPECT_EQ(core.streams[0].tunnel_index, 3);
      EXPECT_EQ(core.streams[1].tunnel_index, 5);
      EXPECT_EQ(core.streams[0].send_credit, static_cast<std::int64_t>(core.peer_window) - 1000);
      EXPECT_GT(core.streams[0].receive_window, 0u);
    }
    // Frames both ways, headers included: at least the payloads.
    EXPECT_GE(core.bytes_sent, 1000u + 6u);
    EXPECT_GE(core.bytes_received, 300u);
    const SessionInfo agent = pair.agent->inspect();
    EXPECT_EQ(agent.streams.size(), 2u);
  });
}

// Writes `total` bytes through an echoing agent and reads them back concurrently.
asio::awaitable<void> echo_round_trip(SessionPair& pair, std::uint64_t seed, std::size_t total,
                                      std::size_t write_chunk) {
  auto stream = opened(pair.core->open_stream(1, "echo"));
  CO_ASSERT_TRUE(stream != nullptr);
  error_code write_ec;
  auto [sent_hash, got] =
      co_await (send_pattern(*stream, seed, total, write_chunk, true, write_ec) &&
                receive_pattern(*stream, seed));
  EXPECT_FALSE(write_ec) << write_ec.message();
  EXPECT_FALSE(got.ec) << got.ec.message();
  EXPECT_TRUE(got.eof) << "no END_STREAM after " << got.bytes << " bytes";
  EXPECT_EQ(got.bytes, total);
  EXPECT_EQ(got.hash, sent_hash);
  EXPECT_FALSE(got.first_mismatch.has_value()) << "first wrong byte at " << *got.first_mismatch;
  // After END_STREAM both ways, a further read says 0 again and the stream is gone on both sides.
  std::uint8_t byte = 0;
  error_code ec;
  EXPECT_EQ(co_await stream->read_some(asio::buffer(&byte, 1), ec), 0u);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(stream->read_closed());
  EXPECT_TRUE(stream->write_closed());
  EXPECT_EQ(pair.core->stream_count(), 0u);
  EXPECT_TRUE(co_await wait_until([&] { return pair.agent->stream_count() == 0; }, 2s))
      << "agent still holds " << pair.agent->stream_count() << " streams";
}

TEST_P(SessionDataTest, Echo64MiBWithEndStream) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  asio::co_spawn(pair.io, echo_server(pair.agent), asio::detached);
  pair.run([&]() { return echo_round_trip(pair, 42, 64u * 1024 * 1024, 200 * 1024 + 7); }, 45s);
}

// Frames of every size against reads of every size, with the reader sometimes waiting (DATA goes
// straight into its buffer) and sometimes behind (DATA is buffered in chunks, small frames share
// one): every byte arrives once and in order, whichever path it took.
TEST_P(SessionDataTest, MixedFrameAndReadSizesKeepOrder) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  pair.run(
      [&]() -> asio::awaitable<void> {
        const OpenedStream opened = co_await open_accepted(pair);
        CO_ASSERT_TRUE(opened.ok());
        const auto& stream = opened.core;
        const auto& agent_stream = opened.agent;

        constexpr std::size_t kTotal = 6u * 1024 * 1024;
        const std::array<std::size_t, 8> write_sizes{1,         13,         700, 16 * 1024,
                                                     64 * 1024, 100 * 1024, 3,   70 * 1024};
        const std::array<std::size_t, 6> read_sizes{1, 5, 4096, 100 * 1024, 7, 64 * 1024};
        auto writer = [&]() -> asio::awaitable<error_code> {
          error_code ec;
          std::vector<std::uint8_t> buf(100 * 1024);
          std::size_t sent = 0;
          for (std::size_t i = 0; sent < kTotal && !ec; ++i) {
            const std::size_t n = std::min(write_sizes[i % write_sizes.size()], kTotal - sent);
            fill_pattern(9, sent, {buf.data(), n});
            co_await stream->write({buf.data(), n}, ec, sent + n == kTotal);
            sent += n;
          }
          co_return ec;
        };
        auto reader = [&]() -> asio::awaitable<Received> {
          Received r;
          std::vector<std::uint8_t> buf(100 * 1024);
          for (std::size_t i = 0;; ++i) {
            if (i % 16 == 15) co_await sleep_for(1ms);  // fall behind now and then
            const std::size_t want = read_sizes[i % read_sizes.size()];
            const std::size_t n =
                co_await agent_stream->read_some(asio::buffer(buf.data(), want), r.ec);
            if (r.ec) break;
            if (n == 0) {
              r.eof = true;
              break;
            }
            for (std::size_t k = 0; k < n && !r.first_mismatch; ++k) {
              if (buf[k] != pattern_byte(9, r.bytes + k)) r.first_mismatch = r.bytes + k;
            }
            r.bytes += n;
          }
          co_return r;
        };
        auto [write_ec, got] = co_await (writer() && reader());
        EXPECT_FALSE(write_ec) << write_ec.message();
        EXPECT_FALSE(got.ec) << got.ec.message();
        EXPECT_TRUE(got.eof);
        EXPECT_EQ(got.bytes, kTotal);
        EXPECT_FALSE(got.first_mismatch.has_value())
            << "first wrong byte at " << *got.first_mismatch;
        EXPECT_EQ(agent_stream->buffered(), 0u);
      },
      60s);
}

TEST(SessionTlsTest, EchoOverTls) {
  SessionPair pair(options_for(protocol::kVersion2), options_for(protocol::kVersion2), true);
  ASSERT_TRUE(pair.ready());
  EXPECT_EQ(pair.core->peer().empty(), false);
  asio::co_spawn(pair.io, echo_server(pair.agent), asio::detached);
  pair.run([&]() { return echo_round_trip(pair, 7, 8u * 1024 * 1024, 64 * 1024); }, 30s);
}

TEST_P(SessionDataTest, TwoHundredConcurrentEchoStreams) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  asio::co_spawn(pair.io, echo_server(pair.agent), asio::detached);
  constexpr int kStreams = 200;
  constexpr std::size_t kBytes = 256 * 1024;
  int finished = 0;
  int good = 0;
  pair.run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < kStreams; ++i) {
          auto stream = opened(pair.core->open_stream(static_cast<std::uint16_t>(i), ""));
          CO_ASSERT_TRUE(stream != nullptr);
          asio::co_spawn(
              ex,
              [&, stream, i]() -> asio::awaitable<void> {
                error_code ec;
                auto [hash, got] =
                    co_await (send_pattern(*stream, i, kBytes, 16 * 1024, true, ec) &&
                              receive_pattern(*stream, i));
                if (!ec && got.eof && got.bytes == kBytes && got.hash == hash &&
                    !got.first_mismatch) {
                  ++good;
                }
                ++finished;
              },
              asio::detached);
        }
        EXPECT_TRUE(co_await wait_until([&] { return finished == kStreams; }, 40s));
        EXPECT_EQ(good, kStreams);
        EXPECT_EQ(pair.core->stream_count(), 0u);
        EXPECT_TRUE(co_await wait_until([&] { return pair.agent->stream_count() == 0; }, 2s));
      },
      45s);
}

INSTANTIATE_TEST_SUITE_P(Versions, SessionDataTest,
                         ::testing::Values(protocol::kVersion1, protocol::kVersion2), version_name);

Options v2_with_window(std::uint32_t window) {
  Options options = options_for(protocol::kVersion2);
  options.initial_window = window;
  options.peer_initial_window = window;
  return options;
}

// v2: a reader that never reads holds its stream's writer at the credit, holds at most its window
// in memory, and does not slow the other streams of the session.
TEST(SessionFlowControlTest, SlowReaderBlocksOnlyItsOwnStream) {
  constexpr std::uint32_t kWindow = 256 * 1024;
  const Options options = v2_with_window(kWindow);
  SessionPair pair(options, options);
  ASSERT_TRUE(pair.ready());
  pair.run(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        auto slow = opened(pair.core->open_stream(1, "slow"));
        CO_ASSERT_TRUE(slow != nullptr);
        auto slow_agent = co_await pair.agent->accept();
        CO_ASSERT_TRUE(slow_agent != nullptr);

        // Writer: 1 MiB in 16 KiB writes, counting what write() accepted.
        constexpr std::size_t kSlowTotal = 1024 * 1024;
        std::size_t accepted_bytes = 0;
        bool slow_done = false;
        error_code slow_ec;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              std::vector<std::uint8_t> chunk(16 * 1024);
              while (accepted_bytes < kSlowTotal) {
                fill_pattern(1, accepted_bytes, chunk);
                co_await slow->write(chunk, slow_ec, accepted_bytes + chunk.size() == kSlowTotal);
                if (slow_ec) break;
                accepted_bytes += chunk.size();
              }
              slow_done = true;
            },
            asio::detached);

        // Watch the unread buffer all along.
        std::size_t max_buffered = 0;
        bool over_window = false;
        bool watching = true;
        bool watcher_done = false;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              while (watching) {
                max_buffered = std::max(max_buffered, slow_agent->buffered());
                if (slow_agent->buffered() > slow_agent->window()) over_window = true;
                co_await sleep_for(1ms);
              }
              watcher_done = true;
            },
            asio::detached);

        EXPECT_TRUE(co_await wait_until([&] { return slow_agent->buffered() == kWindow; }, 5s))
            << "agent buffered " << slow_agent->buffered();
        co_await sleep_for(100ms);
        EXPECT_FALSE(slow_done) << "write finished although the reader never read";
        EXPECT_EQ(accepted_bytes, kWindow) << "the writer went past its credit";
        EXPECT_EQ(slow_agent->buffered(), kWindow);
        EXPECT_EQ(slow_agent->window(), kWindow) << "a reader that never reads grew its window";

        // Meanwhile another stream of the same session moves 32 MiB.
        auto fast = opened(pair.core->open_stream(2, "fast"));
        CO_ASSERT_TRUE(fast != nullptr);
        auto fast_agent = co_await pair.agent->accept();
        CO_ASSERT_TRUE(fast_agent != nullptr);
        constexpr std::size_t kFastTotal = 32u * 1024 * 1024;
        const auto started = Clock::now();
        error_code fast_ec;
        auto moved = co_await with_timeout(
            [&]() -> asio::awaitable<Received> {
              auto [hash, got] =
                  co_await (send_pattern(*fast, 2, kFastTotal, 64 * 1024, true, fast_ec) &&
                            receive_pattern(*fast_agent, 2));
              (void)hash;
              co_return got;
            }(),
            20s);
        CO_ASSERT_TRUE(moved.has_value());
        EXPECT_EQ(moved->bytes, kFastTotal);
        EXPECT_TRUE(moved->eof);
        EXPECT_FALSE(moved->first_mismatch.has_value());
        EXPECT_LT(Clock::now() - started, 20s);
        EXPECT_FALSE(slow_done);

        // The slow reader finally reads everything; the blocked write completes.
        auto slow_read = co_await receive_pattern(*slow_agent, 1);
        EXPECT_FALSE(slow_read.ec) << slow_read.ec.message();
        EXPECT_TRUE(slow_read.eof);
        EXPECT_EQ(slow_read.bytes, kSlowTotal);
        EXPECT_FALSE(slow_read.first_mismatch.has_value());
        EXPECT_TRUE(co_await wait_until([&] { return slow_done; }, 5s));
        EXPECT_FALSE(slow_ec) << slow_ec.message();
        watching = false;
        co_await wait_until([&] { return watcher_done; }, 1s);
        EXPECT_FALSE(over_window) << "buffered exceeded the window";
        EXPECT_LE(max_buffered, kWindow);
      },
      40s);
}

// Sends `total` bytes from core to agent on a new stream, as fast as the agent reads them, and
// checks every byte; returns the agent's end of the stream (null if none came).
asio::awaitable<std::shared_ptr<Stream>> fast_transfer(SessionPair& pair, std::uint64_t seed,
                                                       std::size_t total) {
  auto opened_stream = pair.core->open_stream(1, "");
  EXPECT_TRUE(opened_stream) << opened_stream.error().message;
  auto stream = opened(std::move(opened_stream));
  if (stream == nullptr) co_return nullptr;
  auto agent_stream = co_await pair.agent->accept();
  EXPECT_TRUE(agent_stream != nullptr);
  if (agent_stream == nullptr) co_return nullptr;
  error_code ec;
  auto [hash, got] = co_await (send_pattern(*stream, seed, total, 256 * 1024, true, ec) &&
                               receive_pattern(*agent_stream, seed, SIZE_MAX, 256 * 1024));
  EXPECT_EQ(got.hash, hash);
  EXPECT_EQ(got.bytes, total);
  co_return agent_stream;
}

// v2: a reader that keeps up lets its window grow toward max_window.
TEST(SessionFlowControlTest, FastReaderGrowsTheWindow) {
  constexpr std::uint32_t kWindow = 64 * 1024;
  Options options = v2_with_window(kWindow);
  options.max_window = 4 * 1024 * 1024;
  SessionPair pair(options, options);
  ASSERT_TRUE(pair.ready());
  pair.run(
      [&]() -> asio::awaitable<void> {
        auto agent_stream = co_await fast_transfer(pair, 3, 32u * 1024 * 1024);
        CO_ASSERT_TRUE(agent_stream != nullptr);
        EXPECT_GE(agent_stream->window(), 16 * kWindow)
            << "the window did not grow for a reader that keeps up";
        EXPECT_LE(agent_stream->window(), options.max_window);
      },
      30s);
}

// v2: streams that keep up grow their windows from one budget per session. Three fast streams
// at once share it (their windows together grow no more than the budget), and a stream that
// ends gives its share back.
TEST(SessionFlowControlTest, WindowGrowthSharesOneBudgetPerSession) {
  constexpr std::uint32_t kWindow = 64 * 1024;
  constexpr std::size_t kBudget = 1024 * 1024;
  Options options = v2_with_window(kWindow);
  options.max_window = 4 * 1024 * 1024;  // each stream alone could take more than the budget
  options.window_growth_budget = kBudget;
  SessionPair pair(options, options);
  ASSERT_TRUE(pair.ready());
  pair.run(
      [&]() -> asio::awaitable<void> {
        constexpr std::size_t kTotal = 16u * 1024 * 1024;
        std::vector<std::shared_ptr<Stream>> sent;
        std::vector<std::shared_ptr<Stream>> received;
        for (int i = 0; i < 3; ++i) {
          sent.push_back(opened(pair.core->open_stream(1, "")));
          received.push_back(co_await pair.agent->accept());
          CO_ASSERT_TRUE(sent.back() != nullptr && received.back() != nullptr);
        }
        error_code ec;
        auto results = co_await (send_pattern(*sent[0], 1, kTotal, 256 * 1024, true, ec) &&
                                 receive_pattern(*received[0], 1, SIZE_MAX, 256 * 1024) &&
                                 send_pattern(*sent[1], 2, kTotal, 256 * 1024, true, ec) &&
                                 receive_pattern(*received[1], 2, SIZE_MAX, 256 * 1024) &&
                                 send_pattern(*sent[2], 3, kTotal, 256 * 1024, true, ec) &&
                                 receive_pattern(*received[2], 3, SIZE_MAX, 256 * 1024));
        EXPECT_EQ(std::get<1>(results).bytes, kTotal);
        EXPECT_EQ(std::get<3>(results).bytes, kTotal);
        EXPECT_EQ(std::get<5>(results).bytes, kTotal);
        EXPECT_EQ(std::get<1>(results).hash, std::get<0>(results));
        std::size_t grown = 0;
        for (const auto& s : received) {
          EXPECT_GE(s->window(), kWindow);
          grown += s->window() - kWindow;
        }
        EXPECT_EQ(grown, pair.agent->window_growth());
        EXPECT_LE(grown, kBudget) << "the windows grew past the session's budget";
        EXPECT_GE(grown, kBudget / 2) << "fast readers did not grow their windows at all";

        // The first stream ends (both sides closed, no one holds it): its growth goes back.
        const std::size_t first = received[0]->window() - kWindow;
        for (auto& s : received) co_await s->close_write(ec);
        sent.clear();
        received[0].reset();
        EXPECT_EQ(pair.agent->window_growth(), grown - first);
        received.clear();
        EXPECT_EQ(pair.agent->window_growth(), 0u);
      },
      60s);
}

// A reader that keeps up through 8 MiB, with `options` (v2), still has its initial window.
void expect_no_window_growth(const Options& options, std::uint64_t seed) {
  SessionPair pair(options, options);
  ASSERT_TRUE(pair.ready());
  pair.run(
      [&]() -> asio::awaitable<void> {
        auto agent_stream = co_await fast_transfer(pair, seed, 8u * 1024 * 1024);
        CO_ASSERT_TRUE(agent_stream != nullptr);
        EXPECT_EQ(agent_stream->window(), options.initial_window);
        EXPECT_EQ(pair.agent->window_growth(), 0u);
      },
      30s);
}

// v2: with no growth budget, a reader that keeps up still gets only its initial window.
TEST(SessionFlowControlTest, NoGrowthBudgetKeepsTheInitialWindow) {
  Options options = v2_with_window(64 * 1024);
  options.window_growth_budget = 0;
  expect_no_window_growth(options, 4);
}

// v2: a budget shared with other sessions bounds the growth too. Here it is smaller than the
// session's own budget: three fast streams together grow no more than it, what they hold is
// what the shared budget counts, and all of it comes back when the streams end.
TEST(SessionFlowControlTest, SharedWindowBudgetBoundsTheGrowthToo) {
  constexpr std::uint32_t kWindow = 64 * 1024;
  constexpr std::size_t kShared = 512 * 1024;
  Options options = v2_with_window(kWindow);
  options.max_window = 4 * 1024 * 1024;
  options.shared_window_budget = std::make_shared<WindowBudget>(kShared);
  const std::shared_ptr<WindowBudget> shared = options.shared_window_budget;
  SessionPair pair(options, options);
  ASSERT_TRUE(pair.ready());
  pair.run(
      [&]() -> asio::awaitable<void> {
        std::vector<std::shared_ptr<Stream>> held;
        for (std::uint64_t seed = 5; seed < 8; ++seed) {
          held.push_back(co_await fast_transfer(pair, seed, 8u * 1024 * 1024));
          CO_ASSERT_TRUE(held.back() != nullptr);
        }
        EXPECT_GE(pair.agent->window_growth(), kShared / 2) << "no window grew";
        EXPECT_LE(pair.agent->window_growth() + pair.core->window_growth(), kShared);
        EXPECT_EQ(shared->used(), pair.agent->window_growth() + pair.core->window_growth());
        error_code ec;
        for (auto& s : held) co_await s->close_write(ec);  // the streams end on both sides
        held.clear();
        EXPECT_EQ(pair.agent->window_growth(), 0u);
      },
      60s);
  EXPECT_EQ(shared->used(), 0u) << "growth not given back to the shared budget";
}

// v2: when other sessions hold all of the shared budget, a fast reader keeps its initial window.
TEST(SessionFlowControlTest, SpentSharedBudgetKeepsTheInitialWindow) {
  Options options = v2_with_window(64 * 1024);
  options.shared_window_budget = std::make_shared<WindowBudget>(1024 * 1024);
  ASSERT_EQ(options.shared_window_budget->take(SIZE_MAX), 1024u * 1024);  // "other sessions"
  expect_no_window_growth(options, 9);
}

// WindowBudget: takes never go past the limit, also from several threads at once.
TEST(WindowBudgetTest, TakesNeverPassTheLimit) {
  WindowBudget budget(1000);
  EXPECT_EQ(budget.take(600), 600u);
  EXPECT_EQ(budget.take(600), 400u) << "only what is left";
  EXPECT_EQ(budget.take(1), 0u);
  budget.give_back(300);
  EXPECT_EQ(budget.used(), 700u);
  EXPECT_EQ(budget.take(SIZE_MAX), 300u);
  budget.give_back(1000);

  WindowBudget shared(10'000);
  std::atomic<bool> over{false};
  auto hammer = [&] {
    for (int i = 0; i < 200'000; ++i) {
      const std::size_t got = shared.take(static_cast<std::size_t>(i % 700) + 1);
      if (shared.used() > shared.limit()) over = true;
      shared.give_back(got);
    }
  };
  std::thread a(hammer);
  std::thread b(hammer);
  a.join();
  b.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(shared.used(), 0u);
}

// Relay buffers grow to kBulkRelayRead only after a read that filled them, and no further.
TEST(RelayBuffer, GrowsOnlyAfterAFullRead) {
  std::vector<std::uint8_t> buf(64 * 1024);
  grow_after_full_read(buf, 1000);
  EXPECT_EQ(buf.size(), 64u * 1024) << "a short read keeps the buffer";
  grow_after_full_read(buf, buf.size());
  EXPECT_EQ(buf.size(), kBulkRelayRead);
  grow_after_full_read(buf, buf.size());
  EXPECT_EQ(buf.size(), kBulkRelayRead) << "never past the bulk size";
}

}  // namespace
}  // namespace tunnel::mux::test

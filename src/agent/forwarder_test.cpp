// The forwarder between two real mux sessions over loopback: the test plays the core (opens a
// stream with a request head) and a local app (an asio server); the agent side runs
// forward_http for every stream it accepts.
#include "agent/forwarder.hpp"

#include <gtest/gtest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include "mux/session_test_support.hpp"

namespace tunnel::agent {
namespace {

using namespace std::chrono_literals;
using mux::test::opened;
using mux::test::SessionPair;
using mux::test::sleep_for;
using protocol::ErrorCode;
using transport::error_code;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// A local app: for each request on a connection, `respond` gets the socket, the head and the
// bytes read past it, and returns whether the connection stays open.
class FakeApp {
 public:
  using Respond =
      std::function<asio::awaitable<bool>(tcp::socket&, const std::string& head, std::string&)>;

  FakeApp(asio::io_context& io, Respond respond) : state_(std::make_shared<State>(io)) {
    state_->respond = std::move(respond);
    asio::co_spawn(io, accept_loop(state_), asio::detached);
  }
  ~FakeApp() { stop(); }

  common::NetAddress address() const {
    return {"127.0.0.1", state_->acceptor.local_endpoint().port()};
  }
  int connections() const { return state_->connections; }
  const std::vector<std::string>& heads() const { return state_->heads; }
  const std::vector<std::string>& bodies() const { return state_->bodies; }
  void record_body(std::string body) { state_->bodies.push_back(std::move(body)); }

  void stop() {
    error_code ignored;
    state_->acceptor.close(ignored);
    for (auto& weak : state_->sockets) {
      if (auto s = weak.lock()) s->close(ignored);
    }
  }

 private:
  struct State {
    explicit State(asio::io_context& io)
        : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
    tcp::acceptor acceptor;
    Respond respond;
    int connections = 0;
    std::vector<std::string> heads;
    std::vector<std::string> bodies;
    std::vector<std::weak_ptr<tcp::socket>> sockets;
  };
  std::shared_ptr<State> state_;

  static asio::awaitable<void> accept_loop(std::shared_ptr<State> state) {
    for (;;) {
      auto [ec, socket] = co_await state->acceptor.async_accept(kNoThrow);
      if (ec) co_return;
      ++state->connections;
      auto shared = std::make_shared<tcp::socket>(std::move(socket));
      state->sockets.push_back(shared);
      asio::co_spawn(state->acceptor.get_executor(), serve(state, shared), asio::detached);
    }
  }

  static asio::awaitable<void> serve(std::shared_ptr<State> state,
                                     std::shared_ptr<tcp::socket> socket) {
    std::string buffered;
    for (;;) {
      auto [ec, n] = co_await asio::async_read_until(*socket, asio::dynamic_buffer(buffered),
                                                     "\r\n\r\n", kNoThrow);
      if (ec) co_return;
      std::string head = buffered.substr(0, n);
      buffered.erase(0, n);
      state->heads.push_back(head);
      if (!co_await state->respond(*socket, head, buffered)) {
        error_code ignored;
        socket->shutdown(tcp::socket::shutdown_both, ignored);
        socket->close(ignored);
        co_return;
      }
    }
  }
};

std::size_t content_length(const std::string& head) {
  const auto at = head.find("Content-Length: ");
  return at == std::string::npos ? 0 : std::stoul(head.substr(at + 16));
}

// Reads a Content-Length body (part of it may already be in `buffered`).
asio::awaitable<std::string> read_body(tcp::socket& socket, const std::string& head,
                                       std::string& buffered) {
  const std::size_t length = content_length(head);
  if (buffered.size() < length) {
    auto [ec, n] =
        co_await asio::async_read(socket, asio::dynamic_buffer(buffered),
                                  asio::transfer_exactly(length - buffered.size()), kNoThrow);
    (void)n;
    if (ec) co_return std::string();
  }
  std::string body = buffered.substr(0, length);
  buffered.erase(0, length);
  co_return body;
}

asio::awaitable<bool> send(tcp::socket& socket, std::string_view bytes) {
  auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes), kNoThrow);
  (void)n;
  co_return !ec;
}

// What the core side saw on one stream.
struct Reply {
  std::string bytes;
  bool eof = false;
  bool reset = false;
  ErrorCode code = ErrorCode::kNoError;
  std::string message;
};

// Plays the core: opens a stream with `head`, sends `body` and END_STREAM, reads to the end.
asio::awaitable<Reply> round_trip(mux::Session& core, std::string head, std::string body = "") {
  Reply reply;
  auto result = core.open_stream(0, head);
  if (!result) {
    ADD_FAILURE() << "open_stream: " << result.error().message;
    co_return reply;
  }
  auto stream = std::move(result).value();
  error_code ec;
  co_await stream->write(mux::as_bytes(body), ec, true);
  std::vector<char> buf(16 * 1024);
  for (;;) {
    const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
    if (ec) {
      reply.reset = stream->is_reset();
      reply.code = stream->reset_code();
      reply.message = stream->reset_message();
      break;
    }
    if (n == 0) {
      reply.eof = true;
      break;
    }
    reply.bytes.append(buf.data(), n);
  }
  co_return reply;
}

class ForwarderTest : public ::testing::Test {
 protected:
  ForwarderTest() : pair(protocol::kVersion2) {
    pool = std::make_shared<LocalPool>(pair.io.get_executor(), pair.time);
  }

  // The agent side: forwards every accepted stream to `target`.
  void serve(common::NetAddress target) {
    asio::co_spawn(pair.io, agent_loop(pair.agent, pool, target, results), asio::detached);
  }

  static asio::awaitable<void> agent_loop(std::shared_ptr<mux::Session> agent,
                                          std::shared_ptr<LocalPool> pool,
                                          common::NetAddress target,
                                          std::shared_ptr<std::vector<ForwardResult>> results) {
    for (;;) {
      auto stream = co_await agent->accept();
      if (!stream) co_return;
      asio::co_spawn(
          agent->get_executor(),
          [stream, pool, target, results]() -> asio::awaitable<void> {
            results->push_back(co_await forward_http(stream, pool, target));
          },
          asio::detached);
    }
  }

  void TearDown() override {
    if (app) app->stop();
    pool->clear();
    pair.finish();
  }

  SessionPair pair;
  std::shared_ptr<LocalPool> pool;
  std::shared_ptr<std::vector<ForwardResult>> results =
      std::make_shared<std::vector<ForwardResult>>();
  std::unique_ptr<FakeApp> app;
};

constexpr std::string_view kHello = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

TEST_F(ForwarderTest, ContentLengthResponseEndsExactlyAndConnectionIsReused) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_return co_await send(s, kHello);
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    // The core's head may lack the final empty line.
    for (const char* head : {"GET /a HTTP/1.1\r\nHost: app.localhost\r\nX-Request-Id: r1\r\n",
                             "GET /b HTTP/1.1\r\nHost: app.localhost\r\n\r\n", "GET /c HTTP/1.1"}) {
      Reply r = co_await round_trip(*pair.core, head);
      EXPECT_TRUE(r.eof);
      EXPECT_EQ(r.bytes, kHello);
    }
    EXPECT_TRUE(co_await mux::test::wait_until([&] { return results->size() == 3; }, 2s));
  });
  EXPECT_EQ(app->connections(), 1) << "keep-alive connection not reused";
  ASSERT_EQ(app->heads().size(), 3u);
  EXPECT_EQ(app->heads()[0], "GET /a HTTP/1.1\r\nHost: app.localhost\r\nX-Request-Id: r1\r\n\r\n");
  EXPECT_EQ(app->heads()[2], "GET /c HTTP/1.1\r\n\r\n");
  ASSERT_EQ(results->size(), 3u);
  const ForwardResult& first = (*results)[0];
  EXPECT_EQ(first.method, "GET");
  EXPECT_EQ(first.target, "/a");
  EXPECT_EQ(first.request_id, "r1");
  EXPECT_EQ(first.status, 200);
  EXPECT_TRUE(first.error.empty()) << first.error;
  EXPECT_FALSE(first.reused_connection);
  EXPECT_TRUE((*results)[1].reused_connection);
}

TEST_F(ForwarderTest, ChunkedResponseIsStreamedRawAndEndsAtTheLastChunk) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_await send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
        co_await sleep_for(20ms);
        co_await send(s, "lo\r\n6;ext=1\r\n world\r\n");
        co_await sleep_for(20ms);
        co_await send(s, "0\r\nX-Trailer: t\r\n\r\n");
        co_return true;
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      Reply r = co_await round_trip(*pair.core, "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n");
      EXPECT_TRUE(r.eof);
      EXPECT_EQ(r.bytes,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n "
                "world\r\n0\r\nX-Trailer: t\r\n\r\n");
    }
  });
  EXPECT_EQ(app->connections(), 1);
}

TEST_F(ForwarderTest, HeadResponseHasNoBody) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string& head, std::string&) -> asio::awaitable<bool> {
        if (head.starts_with("HEAD")) {
          co_return co_await send(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        }
        co_return co_await send(s, kHello);
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    Reply r = co_await round_trip(*pair.core, "HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(r.eof);
    EXPECT_EQ(r.bytes, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    // The connection is still in step: the next GET on it gets its own response.
    r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.bytes, kHello);
  });
  EXPECT_EQ(app->connections(), 1);
}

TEST_F(ForwarderTest, NoBodyFor204And304) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string& head, std::string&) -> asio::awaitable<bool> {
        if (head.starts_with("GET /204"))
          co_return co_await send(s, "HTTP/1.1 204 No Content\r\n\r\n");
        co_return co_await send(s, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    Reply r = co_await round_trip(*pair.core, "GET /204 HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(r.eof);
    EXPECT_EQ(r.bytes, "HTTP/1.1 204 No Content\r\n\r\n");
    r = co_await round_trip(*pair.core, "GET /304 HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(r.eof);
    EXPECT_EQ(r.bytes, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
  });
}

TEST_F(ForwarderTest, RequestBodyReachesTheApp) {
  app = std::make_unique<FakeApp>(pair.io, nullptr);
  FakeApp* raw = app.get();
  app = std::make_unique<FakeApp>(pair.io,
                                  [&raw](tcp::socket& s, const std::string& head,
                                         std::string& buffered) -> asio::awaitable<bool> {
                                    std::string body = co_await read_body(s, head, buffered);
                                    raw->record_body(body);
                                    const std::string out = std::to_string(body.size());
                                    co_return co_await send(
                                        s, "HTTP/1.1 200 OK\r\nContent-Length: " +
                                               std::to_string(out.size()) + "\r\n\r\n" + out);
                                  });
  raw = app.get();
  serve(app->address());
  const std::string big(1'000'000, 'x');
  pair.run([&]() -> asio::awaitable<void> {
    Reply r = co_await round_trip(*pair.core,
                                  "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                      std::to_string(big.size()) + "\r\n\r\n",
                                  big);
    EXPECT_TRUE(r.eof);
    EXPECT_EQ(r.bytes, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n1000000");
  });
  ASSERT_EQ(app->bodies().size(), 1u);
  EXPECT_EQ(app->bodies()[0], big);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].bytes_in, big.size());
}

TEST_F(ForwarderTest, ContinueInterimResponsePassesThrough) {
  app = std::make_unique<FakeApp>(
      pair.io,
      [](tcp::socket& s, const std::string& head, std::string& buffered) -> asio::awaitable<bool> {
        // A real app answers 100 Continue before it reads the body.
        if (head.find("Expect: 100-continue") != std::string::npos) {
          co_await send(s, "HTTP/1.1 100 Continue\r\n\r\n");
        }
        std::string body = co_await read_body(s, head, buffered);
        co_return co_await send(s, "HTTP/1.1 201 Created\r\nContent-Length: " +
                                       std::to_string(body.size()) + "\r\n\r\n" + body);
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(
        0, "PUT /f HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
    CO_ASSERT_TRUE(stream != nullptr);
    // The client waits for the 100 before sending its body.
    std::string got;
    std::vector<char> buf(1024);
    error_code ec;
    while (got.find("\r\n\r\n") == std::string::npos) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
      CO_ASSERT_TRUE(!ec && n > 0);
      got.append(buf.data(), n);
    }
    EXPECT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
    co_await stream->write(mux::as_bytes("body"), ec, true);
    for (;;) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
      CO_ASSERT_TRUE(!ec);
      if (n == 0) break;
      got.append(buf.data(), n);
    }
    EXPECT_EQ(got,
              "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nbody");
  });
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].status, 201);
}

TEST_F(ForwarderTest, CloseDelimitedResponseEndsAtTheAppsEof) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_await send(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ");
        co_await sleep_for(20ms);
        co_await send(s, "the end");
        co_return false;  // closes
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      Reply r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      EXPECT_TRUE(r.eof);
      EXPECT_FALSE(r.reset);
      EXPECT_EQ(r.bytes, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
    }
  });
  EXPECT_EQ(app->connections(), 2) << "a close-delimited connection must not be reused";
}

TEST_F(ForwarderTest, ConnectionCloseResponseIsNotReused) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_return co_await send(
            s, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      Reply r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      EXPECT_TRUE(r.eof);
      EXPECT_TRUE(r.bytes.ends_with("\r\n\r\nok"));
    }
  });
  EXPECT_EQ(app->connections(), 2);
  EXPECT_EQ(pool->idle_count(), 0u);
}

TEST_F(ForwarderTest, ConnectRefusedResetsWithTheAddress) {
  tcp::acceptor closed(pair.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const common::NetAddress target{"127.0.0.1", closed.local_endpoint().port()};
  closed.close();
  serve(target);
  pair.run([&]() -> asio::awaitable<void> {
    Reply r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(r.reset);
    EXPECT_EQ(r.code, ErrorCode::kLocalUnreachable);
    EXPECT_EQ(r.message, "dial tcp " + target.to_string() + ": Connection refused");
  });
  ASSERT_EQ(results->size(), 1u);
  EXPECT_NE((*results)[0].error.find(target.to_string()), std::string::npos);
}

TEST_F(ForwarderTest, InvalidResponseResetsWithLocalError) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_return co_await send(s, "SMTP ready\r\n\r\n");
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    Reply r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(r.reset);
    EXPECT_EQ(r.code, ErrorCode::kLocalError);
    EXPECT_NE(r.message.find("invalid response"), std::string::npos) << r.message;
  });
}

TEST_F(ForwarderTest, AppDyingMidBodyResetsWithLocalError) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_await send(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
        co_return false;
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    Reply r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(r.reset);
    EXPECT_EQ(r.code, ErrorCode::kLocalError);
    EXPECT_NE(r.message.find(app->address().to_string()), std::string::npos) << r.message;
  });
}

TEST_F(ForwarderTest, CoreResetWhileAppIsSilentStopsTheExchange) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        // Never answers; returns when the agent drops the connection.
        char byte = 0;
        co_await s.async_read_some(asio::buffer(&byte, 1), kNoThrow);
        co_return false;
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(0, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
    CO_ASSERT_TRUE(stream != nullptr);
    error_code ec;
    co_await stream->close_write(ec);
    co_await sleep_for(100ms);
    stream->reset(ErrorCode::kCancel, "client went away");
    EXPECT_TRUE(co_await mux::test::wait_until([&] { return results->size() == 1; }, 3s))
        << "the forwarder kept waiting for the app";
  });
  ASSERT_EQ(results->size(), 1u);
  EXPECT_NE((*results)[0].error.find("CANCEL"), std::string::npos) << (*results)[0].error;
}

TEST_F(ForwarderTest, StaleIdleConnectionIsReplaced) {
  app = std::make_unique<FakeApp>(
      pair.io, [](tcp::socket& s, const std::string&, std::string&) -> asio::awaitable<bool> {
        co_await send(s, kHello);
        co_return false;  // closes after answering, although the response says keep-alive
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      Reply r = co_await round_trip(*pair.core, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      EXPECT_TRUE(r.eof) << "request " << i << ": " << r.message;
      EXPECT_EQ(r.bytes, kHello);
      co_await sleep_for(20ms);
    }
  });
  EXPECT_EQ(app->connections(), 3);
}

// Issue 25: an app answered the first request twice, the second time after the first exchange
// had ended; the leftover response (with visitor A's cookie) went to visitor B, whose request
// has no body and so skipped the pool's check. Every reused connection is checked now.
TEST_F(ForwarderTest, LeftoverResponseOnAnIdleConnectionNeverReachesTheNextRequest) {
  constexpr std::string_view kLeftover =
      "HTTP/1.1 200 OK\r\nSet-Cookie: session=visitor-a\r\nContent-Length: 8\r\n\r\nleftover";
  constexpr std::string_view kSecond = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";
  bool leftover_sent = false;
  app = std::make_unique<FakeApp>(
      pair.io, [&](tcp::socket& s, const std::string& head, std::string&) -> asio::awaitable<bool> {
        if (!head.starts_with("GET /first ")) co_return co_await send(s, kSecond);
        if (!co_await send(s, kHello)) co_return false;
        // Once the first exchange is over and the connection is idle in the pool.
        co_await mux::test::wait_until([&] { return results->size() == 1; }, 5s);
        leftover_sent = co_await send(s, kLeftover);
        co_return true;
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    Reply first = co_await round_trip(*pair.core, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(first.bytes, kHello);
    EXPECT_TRUE(co_await mux::test::wait_until([&] { return leftover_sent; }, 5s));
    Reply second = co_await round_trip(*pair.core, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(second.eof) << second.message;
    EXPECT_EQ(second.bytes, kSecond);
  });
  EXPECT_EQ(app->connections(), 2) << "the connection with the leftover was reused";
  ASSERT_EQ(results->size(), 2u);
  EXPECT_FALSE((*results)[1].reused_connection);
}

TEST_F(ForwarderTest, UpgradeRelaysRawBytesBothWays) {
  app = std::make_unique<FakeApp>(
      pair.io,
      [](tcp::socket& s, const std::string&, std::string& buffered) -> asio::awaitable<bool> {
        co_await send(
            s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n");
        // Echo raw bytes until the client half-closes, then say goodbye and close.
        if (!buffered.empty()) co_await send(s, buffered);
        std::vector<char> buf(1024);
        for (;;) {
          auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kNoThrow);
          if (ec) break;
          co_await send(s, std::string_view(buf.data(), n));
        }
        co_await send(s, "bye");
        co_return false;
      });
  serve(app->address());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(
        0, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n"));
    CO_ASSERT_TRUE(stream != nullptr);
    std::string got;
    std::vector<char> buf(1024);
    error_code ec;
    while (got.find("\r\n\r\n") == std::string::npos) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
      CO_ASSERT_TRUE(!ec && n > 0);
      got.append(buf.data(), n);
    }
    EXPECT_TRUE(got.starts_with("HTTP/1.1 101 "));
    got.clear();
    co_await stream->write(mux::as_bytes("ping"), ec);
    while (got.size() < 4) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
      CO_ASSERT_TRUE(!ec && n > 0);
      got.append(buf.data(), n);
    }
    EXPECT_EQ(got, "ping");
    co_await stream->close_write(ec);  // the client half-closes; the app still answers
    for (;;) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
      CO_ASSERT_TRUE(!ec);
      if (n == 0) break;
      got.append(buf.data(), n);
    }
    EXPECT_EQ(got, "pingbye");
  });
  ASSERT_EQ(results->size(), 1u);
  EXPECT_TRUE((*results)[0].upgraded);
  EXPECT_EQ((*results)[0].status, 101);
}

}  // namespace
}  // namespace tunnel::agent

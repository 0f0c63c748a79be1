#include "workloads.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <exception>
#include <string_view>
#include <utility>

#include "agent/forwarder.hpp"
#include "agent/local_pool.hpp"
#include "alloc_hook.hpp"
#include "common/net_address.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/agents/context.hpp"
#include "core/edge/http_filters.hpp"
#include "core/edge/http_front.hpp"
#include "http/message_parser.hpp"
#include "mux/session.hpp"
#include "observability/metrics.hpp"
#include "transport/conn.hpp"

namespace tunnel::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using protocol::FrameType;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// splitmix64: a fixed sequence, the same on every machine.
struct Sequence {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }
};

// The options the core and the agent use, except that heartbeats are an hour apart: a slow run
// under valgrind must not see a PING in the middle of a measurement.
mux::Options session_options() {
  mux::Options options;
  options.version = protocol::kVersion2;
  options.heartbeat_interval = std::chrono::hours(1);
  options.heartbeat_timeout = std::chrono::hours(3);
  return options;
}

// Both ends of an AF_UNIX stream socketpair as asio TCP sockets (Conn wants tcp::socket; reads,
// writes and readiness work the same, and the kernel hands bytes over synchronously, which keeps
// the event order fixed). The peer address reads as "[::]:0".
bool raw_socket_pair(int (&fds)[2], std::string& error) {
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    error = std::string("socketpair: ") + std::strerror(errno);
    return false;
  }
  return true;
}

bool socket_pair(asio::io_context& io, tcp::socket& a, tcp::socket& b, std::string& error) {
  int fds[2];
  if (!raw_socket_pair(fds, error)) return false;
  a = tcp::socket(io, tcp::v4(), fds[0]);
  b = tcp::socket(io, tcp::v4(), fds[1]);
  return true;
}

std::string make_body(std::size_t size) {
  static constexpr std::string_view kItem = R"({"id":1234,"name":"widget","tags":["a","b"]},)";
  std::string body = "[";
  while (body.size() + kItem.size() + 1 <= size) body += kItem;
  body.resize(size - 1, ' ');
  body += ']';
  return body;
}

}  // namespace

// ---- frame codec -------------------------------------------------------------------------------

FrameCorpus::FrameCorpus(std::uint8_t version, std::size_t count) : version_(version) {
  Sequence seq{version == protocol::kVersion1 ? 0x5EED0001u : 0x5EED0002u};
  specs_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t roll = seq.below(100);
    const std::uint32_t stream = 1 + 2 * seq.below(500);
    Spec s{FrameType::kData, 0, stream, 0};
    if (version == protocol::kVersion1) {
      if (roll < 80) {
        s.payload = 1 + seq.below(64 * 1024);
        s.flags = seq.below(10) == 0 ? protocol::flags::kEndStream : 0;
      } else if (roll < 88) {
        s = {FrameType::kOpenStream, 0, stream, 300 + seq.below(700)};
      } else if (roll < 95) {
        s = {FrameType::kClose, 0, stream, 0};
      } else {
        s = {FrameType::kHeartbeat, static_cast<std::uint8_t>(seq.below(2) * protocol::flags::kAck),
             0, 0};
      }
    } else {
      if (roll < 70) {
        s.payload = 1 + seq.below(64 * 1024);
        s.flags = seq.below(10) == 0 ? protocol::flags::kEndStream : 0;
      } else if (roll < 85) {
        s = {FrameType::kWindowUpdate, 0, stream, 4};
      } else if (roll < 92) {
        s = {FrameType::kOpenStream, 0, stream, 2 + 300 + seq.below(700)};
      } else if (roll < 95) {
        s = {FrameType::kReset, 0, stream, 4 + seq.below(40)};
      } else {
        s = {FrameType::kPing, static_cast<std::uint8_t>(seq.below(2) * protocol::flags::kAck), 0,
             8};
      }
    }
    specs_.push_back(s);
  }
  wire_.assign(count * protocol::kHeaderSize, 0);
  encode_all();
}

std::uint64_t FrameCorpus::encode_all() {
  std::uint8_t* out = wire_.data();
  for (const Spec& s : specs_) {
    protocol::encode_header(out, version_, s.type, s.flags, s.stream_id, s.payload);
    out += protocol::kHeaderSize;
  }
  return wire_.empty() ? 0 : std::uint64_t{wire_.front()} + wire_.back();
}

std::uint64_t FrameCorpus::decode_all() {
  std::uint64_t sum = 0;
  std::uint64_t bad = 0;
  const std::uint8_t* p = wire_.data();
  for (std::size_t i = 0; i < specs_.size(); ++i, p += protocol::kHeaderSize) {
    const protocol::HeaderDecode d = protocol::decode_header({p, protocol::kHeaderSize}, version_);
    if (d.status == protocol::DecodeStatus::kOk) {
      sum += d.header.length + d.header.stream_id + d.header.type + d.header.flags;
    } else {
      ++bad;
    }
  }
  return (sum << 16) | (bad & 0xffff);
}

bool FrameCorpus::round_trips() {
  encode_all();
  const std::uint8_t* p = wire_.data();
  for (const Spec& s : specs_) {
    const protocol::HeaderDecode d = protocol::decode_header({p, protocol::kHeaderSize}, version_);
    if (d.status != protocol::DecodeStatus::kOk || d.header.frame_type() != s.type ||
        d.header.flags != s.flags || d.header.stream_id != s.stream_id ||
        d.header.payload_size() != s.payload || d.header.version != version_) {
      return false;
    }
    p += protocol::kHeaderSize;
  }
  return true;
}

// ---- proxied requests --------------------------------------------------------------------------

const char* workload_name(Workload workload) {
  switch (workload) {
    case Workload::kGet:
      return "http_get";
    case Workload::kPost1k:
      return "http_post_1k";
    case Workload::kGetLimits:
      return "http_get_limits";
    case Workload::kGetQuota:
      return "http_get_quota";
    case Workload::kGetQuotaSet:
      return "http_get_quota_set";
  }
  return "?";
}

// Destruction order matters: the io_context goes before the core objects its pending coroutine
// frames refer to, and after every socket that uses it.
struct ProxyRig::State {
  RealTimeSource time;  // as the programs run: the real clock, through the interface
  observability::Registry metrics;
  std::unique_ptr<core::CoreContext> context;
  std::unique_ptr<core::HttpFront> front;
  asio::io_context io{1};
  tcp::acceptor origin{io};
  tcp::socket client{io};
  std::shared_ptr<core::AgentSession> agent_entry;
  std::shared_ptr<mux::Session> core_session;
  std::shared_ptr<mux::Session> agent_session;
  std::shared_ptr<agent::LocalPool> pool;

  std::string method;
  std::string request;               // the client's bytes for one request
  std::size_t origin_body_size = 0;  // request body bytes the origin reads after the head
  std::string response;              // the origin's bytes for one response
  std::vector<char> client_buf = std::vector<char>(64 * 1024);
  // Further client connections for run_concurrent(), each with its own buffer.
  struct Client {
    Client(asio::io_context& io, std::size_t buffer) : socket(io), buf(buffer) {}
    tcp::socket socket;
    std::vector<char> buf;
  };
  std::vector<std::unique_ptr<Client>> more_clients;
};

namespace {

// The app: answers every request on a connection with the same response. It knows the request
// body size, so it needs no HTTP parser (its cost is not the tunnel's).
asio::awaitable<void> origin_serve(tcp::socket socket, std::size_t body_size,
                                   const std::string& response) {
  std::vector<char> buf(64 * 1024);
  std::size_t have = 0;
  for (;;) {
    std::size_t need = 0;
    for (;;) {
      if (need == 0) {
        const auto end = std::string_view(buf.data(), have).find("\r\n\r\n");
        if (end != std::string_view::npos) need = end + 4 + body_size;
      }
      if (need != 0 && have >= need) break;
      if (have == buf.size()) co_return;  // not the request we expect
      auto [ec, n] = co_await socket.async_read_some(
          asio::buffer(buf.data() + have, buf.size() - have), kNoThrow);
      if (ec) co_return;
      have += n;
    }
    std::memmove(buf.data(), buf.data() + need, have - need);
    have -= need;
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(response), kNoThrow);
    (void)n;
    if (ec) co_return;
  }
}

asio::awaitable<void> origin_accept(tcp::acceptor& acceptor, std::size_t body_size,
                                    const std::string& response) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec) co_return;
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), origin_serve(std::move(socket), body_size, response),
                   asio::detached);
  }
}

// The agent's stream loop (agent/connector.cpp accept_streams, without the logging).
asio::awaitable<void> agent_accept(std::shared_ptr<mux::Session> session,
                                   std::shared_ptr<agent::LocalPool> pool,
                                   common::NetAddress target) {
  for (;;) {
    auto stream = co_await session->accept();
    if (!stream) co_return;
    asio::co_spawn(session->get_executor(), agent::forward_http(std::move(stream), pool, target),
                   asio::detached);
  }
}

// First request: learns the size of a response as the client gets it (with llhttp, once).
asio::awaitable<void> calibrate(ProxyRig::State& st, std::size_t& expected, std::string& error) {
  auto [wec, written] = co_await asio::async_write(st.client, asio::buffer(st.request), kNoThrow);
  (void)written;
  if (wec) {
    error = "client write: " + wec.message();
    co_return;
  }
  http::MessageParser parser(http::MessageParser::Kind::kResponse);
  parser.expect_response_to(st.method);
  std::string data;
  std::size_t parsed = 0;
  for (;;) {
    auto [ec, n] = co_await st.client.async_read_some(asio::buffer(st.client_buf), kNoThrow);
    if (ec) {
      error = "client read: " + ec.message();
      co_return;
    }
    data.append(st.client_buf.data(), n);
    for (;;) {
      const auto step = parser.parse(std::string_view(data).substr(parsed));
      parsed += step.consumed;
      if (step.type == http::MessageParser::Step::kHead && parser.response().status != 200) {
        error = "the rig's request got status " + std::to_string(parser.response().status) + ": " +
                data;
        co_return;
      }
      if (step.type == http::MessageParser::Step::kMessageEnd) {
        if (parsed != data.size()) {
          error = "bytes after the response";
          co_return;
        }
        expected = parsed;
        co_return;
      }
      if (step.type == http::MessageParser::Step::kError) {
        error = "bad response: " + parser.error();
        co_return;
      }
      if (step.type == http::MessageParser::Step::kNeedMore) break;
    }
  }
}

// One client connection: sends `n` requests one after another, each after the previous response
// arrived completely.
asio::awaitable<void> client_loop(tcp::socket& client, std::vector<char>& buf,
                                  const std::string& request, std::size_t n, std::size_t expected,
                                  std::string& error) {
  static constexpr std::string_view kOk = "HTTP/1.1 200 ";
  for (std::size_t i = 0; i < n; ++i) {
    auto [wec, written] = co_await asio::async_write(client, asio::buffer(request), kNoThrow);
    (void)written;
    if (wec) {
      error = "client write: " + wec.message();
      co_return;
    }
    std::size_t got = 0;
    while (got < expected) {
      auto [ec, k] = co_await client.async_read_some(
          asio::buffer(buf.data() + got, buf.size() - got), kNoThrow);
      if (ec) {
        error = "client read after " + std::to_string(got) + " bytes: " + ec.message();
        co_return;
      }
      got += k;
    }
    if (got != expected || std::string_view(buf.data(), kOk.size()) != kOk) {
      error = "unexpected response: " + std::string(buf.data(), got);
      co_return;
    }
  }
}

// Runs the io_context until `body` finishes.
template <typename Awaitable>
void run_to_end(asio::io_context& io, Awaitable body, std::string& error) {
  bool done = false;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    done = true;
    if (e) error = "the client coroutine threw";
    io.stop();
  });
  io.restart();
  io.run();
  if (!done && error.empty()) error = "the rig ran out of work before the client finished";
}

}  // namespace

ProxyRig::ProxyRig(Workload workload, Path path) : state_(std::make_unique<State>()) {
  spdlog::set_level(spdlog::level::warn);  // as bench/run.py runs core and agent
  State& st = *state_;
  constexpr std::string_view kHost = "bench.localhost";

  switch (workload) {
    case Workload::kGet:
    case Workload::kGetLimits:
    case Workload::kGetQuota:
    case Workload::kGetQuotaSet:
      st.method = "GET";
      st.request =
          "GET /index.html HTTP/1.1\r\n"
          "Host: bench.localhost\r\n"
          "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
          "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
          "image/webp,*/*;q=0.8\r\n"
          "Accept-Language: en-US,en;q=0.5\r\n"
          "Accept-Encoding: gzip, deflate, br\r\n"
          "Connection: keep-alive\r\n"
          "Upgrade-Insecure-Requests: 1\r\n"
          "\r\n";
      st.response =
          "HTTP/1.1 200 OK\r\n"
          "Server: nginx/1.22.1\r\n"
          "Date: Wed, 25 Nov 2026 21:27:26 GMT\r\n"
          "Content-Type: text/html\r\n"
          "Content-Length: 612\r\n"
          "Last-Modified: Tue, 24 Nov 2026 10:00:00 GMT\r\n"
          "Connection: keep-alive\r\n"
          "ETag: \"5f0c8a3e-264\"\r\n"
          "Accept-Ranges: bytes\r\n"
          "\r\n" +
          std::string(612, 'x');
      break;
    case Workload::kPost1k: {
      st.method = "POST";
      st.origin_body_size = 1024;
      st.request =
          "POST /api/items HTTP/1.1\r\n"
          "Host: bench.localhost\r\n"
          "User-Agent: curl/7.88.1\r\n"
          "Accept: */*\r\n"
          "Content-Type: application/json\r\n"
          "Content-Length: 1024\r\n"
          "\r\n" +
          make_body(1024);
      const std::string body = R"({"id":1234,"status":"created"})";
      st.response =
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: application/json\r\n"
          "Content-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body;
      break;
    }
  }

  try {
    // The app.
    st.origin.open(tcp::v4());
    st.origin.bind(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
    st.origin.listen();
    const common::NetAddress origin_address{"127.0.0.1", st.origin.local_endpoint().port()};
    asio::co_spawn(st.io, origin_accept(st.origin, st.origin_body_size, st.response),
                   asio::detached);

    if (path == Path::kDirect) {
      st.client.connect(st.origin.local_endpoint());
      st.client.set_option(tcp::no_delay(true));
      run_to_end(st.io, calibrate(st, expected_, error_), error_);
      return;
    }

    // The agent connection: two sessions over a socketpair.
    tcp::socket core_end(st.io), agent_end(st.io);
    if (!socket_pair(st.io, core_end, agent_end, error_)) return;
    st.core_session = std::make_shared<mux::Session>(
        transport::make_tcp_conn(std::move(core_end)), mux::FrameReader(protocol::kVersion2),
        mux::Role::kCore, session_options(), "bench-agent", st.time);
    st.agent_session = std::make_shared<mux::Session>(
        transport::make_tcp_conn(std::move(agent_end)), mux::FrameReader(protocol::kVersion2),
        mux::Role::kAgent, session_options(), "core", st.time);
    asio::co_spawn(st.io, st.core_session->run(), asio::detached);
    asio::co_spawn(st.io, st.agent_session->run(), asio::detached);

    // The core: one route to that session.
    core::Config config;
    // Past the run: under callgrind a request can take longer than the default 500 ms, and a
    // watch that starts is a wall-clock event the counts must not depend on. Not reached, the
    // watch costs its deadline check, which is counted.
    config.limits.client_watch_delay = std::chrono::hours(1);
    if (workload == Workload::kGetLimits) {
      config.limits.requests_per_second = 1'000'000'000;
      config.limits.max_body_bytes = std::uint64_t{1} << 40;
    }
    st.context = std::make_unique<core::CoreContext>(std::move(config), st.metrics, st.time);
    st.front = std::make_unique<core::HttpFront>(*st.context);
    st.agent_entry = std::make_shared<core::AgentSession>();
    st.agent_entry->session = st.core_session;
    st.agent_entry->account = "default";
    st.agent_entry->agent_id = "bench";
    st.agent_entry->hostnames = {std::string(kHost)};
    st.agent_entry->locals = {origin_address.to_string()};
    core::Route route;
    route.agent = st.agent_entry;
    route.tunnel_index = 0;
    route.local = origin_address.to_string();
    if (workload == Workload::kGetQuota || workload == Workload::kGetQuotaSet) {
      // As the gateway builds a route in a core with a store.
      route.quota = st.context->quotas.get("default");
      if (workload == Workload::kGetQuotaSet) {
        route.quota->set_limits(core::QuotaLimits{1'000'000, 1'000'000'000, std::uint64_t{1} << 40,
                                                  std::uint64_t{1} << 60});
      }
      auto throttle = std::make_shared<core::Throttle>();
      throttle->quota = route.quota;
      route.throttle = std::move(throttle);
      route.filters = core::tunnel_filters(protocol::TunnelRequest{}, route.quota).value();
    }
    // As the gateway does: the route carries its per-tunnel series (counted per request).
    route.metrics = st.context->tunnel_metrics.series(std::string(kHost), "default");
    if (auto claimed = st.context->registry.claim(std::string(kHost), "default", std::move(route));
        !claimed) {
      error_ = "registry claim: " + claimed.error().message;
      return;
    }

    // The agent's side.
    st.pool = std::make_shared<agent::LocalPool>(st.io.get_executor(), st.time);
    asio::co_spawn(st.io, agent_accept(st.agent_session, st.pool, origin_address), asio::detached);

    // The client connection, served by the real HttpFront.
    tcp::socket front_end(st.io);
    if (!socket_pair(st.io, front_end, st.client, error_)) return;
    asio::co_spawn(st.io, st.front->serve(transport::make_tcp_conn(std::move(front_end)), false),
                   asio::detached);
  } catch (const std::exception& e) {
    error_ = std::string("setting up the rig: ") + e.what();
    return;
  }

  run_to_end(st.io, calibrate(st, expected_, error_), error_);
}

ProxyRig::~ProxyRig() {
  State& st = *state_;
  boost::system::error_code ignored;
  st.client.close(ignored);
  for (auto& c : st.more_clients) c->socket.close(ignored);
  st.origin.close(ignored);
  if (st.context && st.agent_entry) st.context->registry.release_agent(st.agent_entry.get());
  st.agent_entry.reset();
  if (st.core_session) st.core_session->close("bench over");
  if (st.agent_session) st.agent_session->close("bench over");
  st.core_session.reset();
  st.agent_session.reset();
  st.pool.reset();
  st.io.restart();
  st.io.run_for(std::chrono::seconds(5));
}

bool ProxyRig::run(std::size_t n) {
  if (!ok()) return false;
  State& st = *state_;
  run_to_end(st.io, client_loop(st.client, st.client_buf, st.request, n, expected_, error_),
             error_);
  return ok();
}

bool ProxyRig::run_concurrent(std::size_t clients, std::size_t per_client) {
  if (!ok()) return false;
  State& st = *state_;
  try {
    while (st.more_clients.size() + 1 < clients) {
      // Room for one whole response.
      auto extra = std::make_unique<State::Client>(st.io, std::max<std::size_t>(4096, expected_));
      if (!st.front) {
        extra->socket.connect(st.origin.local_endpoint());
        extra->socket.set_option(tcp::no_delay(true));
      } else {
        tcp::socket front_end(st.io);
        if (!socket_pair(st.io, front_end, extra->socket, error_)) return false;
        asio::co_spawn(st.io,
                       st.front->serve(transport::make_tcp_conn(std::move(front_end)), false),
                       asio::detached);
      }
      st.more_clients.push_back(std::move(extra));
    }
  } catch (const std::exception& e) {
    error_ = std::string("opening client connections: ") + e.what();
    return false;
  }
  std::size_t running = 1 + st.more_clients.size();
  const auto finished = [&](std::exception_ptr e) {
    if (e && error_.empty()) error_ = "a client coroutine threw";
    if (--running == 0) st.io.stop();
  };
  asio::co_spawn(st.io,
                 client_loop(st.client, st.client_buf, st.request, per_client, expected_, error_),
                 finished);
  for (auto& c : st.more_clients) {
    asio::co_spawn(st.io, client_loop(c->socket, c->buf, st.request, per_client, expected_, error_),
                   finished);
  }
  st.io.restart();
  st.io.run();
  if (running != 0 && error_.empty())
    error_ = "the rig ran out of work before the clients finished";
  return ok();
}

// ---- idle sessions -----------------------------------------------------------------------------

IdleSessionCost measure_idle_sessions(std::size_t count) {
  IdleSessionCost cost;
  cost.sessions = count;
  RealTimeSource time;
  asio::io_context io(1);
  std::vector<std::shared_ptr<mux::Session>> sessions;
  sessions.reserve(2 * count + 2);
  std::vector<int> peers;  // raw descriptors: no asio state until their session starts
  peers.reserve(count);

  const auto start = [&](tcp::socket socket, mux::Role role) {
    auto session = std::make_shared<mux::Session>(
        transport::make_tcp_conn(std::move(socket)), mux::FrameReader(protocol::kVersion2), role,
        session_options(), role == mux::Role::kCore ? "agent" : "core", time);
    asio::co_spawn(io, session->run(), asio::detached);
    sessions.push_back(std::move(session));
  };
  // Runs every handler that is ready, and those they make ready, until none is.
  const auto settle = [&] {
    io.restart();
    while (io.poll() > 0) {
    }
  };

  try {
    // A pair first, so that lazily created parts of asio (reactor, timer queue, per-thread
    // caches) are not charged to the sessions measured.
    {
      tcp::socket a(io), b(io);
      if (!socket_pair(io, a, b, cost.error)) return cost;
      start(std::move(a), mux::Role::kCore);
      start(std::move(b), mux::Role::kAgent);
      settle();
    }
    const HeapStats before = heap_stats();
    for (std::size_t i = 0; i < count; ++i) {
      int fds[2];
      if (!raw_socket_pair(fds, cost.error)) return cost;
      start(tcp::socket(io, tcp::v4(), fds[0]), mux::Role::kCore);
      peers.push_back(fds[1]);  // silent until its agent session starts below
    }
    settle();
    const HeapStats with_core = heap_stats();
    for (int fd : peers) start(tcp::socket(io, tcp::v4(), fd), mux::Role::kAgent);
    settle();
    const HeapStats with_both = heap_stats();
    const auto n = static_cast<double>(count);
    cost.core_bytes = static_cast<double>(with_core.live_bytes - before.live_bytes) / n;
    cost.core_blocks = static_cast<double>(with_core.live_blocks - before.live_blocks) / n;
    cost.agent_bytes = static_cast<double>(with_both.live_bytes - with_core.live_bytes) / n;
    cost.agent_blocks = static_cast<double>(with_both.live_blocks - with_core.live_blocks) / n;
  } catch (const std::exception& e) {
    cost.error = std::string("idle sessions: ") + e.what();
  }

  for (auto& s : sessions) s->close("bench over");
  sessions.clear();
  io.restart();
  io.run_for(std::chrono::seconds(5));
  return cost;
}

}  // namespace tunnel::bench

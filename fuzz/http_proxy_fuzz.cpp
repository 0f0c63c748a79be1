// Runs arbitrary bytes through the whole HTTP path, in process: a public client sends the first
// part of the input to the core's real HttpFront, which routes it over a real mux session to the
// agent's real forwarder (agent::forward_http with a LocalPool), which relays it to an app that
// answers every connection with the second part of the input. So both the public side (request
// heads, bodies, chunking, pipelining, upgrades, Expect) and the app side (response heads,
// bodies, 1xx, 101, early or missing answers) are attacker-controlled at once, as in a core
// shared by many teams.
//
// Whatever the two sides send, the exchange must end once both have sent everything and closed
// their write side: no crash, no sanitizer report, no leak, no hang (aborts if the client has
// not seen the core close its connection after 20 s, or if anything is left waiting or either
// session is still alive once the parts are torn down).
//
// Input layout: byte 0: bits 0-5 the largest piece the client writes at once (1 + 8 * value
// bytes, so that heads and chunks split across reads); bit 6 the mux protocol version (0 v1,
// 1 v2); bit 7 the app reads the request head before it answers (else it answers at once).
// Then the client's bytes, the separator "\n@@APP@@\n", and the app's bytes (none when the
// separator is missing).
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/forwarder.hpp"
#include "agent/local_pool.hpp"
#include "common/net_address.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/agents/context.hpp"
#include "core/edge/http_front.hpp"
#include "mux/session.hpp"
#include "observability/metrics.hpp"
#include "transport/conn.hpp"

namespace {

namespace asio = boost::asio;
namespace mux = tunnel::mux;
using tcp = asio::ip::tcp;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kSeparator = "\n@@APP@@\n";
constexpr std::string_view kHost = "fuzz.localhost";

void check(bool ok) {
  if (!ok) std::abort();
}

// Both ends of an AF_UNIX stream socketpair as asio TCP sockets (what Conn wants; reads, writes
// and readiness behave the same).
void socket_pair(asio::io_context& io, tcp::socket& a, tcp::socket& b) {
  int fds[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  a = tcp::socket(io, tcp::v4(), fds[0]);
  b = tcp::socket(io, tcp::v4(), fds[1]);
}

// The app: on each connection, optionally reads up to the end of a request head, writes its
// bytes, ends its write side and reads until the agent closes.
asio::awaitable<void> app_serve(tcp::socket socket, std::string_view answer, bool read_first) {
  std::vector<char> buf(16 * 1024);
  std::string seen;
  while (read_first && seen.find("\r\n\r\n") == std::string::npos && seen.size() < 64 * 1024) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec) break;
    seen.append(buf.data(), n);
  }
  auto [wec, written] = co_await asio::async_write(socket, asio::buffer(answer), kNoThrow);
  (void)written;
  boost::system::error_code ignored;
  if (!wec) socket.shutdown(tcp::socket::shutdown_send, ignored);
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec) break;
  }
}

asio::awaitable<void> app_accept(tcp::acceptor& acceptor, std::string_view answer,
                                 bool read_first) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec) co_return;
    asio::co_spawn(acceptor.get_executor(), app_serve(std::move(socket), answer, read_first),
                   asio::detached);
  }
}

// The agent's stream loop (agent/connector.cpp accept_streams, one tunnel).
asio::awaitable<void> agent_accept(std::shared_ptr<mux::Session> session,
                                   std::shared_ptr<tunnel::agent::LocalPool> pool,
                                   tunnel::common::NetAddress target) {
  for (;;) {
    auto stream = co_await session->accept();
    if (!stream) co_return;
    asio::co_spawn(session->get_executor(),
                   tunnel::agent::forward_http(std::move(stream), pool, target), asio::detached);
  }
}

// The public client: writes its bytes in pieces (each after a trip through the executor, so
// that the core reads them apart), ends its write side, and reads until the core closes.
asio::awaitable<void> client(tcp::socket& socket, std::string_view bytes, std::size_t piece,
                             bool& done) {
  while (!bytes.empty()) {
    const std::size_t n = std::min(piece, bytes.size());
    auto [ec, written] =
        co_await asio::async_write(socket, asio::buffer(bytes.data(), n), kNoThrow);
    (void)written;
    if (ec) break;  // the core closed: what it answered is still readable
    bytes.remove_prefix(n);
    co_await asio::post(socket.get_executor(), asio::use_awaitable);
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  std::vector<char> buf(16 * 1024);
  const bool verbose = std::getenv("HTTP_PROXY_FUZZ_VERBOSE") != nullptr;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec) break;
    if (verbose) std::fprintf(stderr, "client got: %.*s\n", static_cast<int>(n), buf.data());
  }
  done = true;
}

mux::Options session_options(std::uint8_t version) {
  mux::Options options;
  options.version = version;
  options.send_heartbeats = false;
  return options;
}

// The app's port: one per process, bound again for each input (SO_REUSEADDR), so that
// connections the app closed first (TIME_WAIT) do not use up ports over a long run.
unsigned short app_port = 0;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Refusals are the point here; HTTP_PROXY_FUZZ_VERBOSE=1 shows them (=debug: and more).
  const char* verbose = std::getenv("HTTP_PROXY_FUZZ_VERBOSE");
  if (verbose == nullptr) {
    spdlog::set_level(spdlog::level::off);
  } else if (std::string_view(verbose) == "debug") {
    spdlog::set_level(spdlog::level::debug);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t piece = 1 + 8 * static_cast<std::size_t>(data[0] & 0x3f);
  const std::uint8_t version =
      (data[0] & 0x40) != 0 ? tunnel::protocol::kVersion2 : tunnel::protocol::kVersion1;
  const bool app_reads_first = (data[0] & 0x80) != 0;
  std::string_view client_bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view app_bytes;
  if (const auto at = client_bytes.find(kSeparator); at != std::string_view::npos) {
    app_bytes = client_bytes.substr(at + kSeparator.size());
    client_bytes = client_bytes.substr(0, at);
  }

  tunnel::observability::Registry metrics;
  tunnel::core::Config config;
  config.limits.header_timeout = std::chrono::seconds(30);  // longer than the hang check below
  tunnel::SimulatedTimeSource time;  // no decision by time depends on how fast the fuzzer runs
  auto context = std::make_unique<tunnel::core::CoreContext>(config, metrics, time);
  auto front = std::make_unique<tunnel::core::HttpFront>(*context);
  asio::io_context io(1);

  // The app.
  tcp::acceptor app(io);
  app.open(tcp::v4());
  app.set_option(tcp::acceptor::reuse_address(true));
  const auto loopback = asio::ip::make_address_v4("127.0.0.1");
  boost::system::error_code bind_ec;
  app.bind(tcp::endpoint(loopback, app_port), bind_ec);
  if (bind_ec) app.bind(tcp::endpoint(loopback, 0));  // taken meanwhile: any free port
  app.listen();
  app_port = app.local_endpoint().port();
  const tunnel::common::NetAddress app_address{"127.0.0.1", app_port};
  asio::co_spawn(io, app_accept(app, app_bytes, app_reads_first), asio::detached);

  // The agent connection: two sessions over a socketpair.
  tcp::socket core_end(io), agent_end(io);
  socket_pair(io, core_end, agent_end);
  auto core_session = std::make_shared<mux::Session>(
      tunnel::transport::make_tcp_conn(std::move(core_end)), mux::FrameReader(version),
      mux::Role::kCore, session_options(version), "fuzz-agent", time);
  auto agent_session = std::make_shared<mux::Session>(
      tunnel::transport::make_tcp_conn(std::move(agent_end)), mux::FrameReader(version),
      mux::Role::kAgent, session_options(version), "core", time);
  for (const auto& session : {core_session, agent_session}) {
    asio::co_spawn(io, session->run(), [](std::exception_ptr e, const std::string& why) {
      check(!e);
      spdlog::debug("session ended: {}", why);
    });
  }

  // The core's route to that agent, and the agent's side.
  auto entry = std::make_shared<tunnel::core::AgentSession>();
  entry->session = core_session;
  entry->account = "default";
  entry->agent_id = "fuzz";
  entry->hostnames = {std::string(kHost)};
  entry->locals = {app_address.to_string()};
  tunnel::core::Route route;
  route.agent = entry;
  route.tunnel_index = 0;
  route.local = app_address.to_string();
  check(context->registry.claim(std::string(kHost), "default", std::move(route)).has_value());
  auto pool = std::make_shared<tunnel::agent::LocalPool>(io.get_executor(), time);
  asio::co_spawn(io, agent_accept(agent_session, pool, app_address), asio::detached);

  // The public client, served by the real HttpFront.
  tcp::socket front_end(io), client_socket(io);
  socket_pair(io, front_end, client_socket);
  asio::co_spawn(io, front->serve(tunnel::transport::make_tcp_conn(std::move(front_end)), false),
                 [](std::exception_ptr e) { check(!e); });
  bool done = false;
  asio::co_spawn(io, client(client_socket, client_bytes, piece, done),
                 [](std::exception_ptr e) { check(!e); });

  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done && std::chrono::steady_clock::now() < give_up) {
    io.run_one_until(give_up);
  }
  check(done);  // the core must close a connection whose client sent everything and ended

  // Tear down as the core and the agent do when an agent goes away.
  boost::system::error_code ignored;
  client_socket.close(ignored);
  app.close(ignored);
  context->registry.release_agent(entry.get());
  entry.reset();
  asio::post(io, [core_session, agent_session] {  // on the sessions' executor, as the core does
    core_session->close("fuzz over");
    agent_session->close("fuzz over");
  });
  std::weak_ptr<mux::Session> weak_core = core_session, weak_agent = agent_session;
  core_session.reset();
  agent_session.reset();
  pool->clear();
  pool.reset();
  io.run_for(std::chrono::seconds(20));
  check(io.stopped());                                 // nothing left waiting
  check(weak_core.expired() && weak_agent.expired());  // nothing keeps a session alive
  return 0;
}

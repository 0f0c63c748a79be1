// agentflood: many agent sessions on one tunnel-core, for the memory scenarios of bench/run.py.
//
// Every session is what a real tunnel-agent opens (src/agent/connector.cpp): TLS (or plain TCP
// with --plain) to the agent port, the v2 AUTH exchange asking for one http tunnel
// PREFIX<index>.<domain>, then a mux::Session from src/mux that answers the core's PINGs, sends
// its own heartbeats and accepts the streams the core opens. Sessions are driven by commands on
// stdin, one per line; each command prints one line of JSON on stdout when it is done:
//
//   open N                 open sessions until N are live (new indexes); {"event":"open",...}
//   close N                close the newest sessions until N are live
//   churn RATE SECONDS     for SECONDS, RATE times per second close the oldest live session and
//                          reopen it (same name: an agent reconnecting); every second close is
//                          abrupt (TCP close, no CLOSE frame), the others clean
//   hold on|off            streams the core opens are held (head read, no answer) until release;
//                          off (the default) answers each at once with a small 200
//   streams M A            M public HTTP requests to --http, spread over the first A live
//                          sessions; returns once M streams are held by the sessions (or 60 s)
//   release                answers every held stream; returns when the M clients got their 200s
//   quit (or EOF)          closes every session and exits
//
// Bounded: the process exits by itself after --max-seconds (default 1800) whatever happens.
//
//   agentflood --server 127.0.0.1:8443 --token T --http 127.0.0.1:8080 [--plain] [--prefix f]
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <istream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/async.hpp"
#include "mux/frame_io.hpp"
#include "mux/session.hpp"
#include "protocol/handshake.hpp"
#include "transport/tls.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace tunnel;

namespace {

constexpr auto use = asio::as_tuple(asio::use_awaitable);

struct Options {
  std::string server_host = "127.0.0.1";
  std::uint16_t server_port = 0;
  std::string http_host = "127.0.0.1";
  std::uint16_t http_port = 0;
  std::string token;
  std::string prefix = "flood";
  std::string domain = "localhost";
  bool plain = false;
  int concurrency = 64;  // handshakes in flight while opening
  double max_seconds = 1800;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

void emit(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

struct Agent {
  std::size_t index = 0;
  std::shared_ptr<mux::Session> session;
  bool ended = false;
};

class Flood {
 public:
  Flood(asio::io_context& io, Options options)
      : io_(io),
        opt_(std::move(options)),
        release_(io.get_executor()),
        held_changed_(io.get_executor()),
        ended_(io.get_executor()) {}

  bool init(std::string& error) {
    if (opt_.plain) return true;
    transport::ClientTlsOptions t;
    t.insecure = true;  // a load tool against the benchmark's own core
    auto tls = transport::make_client_tls(t);
    if (!tls) {
      error = tls.error().message;
      return false;
    }
    tls_ = std::move(tls).value();
    return true;
  }

  asio::awaitable<void> commands() {
    asio::posix::stream_descriptor in(io_, ::dup(STDIN_FILENO));
    asio::streambuf buf;
    for (;;) {
      auto [ec, n] = co_await asio::async_read_until(in, buf, '\n', use);
      std::string line;
      if (ec) {
        if (buf.size() == 0) break;
        line.assign(static_cast<const char*>(buf.data().data()), buf.size());
        buf.consume(buf.size());
      } else {
        line.assign(static_cast<const char*>(buf.data().data()), n - 1);
        buf.consume(n);
      }
      std::istringstream words(line);
      std::string cmd;
      words >> cmd;
      if (cmd.empty()) continue;
      if (cmd == "quit") break;
      if (cmd == "open") {
        std::size_t count = 0;
        words >> count;
        co_await open(count);
      } else if (cmd == "close") {
        std::size_t count = 0;
        words >> count;
        co_await close_down_to(count);
      } else if (cmd == "churn") {
        double rate = 0;
        double secs = 0;
        words >> rate >> secs;
        co_await churn(rate, secs);
      } else if (cmd == "hold") {
        std::string v;
        words >> v;
        hold_ = v == "on";
        emit(std::string("{\"event\":\"hold\",\"hold\":") + (hold_ ? "true" : "false") + "}");
      } else if (cmd == "streams") {
        std::size_t m = 0;
        std::size_t a = 1;
        words >> m >> a;
        co_await streams(m, std::max<std::size_t>(a, 1));
      } else if (cmd == "release") {
        co_await release();
      } else {
        emit("{\"event\":\"error\",\"error\":\"unknown command " + json_escape(cmd) + "\"}");
      }
    }
    co_await close_down_to(0);
    emit("{\"event\":\"quit\"}");
    io_.stop();
  }

 private:
  // One session: dial, AUTH (v2, one http tunnel), then a mux::Session until it ends.
  asio::awaitable<bool> open_one(std::size_t index, std::string& error) {
    auto ex = io_.get_executor();
    const transport::ClientTls* tls = opt_.plain ? nullptr : &tls_;
    auto dialed = co_await transport::dial(ex, opt_.server_host, opt_.server_port, tls, 10s);
    if (!dialed) {
      error = std::move(dialed).error().message;
      co_return false;
    }
    auto conn = std::move(dialed).value();
    protocol::AuthRequest request;
    request.token = opt_.token;
    request.agent_id = opt_.prefix + "-" + std::to_string(index);
    request.version = "agentflood";
    request.capabilities = {"http"};
    request.protocol_versions = {protocol::kVersion2, protocol::kVersion1};
    request.initial_window = 256 * 1024;
    protocol::TunnelRequest t;
    t.type = "http";
    t.subdomain = opt_.prefix + std::to_string(index);
    t.local = "agentflood";
    request.tunnels.push_back(t);
    const std::string body = protocol::serialize(request);
    transport::error_code ec;
    co_await mux::write_frame(*conn, protocol::kVersion1, protocol::FrameType::kAuth, 0, 0,
                              mux::as_bytes(body), ec);
    if (ec) {
      error = "sending AUTH: " + ec.message();
      co_return false;
    }
    mux::FrameReader reader(protocol::kVersion1);
    mux::Frame frame;
    auto got = co_await with_timeout(reader.next(*conn, frame, ec), 10s);
    if (!got || !*got) {
      error = !got ? "no AUTH reply within 10 s" : got->error().message;
      co_return false;
    }
    if (frame.header.frame_type() != protocol::FrameType::kAuth ||
        !frame.header.has(protocol::flags::kAck)) {
      error = "unexpected reply to AUTH";
      co_return false;
    }
    auto parsed = protocol::parse_auth_response(mux::as_text(frame.payload));
    if (!parsed) {
      error = "bad AUTH reply: " + parsed.error().message;
      co_return false;
    }
    const auto& reply = parsed.value();
    if (!reply.success) {
      error = "refused: " + reply.error;
      co_return false;
    }
    if (!reply.tunnels.empty() && !reply.tunnels[0].ok) {
      error = "tunnel refused: " + reply.tunnels[0].error;
      co_return false;
    }
    mux::Options options;
    options.version = reply.protocol_version;
    options.initial_window = request.initial_window;
    if (reply.initial_window != 0) options.peer_initial_window = reply.initial_window;
    if (reply.heartbeat_interval_ms != 0) {
      options.heartbeat_interval = std::chrono::milliseconds(reply.heartbeat_interval_ms);
      options.heartbeat_timeout = std::max<std::chrono::milliseconds>(
          options.heartbeat_timeout, 3 * options.heartbeat_interval);
    }
    reader.set_version(reply.protocol_version);
    auto agent = std::make_shared<Agent>();
    agent->index = index;
    agent->session = std::make_shared<mux::Session>(std::move(conn), std::move(reader),
                                                    mux::Role::kAgent, options, "core", time_);
    live_[index] = agent;
    asio::co_spawn(ex, serve(agent), asio::detached);
    co_return true;
  }

  asio::awaitable<void> serve(std::shared_ptr<Agent> agent) {
    using namespace asio::experimental::awaitable_operators;
    try {
      co_await (agent->session->run() && accept_streams(agent->session));
    } catch (const std::exception&) {
      agent->session->close("agentflood: session failed", false);
    }
    agent->ended = true;
    auto it = live_.find(agent->index);
    if (it != live_.end() && it->second == agent) {
      live_.erase(it);
      ++lost_;  // ended without us closing it
    }
    ended_.notify();
  }

  asio::awaitable<void> accept_streams(std::shared_ptr<mux::Session> session) {
    for (;;) {
      auto stream = co_await session->accept();
      if (!stream) co_return;
      asio::co_spawn(session->get_executor(), answer(std::move(stream)), asio::detached);
    }
  }

  // Reads the request (the core ends its side after the head of a GET), holds it while hold mode
  // is on, then answers 200.
  asio::awaitable<void> answer(std::shared_ptr<mux::Stream> stream) {
    std::array<char, 4096> buf{};
    transport::error_code ec;
    for (;;) {
      const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
      if (ec) co_return;
      if (n == 0) break;
    }
    if (hold_) {
      ++held_;
      held_changed_.notify();
      const std::uint64_t generation = release_generation_;
      while (release_generation_ == generation) co_await release_.wait();
      --held_;
    }
    static constexpr std::string_view kResponse =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
    co_await stream->write(mux::as_bytes(kResponse), ec, true);
  }

  asio::awaitable<void> open(std::size_t target) {
    const auto start = Clock::now();
    std::size_t attempts = target > live_.size() + opening_ ? target - live_.size() : 0;
    std::size_t ok = 0;
    std::size_t failed = 0;
    std::string first_error;
    std::size_t running = 0;
    Signal done(io_.get_executor());
    auto worker = [&]() -> asio::awaitable<void> {
      while (attempts > 0) {
        --attempts;
        const std::size_t index = next_index_++;
        std::string error;
        if (co_await open_one(index, error)) {
          ++ok;
        } else {
          ++failed;
          if (first_error.empty()) first_error = error;
        }
      }
      --running;
      done.notify();
    };
    const std::size_t workers = std::min<std::size_t>(static_cast<std::size_t>(opt_.concurrency),
                                                      std::max<std::size_t>(attempts, 1));
    running = workers;
    for (std::size_t i = 0; i < workers; ++i) asio::co_spawn(io_, worker(), asio::detached);
    while (running > 0) co_await done.wait();
    emit("{\"event\":\"open\",\"live\":" + std::to_string(live_.size()) +
         ",\"opened\":" + std::to_string(ok) + ",\"failed\":" + std::to_string(failed) +
         ",\"lost\":" + std::to_string(lost_) +
         ",\"seconds\":" + std::to_string(seconds_since(start)) + ",\"first_error\":\"" +
         json_escape(first_error) + "\"}");
  }

  void close_agent(const std::shared_ptr<Agent>& agent, bool clean) {
    live_.erase(agent->index);
    agent->session->close("agentflood: closing", clean);
  }

  asio::awaitable<void> close_down_to(std::size_t target) {
    const auto start = Clock::now();
    std::size_t closed = 0;
    std::vector<std::shared_ptr<Agent>> closing;
    while (live_.size() > target) {
      auto it = std::prev(live_.end());
      closing.push_back(it->second);
      close_agent(it->second, true);
      ++closed;
    }
    // Wait (bounded) until their sessions have really ended.
    const auto deadline = Clock::now() + 15s;
    while (Clock::now() < deadline &&
           std::any_of(closing.begin(), closing.end(), [](auto& a) { return !a->ended; })) {
      co_await ended_.wait_for(100ms);
    }
    emit("{\"event\":\"close\",\"live\":" + std::to_string(live_.size()) + ",\"closed\":" +
         std::to_string(closed) + ",\"seconds\":" + std::to_string(seconds_since(start)) + "}");
  }

  asio::awaitable<void> churn(double rate, double secs) {
    const auto start = Clock::now();
    const auto end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
    const auto period =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
    std::size_t closed = 0;
    std::size_t reopened = 0;
    std::size_t failed = 0;
    std::size_t pending = 0;
    std::string first_error;
    Signal changed(io_.get_executor());
    asio::steady_timer tick(io_);
    auto reopen = [&](std::size_t index) -> asio::awaitable<void> {
      std::string error;
      if (co_await open_one(index, error)) {
        ++reopened;
      } else {
        ++failed;
        if (first_error.empty()) first_error = error;
      }
      --pending;
      changed.notify();
    };
    std::deque<std::size_t> order;  // oldest first
    for (const auto& [index, agent] : live_) order.push_back(index);
    for (std::uint64_t i = 0;; ++i) {
      const auto due = start + static_cast<long long>(i) * period;
      if (due >= end) break;
      tick.expires_at(due);
      co_await tick.async_wait(use);
      if (order.empty()) break;
      const std::size_t index = order.front();
      order.pop_front();
      auto it = live_.find(index);
      if (it != live_.end()) {
        close_agent(it->second, i % 2 == 0);
        ++closed;
      }
      ++pending;
      asio::co_spawn(io_, reopen(index), asio::detached);
      order.push_back(index);
    }
    const auto deadline = Clock::now() + 20s;
    while (pending > 0 && Clock::now() < deadline) co_await changed.wait_for(100ms);
    emit("{\"event\":\"churn\",\"live\":" + std::to_string(live_.size()) +
         ",\"closed\":" + std::to_string(closed) + ",\"reopened\":" + std::to_string(reopened) +
         ",\"failed\":" + std::to_string(failed) + ",\"lost\":" + std::to_string(lost_) +
         ",\"seconds\":" + std::to_string(seconds_since(start)) + ",\"first_error\":\"" +
         json_escape(first_error) + "\"}");
  }

  // One public client: a GET with its own TCP connection, read to EOF.
  asio::awaitable<void> client(std::string host, std::shared_ptr<std::size_t> connecting) {
    tcp::socket sock(io_);
    auto [ec] = co_await sock.async_connect(
        tcp::endpoint(asio::ip::make_address(opt_.http_host), opt_.http_port), use);
    --*connecting;
    connect_changed_->notify();
    if (ec) {
      ++client_errors_;
      if (client_first_error_.empty()) client_first_error_ = "connect: " + ec.message();
      ++clients_done_;
      clients_changed_->notify();
      co_return;
    }
    ++clients_connected_;
    const std::string req = "GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(req), use);
    (void)wn;
    std::string response;
    if (!wec) {
      std::array<char, 4096> buf{};
      for (;;) {
        auto [rec, n] = co_await sock.async_read_some(asio::buffer(buf), use);
        response.append(buf.data(), n);
        if (rec) break;
      }
    }
    if (response.starts_with("HTTP/1.1 200")) {
      ++clients_ok_;
    } else {
      ++client_errors_;
      if (client_first_error_.empty()) {
        client_first_error_ =
            wec ? "write: " + wec.message() : "answer: " + response.substr(0, response.find('\r'));
      }
    }
    ++clients_done_;
    clients_changed_->notify();
  }

  asio::awaitable<void> streams(std::size_t count, std::size_t over) {
    const auto start = Clock::now();
    std::vector<std::size_t> targets;
    for (const auto& [index, agent] : live_) {
      if (targets.size() >= over) break;
      targets.push_back(index);
    }
    if (targets.empty()) {
      emit("{\"event\":\"streams\",\"error\":\"no live session\"}");
      co_return;
    }
    clients_total_ = count;
    clients_ok_ = clients_done_ = client_errors_ = clients_connected_ = 0;
    client_first_error_.clear();
    clients_changed_ = std::make_unique<Signal>(io_.get_executor());
    connect_changed_ = std::make_unique<Signal>(io_.get_executor());
    const std::size_t held_before = held_;
    auto connecting = std::make_shared<std::size_t>(0);
    for (std::size_t i = 0; i < count; ++i) {
      // At most 256 connects in flight: the listen backlog is finite.
      while (*connecting >= 256) co_await connect_changed_->wait_for(50ms);
      ++*connecting;
      const std::string host =
          opt_.prefix + std::to_string(targets[i % targets.size()]) + "." + opt_.domain;
      asio::co_spawn(io_, client(host, connecting), asio::detached);
    }
    const auto deadline = Clock::now() + 60s;
    while (held_ - held_before + clients_done_ < count && Clock::now() < deadline) {
      co_await held_changed_.wait_for(100ms);
    }
    emit("{\"event\":\"streams\",\"clients\":" + std::to_string(count) + ",\"over_sessions\":" +
         std::to_string(targets.size()) + ",\"connected\":" + std::to_string(clients_connected_) +
         ",\"held\":" + std::to_string(held_) + ",\"client_errors\":" +
         std::to_string(client_errors_) + ",\"seconds\":" + std::to_string(seconds_since(start)) +
         ",\"first_error\":\"" + json_escape(client_first_error_) + "\"}");
  }

  asio::awaitable<void> release() {
    const auto start = Clock::now();
    const std::size_t held = held_;
    ++release_generation_;
    release_.notify();
    const auto deadline = Clock::now() + 60s;
    while (clients_changed_ && clients_done_ < clients_total_ && Clock::now() < deadline) {
      co_await clients_changed_->wait_for(100ms);
    }
    emit("{\"event\":\"release\",\"released\":" + std::to_string(held) + ",\"clients_ok\":" +
         std::to_string(clients_ok_) + ",\"client_errors\":" + std::to_string(client_errors_) +
         ",\"unfinished\":" + std::to_string(clients_total_ - clients_done_) +
         ",\"seconds\":" + std::to_string(seconds_since(start)) + ",\"first_error\":\"" +
         json_escape(client_first_error_) + "\"}");
  }

  asio::io_context& io_;
  RealTimeSource time_;
  Options opt_;
  transport::ClientTls tls_;
  std::map<std::size_t, std::shared_ptr<Agent>> live_;
  std::size_t next_index_ = 0;
  std::size_t opening_ = 0;
  std::size_t lost_ = 0;

  bool hold_ = false;
  std::size_t held_ = 0;
  std::uint64_t release_generation_ = 0;
  Signal release_;
  Signal held_changed_;
  Signal ended_;

  std::size_t clients_total_ = 0;
  std::size_t clients_ok_ = 0;
  std::size_t clients_done_ = 0;
  std::size_t clients_connected_ = 0;
  std::size_t client_errors_ = 0;
  std::string client_first_error_;
  std::unique_ptr<Signal> clients_changed_;
  std::unique_ptr<Signal> connect_changed_;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "agentflood: %s\n"
               "usage: agentflood --server HOST:PORT --token TOKEN [--http HOST:PORT] [--plain]\n"
               "                  [--prefix NAME] [--domain localhost] [--concurrency 64]\n"
               "                  [--max-seconds 1800]   (commands on stdin, see the source)\n",
               msg.c_str());
  std::exit(2);
}

void split_host_port(const std::string& s, std::string& host, std::uint16_t& port) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) usage("expected HOST:PORT, got " + s);
  host = s.substr(0, colon);
  port = static_cast<std::uint16_t>(std::stoi(s.substr(colon + 1)));
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + a);
      return argv[++i];
    };
    try {
      if (a == "--server")
        split_host_port(value(), o.server_host, o.server_port);
      else if (a == "--http")
        split_host_port(value(), o.http_host, o.http_port);
      else if (a == "--token")
        o.token = value();
      else if (a == "--prefix")
        o.prefix = value();
      else if (a == "--domain")
        o.domain = value();
      else if (a == "--plain")
        o.plain = true;
      else if (a == "--concurrency")
        o.concurrency = std::max(1, std::stoi(value()));
      else if (a == "--max-seconds")
        o.max_seconds = std::stod(value());
      else if (a == "-h" || a == "--help")
        usage("many agent sessions on one core");
      else
        usage("unknown argument " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.server_port == 0 || o.token.empty()) usage("--server and --token are required");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  asio::io_context io(1);
  Flood flood(io, options);
  std::string error;
  if (!flood.init(error)) {
    std::fprintf(stderr, "agentflood: %s\n", error.c_str());
    return 1;
  }
  asio::steady_timer bound(io, std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(options.max_seconds)));
  bound.async_wait([](boost::system::error_code ec) {
    if (!ec) {
      emit("{\"event\":\"error\",\"error\":\"--max-seconds reached\"}");
      std::_Exit(3);
    }
  });
  asio::co_spawn(io, flood.commands(), [&](std::exception_ptr e) {
    bound.cancel();
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        emit(std::string("{\"event\":\"error\",\"error\":\"") + json_escape(ex.what()) + "\"}");
      }
    }
  });
  io.run();
  // Sessions still flushing their CLOSE frames are abandoned: the process is ending.
  std::_Exit(0);
}

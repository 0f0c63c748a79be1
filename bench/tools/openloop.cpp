// openloop: an open-loop, fixed-rate HTTP/1.1 load generator with latency percentiles.
//
// wrk is closed-loop (a connection sends its next request only after the previous answer, so a
// stall delays the requests that would have suffered it: coordinated omission), and h2load's
// --rps reports no percentiles. openloop fixes the schedule first: request i is due at
// t0 + i / rate, whatever happened before. N keep-alive connections (one request in flight each,
// no pipelining) take the next due request as soon as they are free; when every connection is
// busy, due requests wait. Latency is measured from the request's SCHEDULED time to the last
// byte of its response, so time spent waiting behind a stall counts, as it would for real users.
//
//   openloop --port 8080 --host-header app.localhost --rate 2000 --duration 10 --connections 100
//
// Prints one JSON object on stdout: scheduled/sent/ok/errors, the achieved rate, latency
// percentiles (us) from the schedule, how late the generator itself sent (send_lag: when it is
// large, the generator, the machine or the number of connections was the bottleneck, not only
// the path), and the service time (service_*: from the actual send to the last response byte,
// what a closed-loop tool would report).
// Bounded in time: scheduling stops after --duration; whatever is unfinished --timeout later is
// counted as an error (timeout) and the tool exits.
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto use = asio::as_tuple(asio::use_awaitable);

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string host_header = "localhost";
  std::string path = "/";
  double rate = 100;     // requests per second, aggregate
  double duration = 10;  // seconds of scheduling
  int connections = 0;   // 0: rate / 20, at least 1, at most 512
  double timeout = 5;    // seconds a request may take before it counts as an error
};

struct Stats {
  std::uint64_t scheduled = 0;  // due within the duration
  std::uint64_t sent = 0;
  std::uint64_t ok = 0;          // 2xx, whole body read
  std::uint64_t err_status = 0;  // non-2xx answers
  std::uint64_t err_connect = 0;
  std::uint64_t err_io = 0;       // read/write failures, malformed responses, closes
  std::uint64_t err_timeout = 0;  // no complete answer within --timeout
  std::uint64_t unsent = 0;       // due, but no connection was free before the end
  std::uint64_t reconnects = 0;
  std::string first_error;                 // what went wrong first, for the report
  std::vector<std::uint32_t> latency_us;   // scheduled time -> last response byte, ok only
  std::vector<std::uint32_t> send_lag_us;  // scheduled time -> request written
  std::vector<std::uint32_t> service_us;   // request written -> last response byte, ok only
};

struct Run {
  Options opt;
  Stats stats;
  tcp::endpoint endpoint;
  std::string request;
  Clock::time_point t0;
  Clock::time_point end;       // no request is due at or after this
  Clock::time_point deadline;  // hard stop
  std::uint64_t next = 0;      // index of the next request to take
  std::chrono::nanoseconds period{};
  int running = 0;                          // connection coroutines still running
  asio::steady_timer* hard_stop = nullptr;  // cancelled when the last one ends
};

std::uint32_t micros(Clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return static_cast<std::uint32_t>(std::clamp<long long>(us, 0, 0xffffffffLL));
}

// Parses "HTTP/1.x NNN ..." and the framing headers of a response head. Returns false when the
// head is not a valid HTTP/1.x response.
struct Head {
  int status = 0;
  long long content_length = -1;
  bool chunked = false;
  bool close = false;
};

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool parse_head(std::string_view head, Head& out) {
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1.") return false;
  if (std::from_chars(head.data() + 9, head.data() + 12, out.status).ec != std::errc{})
    return false;
  bool keep_alive = false;
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const std::size_t next = head.find("\r\n", pos + 2);
    const std::string_view line = head.substr(
        pos + 2, next == std::string_view::npos ? std::string_view::npos : next - pos - 2);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      const std::string_view value = trim(line.substr(colon + 1));
      if (iequals_prefix(line, "content-length:")) {
        long long v = 0;
        if (std::from_chars(value.data(), value.data() + value.size(), v).ec != std::errc{}) {
          return false;
        }
        out.content_length = v;
      } else if (iequals_prefix(line, "transfer-encoding:")) {
        out.chunked = value.find("chunked") != std::string_view::npos;
      } else if (iequals_prefix(line, "connection:")) {
        out.close = value.find("close") != std::string_view::npos;
        keep_alive = value.find("keep-alive") != std::string_view::npos;
      }
    }
    pos = next;
  }
  if (head[7] == '0' && !keep_alive) out.close = true;  // HTTP/1.0 closes by default
  return true;
}

// Reads one response (head + body) from `sock`; `buf` keeps bytes read past it. Returns the
// status, or 0 on an I/O or framing error.
asio::awaitable<int> read_response(tcp::socket& sock, asio::streambuf& buf, bool& must_close) {
  auto [ec, n] = co_await asio::async_read_until(sock, buf, "\r\n\r\n", use);
  if (ec) co_return 0;
  Head head;
  const std::string_view all(static_cast<const char*>(buf.data().data()), buf.size());
  if (!parse_head(all.substr(0, n), head)) co_return 0;
  buf.consume(n);
  must_close = head.close;
  const bool no_body = head.status / 100 == 1 || head.status == 204 || head.status == 304;
  if (no_body) co_return head.status;
  if (head.chunked) {
    for (;;) {
      auto [e1, m] = co_await asio::async_read_until(sock, buf, "\r\n", use);
      if (e1) co_return 0;
      const std::string_view line(static_cast<const char*>(buf.data().data()), m - 2);
      std::size_t size = 0;
      if (std::from_chars(line.data(), line.data() + line.size(), size, 16).ec != std::errc{}) {
        co_return 0;
      }
      buf.consume(m);
      if (size == 0) {
        // Trailers (none expected) end with an empty line.
        for (;;) {
          auto [e2, t] = co_await asio::async_read_until(sock, buf, "\r\n", use);
          if (e2) co_return 0;
          buf.consume(t);
          if (t == 2) co_return head.status;
        }
      }
      if (buf.size() < size + 2) {
        auto [e3, r] = co_await asio::async_read(
            sock, buf, asio::transfer_exactly(size + 2 - buf.size()), use);
        if (e3) co_return 0;
        (void)r;
      }
      buf.consume(size + 2);
    }
  }
  if (head.content_length < 0) {
    // Close-delimited: read to EOF.
    for (;;) {
      auto [e4, r] = co_await asio::async_read(sock, buf, asio::transfer_at_least(1), use);
      buf.consume(buf.size());
      if (e4 == asio::error::eof) break;
      if (e4) co_return 0;
      (void)r;
    }
    must_close = true;
    co_return head.status;
  }
  const auto want = static_cast<std::size_t>(head.content_length);
  if (buf.size() < want) {
    auto [e5, r] =
        co_await asio::async_read(sock, buf, asio::transfer_exactly(want - buf.size()), use);
    if (e5) co_return 0;
    (void)r;
  }
  buf.consume(want);
  co_return head.status;
}

void note_error(Run& run, const std::string& what) {
  if (run.stats.first_error.empty()) run.stats.first_error = what;
}

asio::awaitable<bool> connect(Run& run, tcp::socket& sock) {
  asio::steady_timer timer(sock.get_executor());
  timer.expires_after(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run.opt.timeout)));
  bool timed_out = false;
  timer.async_wait([&](boost::system::error_code ec) {
    if (!ec) {
      timed_out = true;
      sock.close();
    }
  });
  auto [ec] = co_await sock.async_connect(run.endpoint, use);
  timer.cancel();
  if (ec || timed_out) {
    note_error(run, timed_out ? std::string("connect: timed out") : "connect: " + ec.message());
    co_return false;
  }
  boost::system::error_code ignored;
  sock.set_option(tcp::no_delay(true), ignored);
  co_return true;
}

// One keep-alive connection: takes due requests in schedule order until the schedule ends.
asio::awaitable<void> connection(Run& run) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket sock(ex);
  asio::streambuf buf;
  asio::steady_timer pace(ex);
  asio::steady_timer watchdog(ex);
  bool connected = co_await connect(run, sock);
  bool first = true;
  for (;;) {
    const std::uint64_t i = run.next;
    const Clock::time_point due = run.t0 + i * run.period;
    if (due >= run.end || Clock::now() >= run.deadline) break;
    ++run.next;
    if (Clock::now() < due) {
      pace.expires_at(due);
      co_await pace.async_wait(use);
    }
    if (!connected) {
      if (!first) ++run.stats.reconnects;
      first = false;
      sock = tcp::socket(ex);
      buf.consume(buf.size());
      connected = co_await connect(run, sock);
      if (!connected) {
        ++run.stats.err_connect;
        continue;  // this request is lost; the next due one tries again
      }
    }
    first = false;
    // The request must complete by due + timeout; past that the socket is closed.
    const Clock::time_point limit =
        std::min(run.deadline,
                 std::max(Clock::now(), due) + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(run.opt.timeout)));
    bool timed_out = false;
    watchdog.expires_at(limit);
    watchdog.async_wait([&](boost::system::error_code ec) {
      if (!ec) {
        timed_out = true;
        boost::system::error_code ignored;
        sock.close(ignored);
      }
    });
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(run.request), use);
    (void)wn;
    if (wec) {
      note_error(run, timed_out ? std::string("write: timed out") : "write: " + wec.message());
      watchdog.cancel();
      ++(timed_out ? run.stats.err_timeout : run.stats.err_io);
      connected = false;
      continue;
    }
    ++run.stats.sent;
    const auto written = Clock::now();
    run.stats.send_lag_us.push_back(micros(written - due));
    bool must_close = false;
    const int status = co_await read_response(sock, buf, must_close);
    const auto done = Clock::now();
    watchdog.cancel();
    if (status == 0) {
      note_error(run, timed_out ? "no complete response within the timeout"
                                : "read: connection closed or response not understood");
      ++(timed_out ? run.stats.err_timeout : run.stats.err_io);
      connected = false;
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    if (status / 100 == 2) {
      ++run.stats.ok;
      run.stats.latency_us.push_back(micros(done - due));
      run.stats.service_us.push_back(micros(done - written));
    } else {
      note_error(run, "status " + std::to_string(status));
      ++run.stats.err_status;
    }
    if (must_close) {
      boost::system::error_code ignored;
      sock.close(ignored);
      connected = false;
    }
  }
  boost::system::error_code ignored;
  sock.close(ignored);
  if (--run.running == 0 && run.hard_stop != nullptr) run.hard_stop->cancel();
}

double percentile(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(
      stderr,
      "openloop: %s\n"
      "usage: openloop --port PORT [--host 127.0.0.1] [--host-header NAME] [--path /]\n"
      "                --rate REQ_PER_S --duration SECONDS [--connections N] [--timeout S]\n",
      msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + std::string(a)).c_str());
      return argv[++i];
    };
    try {
      if (a == "--host")
        o.host = value();
      else if (a == "--port")
        o.port = static_cast<std::uint16_t>(std::stoi(value()));
      else if (a == "--host-header")
        o.host_header = value();
      else if (a == "--path")
        o.path = value();
      else if (a == "--rate")
        o.rate = std::stod(value());
      else if (a == "--duration")
        o.duration = std::stod(value());
      else if (a == "--connections")
        o.connections = std::stoi(value());
      else if (a == "--timeout")
        o.timeout = std::stod(value());
      else if (a == "-h" || a == "--help")
        usage("open-loop fixed-rate HTTP/1.1 load");
      else
        usage(("unknown argument " + std::string(a)).c_str());
    } catch (const std::logic_error&) {
      usage(("bad value for " + std::string(a)).c_str());
    }
  }
  if (o.port == 0) usage("--port is required");
  if (!(o.rate > 0) || !(o.duration > 0) || !(o.timeout > 0))
    usage("rate, duration and timeout must be > 0");
  if (o.connections <= 0) o.connections = std::clamp(static_cast<int>(o.rate / 20), 1, 512);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Run run;
  run.opt = parse(argc, argv);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  run.endpoint = tcp::endpoint(asio::ip::make_address(run.opt.host), run.opt.port);
  run.request = "GET " + run.opt.path + " HTTP/1.1\r\nHost: " + run.opt.host_header +
                "\r\nUser-Agent: openloop\r\nAccept: */*\r\n\r\n";
  run.period = std::chrono::nanoseconds(static_cast<long long>(1e9 / run.opt.rate));
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run.opt.duration));
  const auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run.opt.timeout));
  run.stats.latency_us.reserve(static_cast<std::size_t>(run.opt.rate * run.opt.duration) + 16);
  run.stats.send_lag_us.reserve(run.stats.latency_us.capacity());
  run.stats.service_us.reserve(run.stats.latency_us.capacity());

  asio::io_context io(1);
  // Connections are opened before t0 (below, 100 ms of slack) so connect time is not counted.
  run.t0 = Clock::now() + 200ms;
  run.end = run.t0 + duration;
  run.deadline = run.end + timeout;
  // Hard stop: whatever still runs shortly after the deadline is abandoned. The timer is
  // cancelled when the last connection ends, so io.run() returns then.
  asio::steady_timer stop(io, run.deadline + 1s);
  stop.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  run.hard_stop = &stop;
  run.running = run.opt.connections;
  for (int c = 0; c < run.opt.connections; ++c) {
    asio::co_spawn(io, connection(run), asio::detached);
  }
  io.run_for(duration + timeout + 5s);

  const std::uint64_t total_due = static_cast<std::uint64_t>(
      std::ceil(std::chrono::duration<double>(duration).count() * run.opt.rate));
  run.stats.scheduled = total_due;
  const std::uint64_t finished =
      run.stats.ok + run.stats.err_status + run.stats.err_io + run.stats.err_timeout;
  // Taken but never answered (the hard stop) also counts as timeouts.
  const std::uint64_t taken = std::min<std::uint64_t>(run.next, total_due);
  if (run.stats.sent > finished) run.stats.err_timeout += run.stats.sent - finished;
  run.stats.unsent = total_due > taken ? total_due - taken : 0;

  auto& lat = run.stats.latency_us;
  auto& lag = run.stats.send_lag_us;
  auto& svc = run.stats.service_us;
  std::sort(lat.begin(), lat.end());
  std::sort(lag.begin(), lag.end());
  std::sort(svc.begin(), svc.end());
  double mean = 0;
  for (auto v : lat) mean += v;
  if (!lat.empty()) mean /= static_cast<double>(lat.size());
  const std::uint64_t errors = run.stats.err_status + run.stats.err_connect + run.stats.err_io +
                               run.stats.err_timeout + run.stats.unsent;
  std::printf(
      "{\"target_rps\":%.3f,\"duration_s\":%.3f,\"connections\":%d,\"scheduled\":%llu,"
      "\"sent\":%llu,\"ok\":%llu,\"errors\":%llu,\"err_status\":%llu,\"err_connect\":%llu,"
      "\"err_io\":%llu,\"err_timeout\":%llu,\"unsent\":%llu,\"reconnects\":%llu,"
      "\"achieved_rps\":%.1f,\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"p999\":%.0f,\"max\":%.0f,"
      "\"mean\":%.1f,\"send_lag_p50\":%.0f,\"send_lag_p99\":%.0f,\"send_lag_max\":%.0f,"
      "\"service_p50\":%.0f,\"service_p99\":%.0f,\"first_error\":\"%s\"}\n",
      run.opt.rate, run.opt.duration, run.opt.connections,
      static_cast<unsigned long long>(run.stats.scheduled),
      static_cast<unsigned long long>(run.stats.sent),
      static_cast<unsigned long long>(run.stats.ok), static_cast<unsigned long long>(errors),
      static_cast<unsigned long long>(run.stats.err_status),
      static_cast<unsigned long long>(run.stats.err_connect),
      static_cast<unsigned long long>(run.stats.err_io),
      static_cast<unsigned long long>(run.stats.err_timeout),
      static_cast<unsigned long long>(run.stats.unsent),
      static_cast<unsigned long long>(run.stats.reconnects),
      static_cast<double>(run.stats.ok) / run.opt.duration, percentile(lat, 50),
      percentile(lat, 90), percentile(lat, 99), percentile(lat, 99.9),
      lat.empty() ? 0.0 : lat.back(), mean, percentile(lag, 50), percentile(lag, 99),
      lag.empty() ? 0.0 : lag.back(), percentile(svc, 50), percentile(svc, 99),
      run.stats.first_error.c_str());
  return 0;
}

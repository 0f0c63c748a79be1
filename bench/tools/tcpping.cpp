// tcpping: one-connection TCP round trips (the pattern of a database or an RPC client: send a
// small request, wait for the small answer, repeat) and the echo server it measures against.
//
//   tcpping --echo --port 9000                        # echo every byte back (a thread per peer)
//   tcpping --port 9000 --size 64 --duration 5        # round trips for 5 s on one connection
//   tcpping --port 9000 --size 64 --count 20000 --connections 4
//
// Each of --connections connections (default 1) runs its own closed loop on its own thread:
// write --size bytes, read exactly --size bytes back, repeat, for --count round trips or
// --duration seconds, whichever ends first (both bounded). TCP_NODELAY on every socket. The
// first --warmup round trips of each connection are not measured.
//
// Prints one JSON object on stdout: round_trips, seconds, rate (round trips per second over all
// connections), and the round-trip time percentiles in microseconds (p50, p90, p99, p999, max).
// Exit status 1 when a connection fails or an answer differs from what was sent, 2 on bad
// arguments.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool read_all(int fd, std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::recv(fd, data, size, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

sockaddr_in loopback(std::uint16_t port, const std::string& host) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "tcpping: --host %s is not an IPv4 address\n", host.c_str());
    std::exit(2);
  }
  return addr;
}

int serve_echo(const std::string& host, std::uint16_t port) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr = loopback(port, host);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 128) != 0) {
    std::fprintf(stderr, "tcpping: cannot listen on %s:%u: %s\n", host.c_str(), port,
                 std::strerror(errno));
    return 2;
  }
  std::printf("{\"listening\": %u}\n", port);
  std::fflush(stdout);
  for (;;) {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) {
      continue;
    }
    no_delay(fd);
    std::thread([fd] {
      std::vector<std::uint8_t> buf(64 * 1024);
      for (;;) {
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n <= 0 || !write_all(fd, buf.data(), static_cast<std::size_t>(n))) {
          break;
        }
      }
      ::close(fd);
    }).detach();
  }
}

struct Loop {
  std::vector<double> rtt_us;
  bool failed = false;
  std::string error;
};

void run_loop(const sockaddr_in& addr, std::size_t size, std::uint64_t count, std::uint64_t warmup,
              Clock::time_point until, Loop& out) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    out.failed = true;
    out.error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return;
  }
  no_delay(fd);
  std::vector<std::uint8_t> sent(size);
  std::vector<std::uint8_t> got(size);
  out.rtt_us.reserve(std::min<std::uint64_t>(count, 4'000'000));
  for (std::uint64_t i = 0; i < count + warmup; ++i) {
    const auto start = Clock::now();
    if (i >= warmup && start >= until) {
      break;
    }
    for (std::size_t b = 0; b < size; ++b) {
      sent[b] = static_cast<std::uint8_t>(i + b);
    }
    if (!write_all(fd, sent.data(), size) || !read_all(fd, got.data(), size)) {
      out.failed = true;
      out.error = "connection lost after " + std::to_string(i) + " round trips";
      break;
    }
    if (got != sent) {
      out.failed = true;
      out.error = "round trip " + std::to_string(i) + " came back different";
      break;
    }
    if (i >= warmup) {
      out.rtt_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
  }
  ::close(fd);
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) {
    return 0;
  }
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tcpping: one-connection TCP round trips, and their echo server"};
  bool echo = false;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::size_t size = 64;
  std::uint64_t count = 1'000'000;
  std::uint64_t warmup = 200;
  double duration = 5;
  unsigned connections = 1;
  app.add_flag("--echo", echo, "serve: echo every byte back");
  app.add_option("--host", host, "IPv4 address (127.0.0.1)");
  app.add_option("--port", port, "port to listen on (--echo) or to connect to")->required();
  app.add_option("--size", size, "bytes per request and per answer (64)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--count", count, "round trips per connection at most (1000000)");
  app.add_option("--warmup", warmup, "round trips per connection not measured (200)");
  app.add_option("--duration", duration, "seconds at most (5)")->check(CLI::Range(0.1, 600.0));
  app.add_option("--connections", connections, "connections, each its own loop (1)")
      ->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);

  if (echo) {
    return serve_echo(host, port);
  }
  const sockaddr_in addr = loopback(port, host);
  const auto started = Clock::now();
  const auto until = started + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(duration));
  std::vector<Loop> loops(connections);
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < connections; ++c) {
    threads.emplace_back(run_loop, std::cref(addr), size, count, warmup, until, std::ref(loops[c]));
  }
  for (auto& t : threads) {
    t.join();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  // Each connection's rate is its round trips over the time they took; the total is their sum.
  std::vector<double> all;
  double rate = 0;
  for (const auto& l : loops) {
    if (l.failed) {
      std::fprintf(stderr, "tcpping: %s\n", l.error.c_str());
      return 1;
    }
    double busy_seconds = 0;
    for (const double us : l.rtt_us) {
      busy_seconds += us / 1e6;
    }
    rate += busy_seconds > 0 ? static_cast<double>(l.rtt_us.size()) / busy_seconds : 0;
    all.insert(all.end(), l.rtt_us.begin(), l.rtt_us.end());
  }
  std::sort(all.begin(), all.end());
  std::printf(
      "{\"round_trips\": %zu, \"seconds\": %.3f, \"rate\": %.1f, \"size\": %zu, "
      "\"connections\": %u, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
      "\"p999_us\": %.1f, \"max_us\": %.1f}\n",
      all.size(), seconds, rate, size, connections, percentile(all, 0.5), percentile(all, 0.9),
      percentile(all, 0.99), percentile(all, 0.999), all.empty() ? 0.0 : all.back());
  return 0;
}

// udpping: fixed-rate UDP round trips with latency percentiles and loss, and the echo server it
// measures against.
//
//   udpping --echo --port 9000                       # echo every datagram back to its sender
//   udpping --port 9000 --rate 10000 --duration 10 --size 128 --flows 4
//
// The client fixes its schedule first, as openloop does for HTTP: datagram i is due at
// t0 + i / rate and is sent then, whatever happened before. Each carries its sequence number;
// the echo sends it back unchanged. Round-trip time (p50 ... max) is measured from the actual
// send to the echo's arrival: UDP sends never wait for the path, so the path's latency is all
// of it. From the SCHEDULED time (sched_*) adds the client's own lateness, reported as
// send_lag_p99: when that is large, the client or the machine could not keep the rate and the
// run says more about them than about the path. Datagrams go out round robin over --flows
// sockets, each its own source port: through a udp tunnel, each is its own client session.
//
// Prints one JSON object on stdout: sent, received, lost (no echo within --timeout after the
// last send), duplicates, reordered (an echo older than one already seen on its flow), the
// achieved rate, and percentiles in microseconds. Bounded in time: --duration of sending, then
// at most --timeout of waiting. Exit status 2 on bad arguments or when a socket cannot be made.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  bool echo = false;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  double rate = 1000;    // datagrams per second, all flows together
  double duration = 10;  // seconds of sending
  std::size_t size = 128;
  int flows = 1;
  double timeout = 1;  // seconds to wait for echoes after the last send
};

// Exits with status 2 (CLI11's messages on stderr) on bad arguments, 0 after --help.
Options parse(int argc, char** argv) {
  Options o;
  const CLI::Validator positive(
      [](const std::string& v) {
        return std::strtod(v.c_str(), nullptr) > 0 ? std::string() : "must be > 0, got " + v;
      },
      "> 0");
  CLI::App app{"udpping: fixed-rate UDP round trips (or --echo: the echo server)"};
  app.add_flag("--echo", o.echo, "echo every datagram back to its sender");
  app.add_option("--host", o.host, "IPv4 address to send to (or, with --echo, to bind)")
      ->check(CLI::ValidIPV4);
  app.add_option("--port", o.port, "UDP port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--rate", o.rate, "datagrams per second, all flows together")->check(positive);
  app.add_option("--duration", o.duration, "seconds of sending")->check(positive);
  app.add_option("--size", o.size, "bytes per datagram (the first 8 carry its sequence number)")
      ->check(CLI::Range(16, 65507));
  app.add_option("--flows", o.flows, "sockets (source ports) to send from, round robin")
      ->check(CLI::Range(1, 1024));
  app.add_option("--timeout", o.timeout, "seconds to wait for echoes after the last send")
      ->check(positive);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    std::exit(code == 0 ? 0 : 2);
  }
  return o;
}

sockaddr_in address(const Options& o) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(o.port);
  inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr);  // checked by parse()
  return sa;
}

int make_socket() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "udpping: socket: %s\n", std::strerror(errno));
    std::exit(2);
  }
  // Room for a burst of echoes while the client is busy sending.
  const int buf = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  return fd;
}

volatile std::sig_atomic_t g_stop = 0;

int run_echo(const Options& o) {
  const int fd = make_socket();
  const sockaddr_in sa = address(o);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    std::fprintf(stderr, "udpping: bind %s:%u: %s\n", o.host.c_str(), o.port, std::strerror(errno));
    return 2;
  }
  struct sigaction act {};
  act.sa_handler = [](int) { g_stop = 1; };
  ::sigaction(SIGTERM, &act, nullptr);
  ::sigaction(SIGINT, &act, nullptr);
  std::vector<char> buf(65536);
  while (g_stop == 0) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n =
        ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "udpping: recvfrom: %s\n", std::strerror(errno));
      return 1;
    }
    // A full send buffer drops the echo, as a real server would: the client counts it lost.
    (void)::sendto(fd, buf.data(), static_cast<std::size_t>(n), MSG_DONTWAIT,
                   reinterpret_cast<const sockaddr*>(&from), len);
  }
  ::close(fd);
  return 0;
}

std::uint32_t micros(Clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return static_cast<std::uint32_t>(std::clamp<long long>(us, 0, 0xffffffffLL));
}

double percentile(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

struct Client {
  Options opt;
  std::vector<pollfd> fds;
  std::vector<Clock::time_point> sent_at;  // by sequence number
  std::vector<std::uint8_t> seen;          // by sequence number
  std::vector<std::uint64_t> newest;       // per flow: highest sequence echoed so far + 1
  std::vector<std::uint32_t> rtt_us, sched_us, send_lag_us;
  std::uint64_t received = 0, duplicates = 0, reordered = 0, foreign = 0, send_errors = 0;
  std::vector<char> buf = std::vector<char>(65536);
  Clock::time_point t0;
  std::chrono::nanoseconds period{};

  void send(std::uint64_t seq, std::vector<char>& payload) {
    const auto flow = static_cast<std::size_t>(seq % fds.size());
    std::memcpy(payload.data(), &seq, sizeof seq);
    const auto due = t0 + seq * period;
    const auto now = Clock::now();
    sent_at[seq] = now;
    send_lag_us.push_back(micros(now - due));
    if (::send(fds[flow].fd, payload.data(), payload.size(), MSG_DONTWAIT) < 0) ++send_errors;
  }

  void drain(std::size_t flow) {
    for (;;) {
      const ssize_t n = ::recv(fds[flow].fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) return;  // EAGAIN, or an ICMP error (the port is gone): counted as lost
      const auto now = Clock::now();
      std::uint64_t seq = 0;
      if (static_cast<std::size_t>(n) < sizeof seq) {
        ++foreign;
        continue;
      }
      std::memcpy(&seq, buf.data(), sizeof seq);
      if (seq >= seen.size() || seq % fds.size() != flow || sent_at[seq] == Clock::time_point{}) {
        ++foreign;
        continue;
      }
      if (seen[seq] != 0) {
        ++duplicates;
        continue;
      }
      seen[seq] = 1;
      ++received;
      if (seq + 1 < newest[flow]) ++reordered;
      newest[flow] = std::max(newest[flow], seq + 1);
      rtt_us.push_back(micros(now - sent_at[seq]));
      sched_us.push_back(micros(now - (t0 + seq * period)));
    }
  }

  void wait_and_drain(Clock::time_point until) {
    const auto left = std::max(Clock::duration::zero(), until - Clock::now());
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    if (::ppoll(fds.data(), fds.size(), &ts, nullptr) <= 0) return;
    for (std::size_t f = 0; f < fds.size(); ++f) {
      if (fds[f].revents != 0) drain(f);
    }
  }
};

int run_client(const Options& o) {
  // Wake at the due time, not up to 50 us after it (the default timer slack).
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  Client c;
  c.opt = o;
  const sockaddr_in sa = address(o);
  for (int i = 0; i < o.flows; ++i) {
    const int fd = make_socket();
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
      std::fprintf(stderr, "udpping: connect: %s\n", std::strerror(errno));
      return 2;
    }
    c.fds.push_back(pollfd{fd, POLLIN, 0});
  }
  const auto total = static_cast<std::uint64_t>(std::llround(o.rate * o.duration));
  c.sent_at.assign(total, Clock::time_point{});
  c.seen.assign(total, 0);
  c.newest.assign(c.fds.size(), 0);
  c.rtt_us.reserve(total);
  c.sched_us.reserve(total);
  c.send_lag_us.reserve(total);
  c.period = std::chrono::nanoseconds(static_cast<long long>(1e9 / o.rate));
  std::vector<char> payload(o.size, 'u');

  c.t0 = Clock::now() + std::chrono::milliseconds(20);
  std::uint64_t next = 0;
  while (next < total) {
    const auto due = c.t0 + next * c.period;
    if (Clock::now() < due) {
      c.wait_and_drain(due);
      continue;
    }
    c.send(next++, payload);
  }
  const auto last_send = Clock::now();
  const auto stop = last_send + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(o.timeout));
  while (c.received < total && Clock::now() < stop) c.wait_and_drain(stop);
  for (const auto& p : c.fds) ::close(p.fd);

  std::sort(c.rtt_us.begin(), c.rtt_us.end());
  std::sort(c.sched_us.begin(), c.sched_us.end());
  std::sort(c.send_lag_us.begin(), c.send_lag_us.end());
  const double secs = std::chrono::duration<double>(last_send - c.t0).count();
  const std::uint64_t lost = total - c.received;
  std::printf(
      "{\"target_rate\":%.1f,\"size\":%zu,\"flows\":%d,\"sent\":%llu,\"received\":%llu,"
      "\"lost\":%llu,\"loss_pct\":%.3f,\"duplicates\":%llu,\"reordered\":%llu,\"foreign\":%llu,"
      "\"send_errors\":%llu,\"achieved_rate\":%.1f,\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,"
      "\"p999\":%.0f,\"max\":%.0f,\"sched_p50\":%.0f,\"sched_p99\":%.0f,"
      "\"send_lag_p99\":%.0f}\n",
      o.rate, o.size, o.flows, static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(c.received), static_cast<unsigned long long>(lost),
      total ? 100.0 * static_cast<double>(lost) / static_cast<double>(total) : 0.0,
      static_cast<unsigned long long>(c.duplicates), static_cast<unsigned long long>(c.reordered),
      static_cast<unsigned long long>(c.foreign), static_cast<unsigned long long>(c.send_errors),
      secs > 0 ? static_cast<double>(total) / secs : 0.0, percentile(c.rtt_us, 50),
      percentile(c.rtt_us, 90), percentile(c.rtt_us, 99), percentile(c.rtt_us, 99.9),
      c.rtt_us.empty() ? 0.0 : c.rtt_us.back(), percentile(c.sched_us, 50),
      percentile(c.sched_us, 99), percentile(c.send_lag_us, 99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  return o.echo ? run_echo(o) : run_client(o);
}

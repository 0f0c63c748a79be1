#include "core/edge/udp_tunnel.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <span>
#include <vector>

#include "common/async.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/edge/conn_pipeline.hpp"
#include "core/edge/stream_budget.hpp"
#include "core/edge/tcp_tunnel.hpp"
#include "protocol/udp_record.hpp"
#include "transport/conn.hpp"
#include "transport/udp.hpp"

namespace tunnel::core {
namespace {

using asio::ip::udp;
using Clock = std::chrono::steady_clock;
using Datagram = std::vector<std::uint8_t>;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// Datagrams waiting for a client's stream; more are dropped (UDP may lose them anyway).
constexpr std::size_t kMaxQueuedDatagrams = 512;
// Datagrams the receive loop takes from the socket per wake-up (without waiting) before it lets
// the worker run other work.
constexpr int kReceiveBurst = 64;
// A client's record buffers keep up to this much memory between writes; a burst of large
// datagrams leaves them bigger, and they are let go after the write.
constexpr std::size_t kKeptRecordBytes = 256 * 1024;

// True when `executor` runs handlers on the calling thread: work for it can be done here and now
// instead of through its queue.
// (Each worker's executor is its io_context's; any other kind of executor is never "here".)
bool runs_here(const asio::any_io_executor& executor) {
  const auto* io = executor.target<asio::io_context::executor_type>();
  return io != nullptr && io->running_in_this_thread();
}

struct UdpMetrics {
  explicit UdpMetrics(observability::Registry& r)
      : sessions(r.counter("tunnel_udp_sessions_total",
                           "Client sessions (one per client address) of udp tunnels.")),
        active(r.gauge("tunnel_udp_sessions_active", "Client sessions of udp tunnels open now.")),
        datagrams_in(r.counter("tunnel_udp_datagrams_total", "Datagrams relayed for udp tunnels.",
                               {{"direction", "in"}})),
        datagrams_out(r.counter("tunnel_udp_datagrams_total", "Datagrams relayed for udp tunnels.",
                                {{"direction", "out"}})),
        bytes_in(r.counter("tunnel_udp_bytes_total", "Datagram bytes relayed for udp tunnels.",
                           {{"direction", "in"}})),
        bytes_out(r.counter("tunnel_udp_bytes_total", "Datagram bytes relayed for udp tunnels.",
                            {{"direction", "out"}})),
        evicted_tunnel(r.counter("tunnel_udp_sessions_evicted_total",
                                 "Client sessions of udp tunnels ended to make room for a new "
                                 "client, by cap: limits.max_clients_per_udp_tunnel (tunnel), "
                                 "limits.max_clients_per_udp_tunnel_per_address (address).",
                                 {{"cap", "tunnel"}})),
        evicted_address(r.counter("tunnel_udp_sessions_evicted_total",
                                  "Client sessions of udp tunnels ended to make room for a new "
                                  "client, by cap: limits.max_clients_per_udp_tunnel (tunnel), "
                                  "limits.max_clients_per_udp_tunnel_per_address (address).",
                                  {{"cap", "address"}})),
        dropped(r.counter("tunnel_udp_datagrams_dropped_total",
                          "Datagrams the core dropped (no agent, a filter refused the client, "
                          "queue or send buffer full).")),
        too_large_in(r.counter("tunnel_udp_datagrams_too_large_total",
                               "Datagrams dropped for being larger than limits.udp_max_datagram.",
                               {{"direction", "in"}})),
        too_large_out(r.counter("tunnel_udp_datagrams_too_large_total",
                                "Datagrams dropped for being larger than limits.udp_max_datagram.",
                                {{"direction", "out"}})) {}
  observability::Counter& sessions;
  observability::Gauge& active;
  observability::Counter& datagrams_in;  // from clients
  observability::Counter& datagrams_out;
  observability::Counter& bytes_in;
  observability::Counter& bytes_out;
  observability::Counter& evicted_tunnel;   // limits.max_clients_per_udp_tunnel
  observability::Counter& evicted_address;  // limits.max_clients_per_udp_tunnel_per_address
  observability::Counter& dropped;
  observability::Counter& too_large_in;   // from clients
  observability::Counter& too_large_out;  // from the agent
};

// Oversized datagrams are reported to the log and to the agent at most once per interval per
// port and direction, with what was dropped since the last report. Thread-safe.
class DropReport {
 public:
  static constexpr auto kInterval = std::chrono::seconds(10);
  // Counts one dropped datagram of `size` bytes. Returns the message to send when a report is
  // due ("" otherwise).
  std::string count(std::size_t size, std::string_view from, std::uint32_t limit) {
    std::lock_guard lock(mutex_);
    ++dropped_;
    largest_ = std::max(largest_, size);
    const auto now = Clock::now();
    if (now - last_ < kInterval) return "";
    last_ = now;
    std::string message =
        "dropped " + std::to_string(dropped_) + " datagram" + (dropped_ == 1 ? "" : "s") +
        " from " + std::string(from) + " larger than the core's limit of " + std::to_string(limit) +
        " bytes (limits.udp_max_datagram; largest " + std::to_string(largest_) + " bytes)";
    dropped_ = 0;
    largest_ = 0;
    return message;
  }

 private:
  std::mutex mutex_;
  Clock::time_point last_{};
  std::uint64_t dropped_ = 0;
  std::size_t largest_ = 0;
};

class UdpPort;

// "ip:port" as tcp tunnels and logs write it ("[v6]:port"; IPv4-mapped addresses as IPv4).
std::string address_text(const udp::endpoint& endpoint) {
  return transport::endpoint_string(transport::tcp::endpoint(endpoint.address(), endpoint.port()));
}

// One client address: its stream and the datagrams waiting for it. Lives on the agent
// session's executor; only `port`, `client` and `executor` are read elsewhere.
class UdpClient : public std::enable_shared_from_this<UdpClient> {
 public:
  UdpClient(std::shared_ptr<UdpPort> port, udp::endpoint client, std::string peer,
            ConnectionDecision decision)
      : port_(std::move(port)),
        client_(std::move(client)),
        peer_(std::move(peer)),
        route_(std::move(decision.route)),
        open_payload_(std::move(decision.open_payload)),
        executor_(route_.agent->session->get_executor()),
        ready_(executor_) {}

  const asio::any_io_executor& executor() const { return executor_; }

  // On the client's executor: queue a datagram for the stream.
  void on_datagram(std::span<const std::uint8_t> datagram);
  asio::awaitable<void> run();
  // On the client's executor: end the session now (a newer client needs its place).
  void evict(const std::string& reason);
  // From any thread: when a datagram last went either way.
  Clock::rep last_seen() const { return last_seen_.load(std::memory_order_relaxed); }

 private:
  asio::awaitable<void> to_agent();
  asio::awaitable<void> from_agent();
  asio::awaitable<void> idle_watch();

  // The complete hooks of the port's and the tunnel's chains, if any.
  void finish(ConnectionEnd end);

  std::shared_ptr<UdpPort> port_;
  udp::endpoint client_;
  std::string peer_;  // client_ as "ip:port"
  Route route_;
  std::string open_payload_;  // the OPEN_STREAM payload decide_connection() chose
  asio::any_io_executor executor_;
  std::shared_ptr<mux::Stream> stream_;
  // Datagrams waiting for the stream, already as udp records, and how many.
  std::vector<std::uint8_t> pending_;
  std::size_t pending_count_ = 0;
  Signal ready_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_activity_ = start_;
  std::atomic<Clock::rep> last_seen_{Clock::now().time_since_epoch().count()};
  bool ended_ = false;
  bool evicted_ = false;
  ConnectionEnd end_ = ConnectionEnd::kAgent;  // how the session ended, for complete hooks
  std::string outcome_;
  std::uint64_t in_ = 0, out_ = 0;              // datagrams
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;  // their bytes
};

class UdpPort : public PortListener, public std::enable_shared_from_this<UdpPort> {
 public:
  UdpPort(CoreContext& core, asio::any_io_executor where, std::uint16_t port,
          std::shared_ptr<const ConnectionFilterChain> listener_filters)
      : context(core),
        executor(std::move(where)),
        metrics(core.metrics.registry),
        filters(std::move(listener_filters)),
        socket_(executor),
        port_(port) {}

  common::Status bind(const std::string& host, int adopt_fd) {
    const auto ip = tunnels_host_address(host);
    if (!ip) return ip.error();
    boost::system::error_code ec;
    const udp::endpoint endpoint(ip.value(), port_);
    if (adopt_fd >= 0) {
      socket_.assign(endpoint.protocol(), adopt_fd, ec);
      if (ec) ::close(adopt_fd);
    } else {
      socket_.open(endpoint.protocol(), ec);
      if (!ec) socket_.bind(endpoint, ec);
    }
    if (!ec) socket_.non_blocking(true, ec);  // send() drops instead of blocking the worker
    if (!ec) transport::size_udp_buffers(socket_, context.config.limits.udp_socket_buffer);
    if (ec) return common::fail(bind_error(port_, ec));
    local_address_ = address_text(socket_.local_endpoint(ec));
    fd_ = socket_.native_handle();
    return common::success();
  }

  int fd() const { return fd_; }

  void start() { asio::co_spawn(executor, receive_loop(shared_from_this()), asio::detached); }

  void close() override {
    asio::post(executor, [self = shared_from_this()] {
      boost::system::error_code ignored;
      self->socket_.close(ignored);
      spdlog::info("udp :{} closed (no agent serves it)", self->port_);
    });
  }

  // From any thread: sends a datagram to a client from the socket's executor (right away when
  // that is this thread; a copy goes through its queue otherwise).
  void send(const udp::endpoint& to, std::span<const std::uint8_t> datagram) {
    if (runs_here(executor)) {
      send_now(to, datagram);
      return;
    }
    asio::post(executor,
               [self = shared_from_this(), to, d = Datagram(datagram.begin(), datagram.end())] {
                 self->send_now(to, d);
               });
  }

  // From any thread: the session of `client` ended; forget it (if it is still that one).
  void forget(udp::endpoint client, std::shared_ptr<UdpClient> session) {
    asio::post(executor, [self = shared_from_this(), client, session] {
      auto it = self->clients_.find(client);
      if (it != self->clients_.end() && it->second == session) self->erase_client(it);
    });
  }

  std::uint16_t port() const { return port_; }

  // A datagram or a client was given up: count it, and log at most one line per 10 s.
  void dropped(std::uint64_t datagrams, const std::string& why) {
    if (datagrams > 0) metrics.dropped.inc(datagrams);
    std::uint64_t held = 0;
    if (!drop_log_.allow(held, context.time.monotonic_time())) return;
    spdlog::warn(
        "udp :{}: {}{}", port_, why,
        held == 0 ? "" : " (" + std::to_string(held) + " more like it since the last line)");
  }

  // "ip:port" the port is bound to (for the agent's PROXY-style address line).
  const std::string& local_address() const { return local_address_; }

  // A datagram over limits.udp_max_datagram was dropped: log and tell the agent, now and then.
  void report_too_large(std::size_t size, bool from_client, const Route& route) {
    (from_client ? metrics.too_large_in : metrics.too_large_out).inc();
    auto& report = from_client ? too_large_in_ : too_large_out_;
    const std::string message =
        report.count(size, from_client ? "public clients" : "your local app",
                     context.config.limits.udp_max_datagram);
    if (message.empty()) return;
    spdlog::warn("udp :{}: {}", port_, message);
    if (route.agent) {
      asio::post(route.agent->session->get_executor(),
                 [session = route.agent->session, index = route.tunnel_index, message] {
                   session->notice(index, message);
                 });
    }
  }

  CoreContext& context;
  asio::any_io_executor executor;
  UdpMetrics metrics;
  std::shared_ptr<const ConnectionFilterChain> filters;  // the listener's; null = none

 private:
  void send_now(const udp::endpoint& to, std::span<const std::uint8_t> datagram) {
    boost::system::error_code ec;
    socket_.send_to(asio::buffer(datagram.data(), datagram.size()), to, 0, ec);
    if (ec) {
      metrics.dropped.inc();
    } else {
      metrics.datagrams_out.inc();
      metrics.bytes_out.inc(datagram.size());
    }
  }

  // Waits until the socket is readable, then reads it until it is empty (the socket is
  // non-blocking), at most kReceiveBurst datagrams before letting the worker's other work run:
  // under load one wake-up serves a burst, and its datagrams reach each client's stream together,
  // as one write. Waiting with async_wait rather than async_receive_from saves the read that
  // would fail right after a burst emptied the socket.
  static asio::awaitable<void> receive_loop(std::shared_ptr<UdpPort> self) {
    // One byte more than the largest datagram, to notice (and drop) bigger ones.
    std::vector<std::uint8_t> buf(protocol::kMaxDatagram + 1);
    udp::endpoint from;
    bool drained = true;
    for (;;) {
      if (drained) {
        auto [ec] = co_await self->socket_.async_wait(udp::socket::wait_read, kNoThrow);
        if (ec == asio::error::operation_aborted || !self->socket_.is_open()) co_return;
        // Any other error: the reads below tell.
      } else {
        co_await asio::post(self->executor, asio::use_awaitable);
        if (!self->socket_.is_open()) co_return;
      }
      drained = false;
      for (int burst = 0; burst < kReceiveBurst; ++burst) {
        boost::system::error_code ec;
        const std::size_t n = self->socket_.receive_from(asio::buffer(buf), from, 0, ec);
        if (ec == asio::error::would_block) {
          drained = true;
          break;
        }
        // Other errors (e.g. ICMP errors reported on the socket): nothing to do.
        if (!ec) self->on_receive(from, std::span<const std::uint8_t>(buf.data(), n));
      }
    }
  }

  void on_receive(const udp::endpoint& from, std::span<const std::uint8_t> datagram) {
    if (datagram.size() > context.config.limits.udp_max_datagram) {
      Route route;
      context.registry.lookup_port(PortProtocol::kUdp, port_, route);
      report_too_large(datagram.size(), true, route);
      return;
    }
    metrics.datagrams_in.inc();
    metrics.bytes_in.inc(datagram.size());
    deliver(from, datagram);
  }

  using Clients = std::map<udp::endpoint, std::shared_ptr<UdpClient>>;

  // Every client leaves clients_ here (its source address counted once less); returns the
  // client, whose session may still run.
  std::shared_ptr<UdpClient> erase_client(Clients::iterator it) {
    if (context.config.limits.max_clients_per_udp_tunnel_per_address != 0) {
      sources_.remove(source_key(it->first.address()));
    }
    auto client = std::move(it->second);
    clients_.erase(it);
    return client;
  }

  void deliver(const udp::endpoint& from, std::span<const std::uint8_t> datagram) {
    auto it = clients_.find(from);
    if (it == clients_.end()) {
      it = new_client(from);
      if (it == clients_.end()) return;
    }
    if (runs_here(it->second->executor())) {
      it->second->on_datagram(datagram);
      return;
    }
    asio::post(it->second->executor(),
               [client = it->second, d = Datagram(datagram.begin(), datagram.end())] {
                 client->on_datagram(d);
               });
  }

  // A datagram from an address without a session: decide, the new-source filters, then a client
  // session on the agent's worker. clients_.end() when the datagram is dropped (counted).
  Clients::iterator new_client(const udp::endpoint& from) {
    std::string peer = address_text(from);
    ConnectionFacts facts{PortProtocol::kUdp, port_, peer, local_address_,
                          static_cast<std::uint32_t>(clients_.size())};
    const bool per_source = context.config.limits.max_clients_per_udp_tunnel_per_address != 0;
    SourceKey source;
    if (per_source) {
      source = source_key(from.address());
      facts.open_from_source = sources_.count(source);
    }
    ConnectionDecision decision =
        decide_connection(facts, context.config.limits, [this](Route& out) {
          return context.registry.lookup_port(PortProtocol::kUdp, port_, out);
        });
    if (!decision.refusal.empty()) {
      dropped(1, peer + ": datagram dropped: " + decision.refusal);
      return clients_.end();
    }
    const ConnectionFilterChain* tunnel_filters = decision.route.connection_filters.get();
    if (filters || tunnel_filters) {
      const ConnectionInfo info{PortProtocol::kUdp, port_, peer, local_address_, decision.route};
      const ConnectionVerdict verdict =
          admit(filters.get(), tunnel_filters, conn_hook::kNewSource, info);
      if (!verdict.proceed()) {
        dropped(1, peer + ": datagram dropped: refused by " + std::string(verdict.by) + ": " +
                       verdict.refusal);
        return clients_.end();
      }
    }
    if (decision.evict == UdpEviction::kOldestOfSource) {
      evict_oldest_of(source);
    } else if (decision.evict == UdpEviction::kOldest) {
      evict_oldest();
    }
    auto client =
        std::make_shared<UdpClient>(shared_from_this(), from, std::move(peer), std::move(decision));
    auto it = clients_.emplace(from, client).first;
    if (per_source) sources_.add(source);
    asio::co_spawn(client->executor(), client->run(), asio::detached);
    return it;
  }

  // At limits.max_clients_per_udp_tunnel: the least recently active client makes room.
  void evict_oldest() {
    auto oldest = clients_.begin();
    for (auto it = clients_.begin(); it != clients_.end(); ++it) {
      if (it->second->last_seen() < oldest->second->last_seen()) oldest = it;
    }
    if (oldest == clients_.end()) return;
    auto client = erase_client(oldest);
    metrics.evicted_tunnel.inc();
    const std::string reason = "evicted for a new client: the tunnel has " +
                               std::to_string(context.config.limits.max_clients_per_udp_tunnel) +
                               " clients (limits.max_clients_per_udp_tunnel)";
    asio::post(client->executor(), [client, reason] { client->evict(reason); });
  }

  // At limits.max_clients_per_udp_tunnel_per_address: the least recently active client of the
  // same address (IPv4, or IPv6 /64) makes room, so an address that churns through source ports
  // evicts only its own clients.
  void evict_oldest_of(const SourceKey& source) {
    auto oldest = clients_.end();
    for (auto it = clients_.begin(); it != clients_.end(); ++it) {
      if (!(source_key(it->first.address()) == source)) continue;
      if (oldest == clients_.end() || it->second->last_seen() < oldest->second->last_seen()) {
        oldest = it;
      }
    }
    if (oldest == clients_.end()) return;
    const std::string evicted = address_text(oldest->first);
    auto client = erase_client(oldest);
    metrics.evicted_address.inc();
    const std::string reason =
        "evicted for a new client from the same address: " + to_string(source) + " has " +
        std::to_string(context.config.limits.max_clients_per_udp_tunnel_per_address) +
        " clients of the tunnel (limits.max_clients_per_udp_tunnel_per_address)";
    dropped(0, evicted + ": " + reason);  // at most one line per 10 s per port
    asio::post(client->executor(), [client, reason] { client->evict(reason); });
  }

  udp::socket socket_;
  std::uint16_t port_;
  Clients clients_;       // on `executor`
  SourceCounts sources_;  // clients_ per source address, while the per-address cap is on
  LogGate drop_log_;
  DropReport too_large_in_;
  DropReport too_large_out_;
  std::string local_address_;
  int fd_ = -1;  // the socket's descriptor (an upgrade hands it over)
};

void UdpClient::on_datagram(std::span<const std::uint8_t> datagram) {
  if (ended_) {
    port_->metrics.dropped.inc();  // raced the session's end
    return;
  }
  if (pending_count_ >= kMaxQueuedDatagrams) {
    port_->metrics.dropped.inc();
    return;
  }
  last_activity_ = Clock::now();
  last_seen_.store(last_activity_.time_since_epoch().count(), std::memory_order_relaxed);
  protocol::append_udp_record(pending_, datagram);  // size checked when received
  bytes_in_ += datagram.size();
  if (pending_count_++ == 0) ready_.notify();
}

asio::awaitable<void> UdpClient::to_agent() {
  std::vector<std::uint8_t> records;
  transport::error_code ec;
  for (;;) {
    while (pending_count_ == 0) co_await ready_.wait();
    // Everything that arrived since the last write goes as one; both buffers keep their memory.
    records.clear();
    records.swap(pending_);
    in_ += pending_count_;
    pending_count_ = 0;
    if (Throttle::engaged(route_.throttle.get()))
      co_await throttle(route_.throttle.get(), Direction::kIn, records.size());
    co_await stream_->write(records, ec);
    if (ec) {
      outcome_ = "the stream failed: " + ec.message();
      co_return;
    }
    if (records.capacity() > kKeptRecordBytes) std::vector<std::uint8_t>().swap(records);
  }
}

asio::awaitable<void> UdpClient::from_agent() {
  std::vector<std::uint8_t> buf(64 * 1024);
  protocol::UdpRecordReader reader;
  transport::error_code ec;
  for (;;) {
    const std::size_t n = co_await stream_->read_some(asio::buffer(buf), ec);
    if (evicted_) co_return;  // evict() said why
    if (ec || n == 0) {
      if (!ec) end_ = ConnectionEnd::kClosed;
      outcome_ = ec ? (stream_->is_reset() ? "reset by the agent: " + stream_->reset_message()
                                           : "the agent session ended")
                    : "ended by the agent";
      co_return;
    }
    reader.feed(std::span<const std::uint8_t>(buf.data(), n));
    std::span<const std::uint8_t> datagram;
    while (reader.next(datagram)) {
      if (datagram.size() > port_->context.config.limits.udp_max_datagram) {
        port_->report_too_large(datagram.size(), false, route_);
        continue;
      }
      ++out_;
      bytes_out_ += datagram.size();
      if (Throttle::engaged(route_.throttle.get()))
        co_await throttle(route_.throttle.get(), Direction::kOut, datagram.size());
      port_->send(client_, datagram);
    }
    if (!reader.error().empty()) {
      outcome_ = reader.error();
      stream_->reset(protocol::ErrorCode::kProtocolError, reader.error());
      co_return;
    }
    last_activity_ = Clock::now();
    last_seen_.store(last_activity_.time_since_epoch().count(), std::memory_order_relaxed);
  }
}

asio::awaitable<void> UdpClient::idle_watch() {
  const auto timeout = port_->context.config.limits.udp_idle_timeout;
  asio::steady_timer timer(executor_);
  for (;;) {
    const auto deadline = last_activity_ + timeout;
    if (Clock::now() >= deadline) {
      end_ = ConnectionEnd::kIdle;
      outcome_ = "idle for " + std::to_string(timeout.count()) + " ms";
      co_return;
    }
    timer.expires_at(deadline);
    co_await timer.async_wait(kNoThrow);
  }
}

void UdpClient::evict(const std::string& reason) {
  if (ended_) return;
  evicted_ = true;
  end_ = ConnectionEnd::kEvicted;
  outcome_ = reason;
  if (stream_ && !stream_->is_reset()) stream_->reset(protocol::ErrorCode::kNoError, reason);
}

asio::awaitable<void> UdpClient::run() {
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  const std::string& peer = peer_;
  std::string error;
  bool slot = false;
  if (evicted_) {
    error = outcome_;
  } else if (auto taken = take_raw_stream(*route_.agent, port_->context.config.limits); !taken) {
    error = std::move(taken).error().message;
  } else {
    slot = true;
  }
  if (slot) {
    auto opened = route_.agent->session->open_stream(route_.tunnel_index, open_payload_);
    if (opened) {
      stream_ = std::move(opened).value();
    } else {
      error = "the agent " + route_.agent->session->name() +
              " cannot take a session: " + opened.error().message;
    }
  }
  if (!stream_) {
    port_->dropped(pending_count_, peer + ": datagrams dropped: " + error);
    outcome_ = std::move(error);
    finish(evicted_ ? ConnectionEnd::kEvicted : ConnectionEnd::kRefused);
  } else {
    port_->metrics.sessions.inc();
    port_->metrics.active.inc();
    spdlog::debug("udp :{} {}: session opened", port_->port(), peer);
    co_await (to_agent() || from_agent() || idle_watch());
    if (!stream_->is_reset()) stream_->reset(protocol::ErrorCode::kNoError, outcome_);
    port_->metrics.active.dec();
    spdlog::info("udp :{} {}: session closed ({}), datagrams in={} out={}", port_->port(), peer,
                 outcome_, in_, out_);
    finish(end_);
  }
  if (slot) release_raw_stream(*route_.agent);
  ended_ = true;
  if (stream_ && pending_count_ > 0)
    port_->dropped(pending_count_, peer + ": datagrams dropped: " + outcome_);
  pending_.clear();
  pending_count_ = 0;
  port_->forget(client_, self);
}

void UdpClient::finish(ConnectionEnd end) {
  // Usage: the flow is one request, its datagrams' bytes in and out (a flow the agent broke is
  // an error); a flow refused before it reached the agent counts nothing.
  if (route_.usage && end != ConnectionEnd::kRefused) {
    route_.usage->add(bytes_in_, bytes_out_, end == ConnectionEnd::kAgent);
  }
  const ConnectionFilterChain* tunnel_filters = route_.connection_filters.get();
  if (!port_->filters && tunnel_filters == nullptr) return;
  const ConnectionInfo info{PortProtocol::kUdp, port_->port(), peer_, port_->local_address(),
                            route_};
  ConnectionSummary summary;
  summary.end = end;
  summary.outcome = outcome_;
  summary.bytes_in = bytes_in_;
  summary.bytes_out = bytes_out_;
  summary.datagrams_in = in_;
  summary.datagrams_out = out_;
  summary.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  complete(port_->filters.get(), tunnel_filters, info, summary);
}

}  // namespace

common::Result<std::shared_ptr<PortListener>> open_udp_port(
    CoreContext& context, asio::any_io_executor executor, const std::string& host,
    std::uint16_t port, std::shared_ptr<const ConnectionFilterChain> listener_filters, int adopt_fd,
    int* bound_fd) {
  auto listener =
      std::make_shared<UdpPort>(context, std::move(executor), port, std::move(listener_filters));
  if (auto bound = listener->bind(host, adopt_fd); !bound) return bound.error();
  if (bound_fd != nullptr) *bound_fd = listener->fd();
  listener->start();
  return std::shared_ptr<PortListener>(std::move(listener));
}

}  // namespace tunnel::core

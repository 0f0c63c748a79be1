#include "agent/connector.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <random>

#include "agent/backoff.hpp"
#include "agent/config.hpp"
#include "agent/forwarder.hpp"
#include "agent/http_probe.hpp"
#include "agent/raw_forwarder.hpp"
#include "common/byte_rate.hpp"
#include "observability/log.hpp"
#include "protocol/health_notice.hpp"

namespace tunnel::agent {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::FrameType;

// How long a rotated session keeps accepting streams after its GOAWAY before it may close.
constexpr std::chrono::milliseconds kRotationGrace{1'000};

std::string format_delay(std::chrono::milliseconds delay) {
  if (delay < std::chrono::seconds(1)) return std::to_string(delay.count()) + " ms";
  return fmt::format("{:.1f} s", std::chrono::duration<double>(delay).count());
}

std::string format_elapsed(Clock::duration elapsed) {
  const double ms = std::chrono::duration<double, std::milli>(elapsed).count();
  return ms < 1000 ? fmt::format("{:.1f} ms", ms) : fmt::format("{:.2f} s", ms / 1000);
}

// One request's console line: "GET /api/users 200 3.4 ms".
void log_request(const ForwardResult& r, const ForwardSpec& tunnel) {
  const std::string what =
      (r.method.empty() ? std::string("?") : r.method) + " " + (r.target.empty() ? "?" : r.target);
  // The request id (from the core), and the trace with tracing on: " id=... trace=...".
  const std::string_view id_label = r.request_id.empty() ? "" : " id=";
  const std::string_view trace_label = r.trace.active ? " trace=" : "";
  const std::string trace = r.trace.active ? tracing::to_hex(r.trace.trace_id) : std::string();
  if (!r.error.empty()) {
    spdlog::warn("{} {} {}: {}{}{}{}{}", what,
                 r.status == 0 ? std::string("-") : std::to_string(r.status),
                 format_elapsed(r.elapsed), r.error, id_label, r.request_id, trace_label, trace);
  } else {
    spdlog::info("{} {} {}{}{}{}{}", what, r.status, format_elapsed(r.elapsed), id_label,
                 r.request_id, trace_label, trace);
  }
  spdlog::debug("  id={} local={} in={} out={} reused={}{}", r.request_id, tunnel.request.local,
                r.bytes_in, r.bytes_out, r.reused_connection ? "yes" : "no",
                r.upgraded ? " upgraded" : "");
}

asio::awaitable<void> serve_stream(std::shared_ptr<mux::Stream> stream,
                                   std::shared_ptr<LocalPool> pool,
                                   std::shared_ptr<const std::vector<ForwardSpec>> tunnels,
                                   std::size_t index, Inspector* inspector) {
  const ForwardSpec& tunnel = (*tunnels)[index];
  const std::string& type = tunnel.request.type;
  if (!tunnel.refused.empty()) {
    spdlog::warn("{} stream for {} refused: {}", type, tunnel.request.local, tunnel.refused);
    stream->reset(protocol::ErrorCode::kRefused, tunnel.refused);
    co_return;
  }
  if (type == "tcp" || type == "udp") {
    // Not a ?: of two co_awaits: GCC 12 destroys such temporaries twice.
    RawForwardResult r;
    if (type == "tcp") {
      r = co_await forward_tcp(std::move(stream), tunnel.local, tunnel.proxy_protocol);
    } else {
      r = co_await forward_udp(std::move(stream), tunnel.local);
    }
    const char* unit = type == "tcp" ? "bytes" : "datagrams";
    if (r.error.empty()) {
      spdlog::info("{} {} -> {} closed after {} ({} {} in, {} out)", type, r.client,
                   tunnel.request.local, format_elapsed(r.elapsed), r.bytes_in, unit, r.bytes_out);
    } else {
      spdlog::warn("{} {} -> {} failed after {}: {} ({} {} in, {} out)", type, r.client,
                   tunnel.request.local, format_elapsed(r.elapsed), r.error, r.bytes_in, unit,
                   r.bytes_out);
    }
    co_return;
  }
  if (tunnel.metrics != nullptr) tunnel.metrics->active.inc();
  std::unique_ptr<ExchangeCapture> capture;
  if (inspector != nullptr) capture = inspector->begin();
  const auto started = std::chrono::system_clock::now();
  const ForwardResult result = co_await forward_http(std::move(stream), pool, tunnel.local,
                                                     tunnel.proxy_protocol, capture.get());
  if (tunnel.metrics != nullptr) {
    tunnel.metrics->active.dec();
    tunnel.metrics->count(result);
  }
  log_request(result, tunnel);
  if (capture) {
    Exchange exchange;
    exchange.tunnel_name = inspector->tunnel_name(index);
    exchange.local = tunnel.request.local;
    exchange.error = result.error;
    exchange.start = started;
    exchange.capture = std::move(*capture);
    inspector->add(std::move(exchange));
  }
}

asio::awaitable<void> accept_streams(std::shared_ptr<mux::Session> session,
                                     std::shared_ptr<LocalPool> pool,
                                     std::shared_ptr<const std::vector<ForwardSpec>> tunnels,
                                     Inspector* inspector) {
  for (;;) {
    auto stream = co_await session->accept();
    if (!stream) co_return;
    // A v1 session has no tunnel index: everything goes to the first tunnel.
    const std::size_t index =
        session->version() >= protocol::kVersion2 ? stream->tunnel_index() : 0;
    if (index >= tunnels->size()) {
      spdlog::warn("the core opened a stream for tunnel #{}, but we asked for {} tunnel(s)", index,
                   tunnels->size());
      stream->reset(protocol::ErrorCode::kProtocolError,
                    "no tunnel with index " + std::to_string(index));
      continue;
    }
    asio::co_spawn(session->get_executor(),
                   serve_stream(std::move(stream), pool, tunnels, index, inspector),
                   asio::detached);
  }
}

}  // namespace

std::vector<ForwardSpec> assigned_tunnels(const protocol::AuthResponse& reply,
                                          const std::vector<LocalRule>& allow_local) {
  std::vector<ForwardSpec> out;
  for (const protocol::TunnelResult& t : reply.tunnels) {
    ForwardSpec spec;
    spec.request.type = t.type;
    spec.request.local = t.local;
    if (auto local = parse_local_target(t.local); !local) {
      spec.refused = "the core assigned the local target \"" + t.local +
                     "\", which is not an address: " + local.error().message;
    } else if (spec.local = local.value(); !local_allowed(allow_local, spec.local)) {
      spec.refused = "the core assigned the local target " + spec.local.to_string() +
                     ", which allow_local (--allow-local) does not allow";
    }
    out.push_back(std::move(spec));
  }
  return out;
}

std::string default_agent_id() {
  char host[256] = {};
  std::string name;
  if (::gethostname(host, sizeof(host) - 1) == 0) {
    for (const char* p = host; *p != '\0' && *p != '.' && name.size() < 40; ++p) {
      const auto c = static_cast<unsigned char>(*p);
      if (std::isalnum(c) != 0) {
        name += static_cast<char>(std::tolower(c));
      } else if (!name.empty() && name.back() != '-') {
        name += '-';
      }
    }
    while (!name.empty() && name.back() == '-') name.pop_back();
  }
  if (name.empty()) name = "agent";
  std::random_device random;
  return fmt::format("{}-{:06x}", name, random() & 0xffffff);
}

std::chrono::milliseconds heartbeat_interval_from_core(std::uint32_t ms) {
  const std::chrono::milliseconds asked(ms);
  const auto interval =
      std::clamp<std::chrono::milliseconds>(asked, kMinHeartbeatInterval, kMaxHeartbeatInterval);
  if (interval != asked) {
    spdlog::warn(
        "the core asked for a heartbeat every {}; using {} (the agent keeps it between {} "
        "and {})",
        format_delay(asked), format_delay(interval), format_delay(kMinHeartbeatInterval),
        format_delay(kMaxHeartbeatInterval));
  }
  return interval;
}

bool refusal_is_retryable(std::string_view code, std::string_view error) {
  switch (protocol::refusal_kind(code)) {
    case protocol::RefusalKind::kFinal:
      return false;
    case protocol::RefusalKind::kRetry:
      return true;
    case protocol::RefusalKind::kUnknown:
      break;
  }
  const auto has = [&](std::string_view text) { return error.find(text) != error.npos; };
  // One final refusal among several tunnels' reasons makes the whole refusal final.
  for (std::string_view final : {"authentication failed", "may not use", "does not own",
                                 "is not a valid", "is not supported", "outside the ranges",
                                 "need protocol version", "ports.max_per_account"}) {
    if (has(final)) return false;
  }
  // "too many failed authentications from this address": another process behind the same
  // address guessed tokens; ours may be valid, so back off and retry.
  return error.starts_with("the core is shutting down") || has("max_agents") ||
         has("in use by another account") || has("reserved by another account") ||
         error.starts_with("too many failed authentications");
}

// One core: its address and what its sessions share.
struct Connector::CoreLink {
  common::NetAddress address;
  std::string name;             // "host:port", for messages
  std::size_t sessions = 0;     // open now
  bool connected_once = false;  // the first slot got an AUTH reply once
  bool refused = false;         // it refused the agent for good
  bool announced = false;
  // Per tunnel, the public port this core gave a tcp/udp tunnel that asked for port 0: the
  // other sessions (and reconnects) ask for that port, so that every session of the agent
  // serves the same one. 0 = not known (yet).
  std::vector<std::uint16_t> ports;
};

struct Connector::Live {
  std::shared_ptr<mux::Session> session;
  CoreLink* core = nullptr;
  std::shared_ptr<const std::vector<ForwardSpec>> tunnels;
  MonotonicTime started;
  bool ended = false;
  bool go_away = false;
  std::string reason;
};

Connector::Connector(asio::any_io_executor executor, ConnectorOptions options, TimeSource& time)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      time_(time),
      pool_(std::make_shared<LocalPool>(executor_, time_, options_.pool)),
      tunnels_(std::make_shared<const std::vector<ForwardSpec>>(options_.tunnels)),
      wake_(executor_) {
  std::vector<common::NetAddress> servers = options_.servers;
  if (servers.empty()) servers.push_back({options_.server_host, options_.server_port});
  for (auto& address : servers) {
    auto core = std::make_unique<CoreLink>();
    core->name = address.to_string();
    core->address = std::move(address);
    core->ports.assign(options_.tunnels.size(), 0);
    cores_.push_back(std::move(core));
  }
  options_.connections = std::max<std::size_t>(options_.connections, 1);
  for (const auto& tunnel : options_.tunnels) {
    health_.push_back({HealthState(tunnel.health.rise, tunnel.health.fall), {}});
  }
}

std::vector<std::string> Connector::core_names() const {
  std::vector<std::string> names;
  names.reserve(cores_.size());
  for (const auto& core : cores_) names.push_back(core->name);
  return names;
}

std::size_t Connector::live_sessions(std::size_t core) const {
  return core < cores_.size() ? cores_[core]->sessions : 0;
}

Connector::~Connector() {
  for (auto& live : live_) live->session->on_go_away = nullptr;
}

void Connector::stop() {
  stopping_ = true;
  wake_.notify();
}

asio::awaitable<Connector::Handshake> Connector::connect(CoreLink& core) {
  Handshake hs;
  const std::string& server = core.name;
  const transport::ClientTls* tls = options_.tls.context ? &options_.tls : nullptr;
  auto dialed = co_await transport::dial(executor_, core.address.host, core.address.port, tls,
                                         options_.dial_timeout);
  if (!dialed) {
    hs.error = std::move(dialed).error().message;
    // The server ended the TLS handshake: closed it (EOF), or reset it (it closed with our
    // ClientHello unread, as a core over its caps of connections before AUTH does at once).
    const bool in_handshake = tls != nullptr && hs.error.starts_with("TLS handshake with ");
    const bool closed = in_handshake && (hs.error.find("stream truncated") != std::string::npos ||
                                         hs.error.find("Connection reset") != std::string::npos);
    if (closed || (in_handshake && hs.error.find("wrong version number") != std::string::npos)) {
      const bool http = co_await answers_http(executor_, core.address.host, core.address.port,
                                              options_.dial_timeout);
      if (http) {
        hs.error += " (" + std::string(kHttpPortHint) + ")";
      } else if (closed) {
        hs.error +=
            " (the server closed the connection during the TLS handshake. A core does so at once "
            "while it holds limits.max_agent_handshakes connections before AUTH, or "
            "limits.max_agent_handshakes_per_address from this address (shared behind a NAT); "
            "that passes within seconds and the agent retries. If it is the core's plain-TCP "
            "agent listener, use --plain)";
      } else {
        hs.error +=
            " (the server closed the connection during the TLS handshake: if it is the core's "
            "plain-TCP agent listener, use --plain)";
      }
    }
    // An untrusted certificate will not become trusted by retrying: say so and stop.
    hs.final = hs.error.find("certificate verify failed") != std::string::npos;
    co_return hs;
  }
  std::unique_ptr<transport::Conn> conn = std::move(dialed).value();

  protocol::AuthRequest request;
  request.token = options_.token;
  request.agent_id = options_.agent_id;
  request.name = options_.name;
  request.group = options_.group;
  request.version = std::string(kAgentVersion);
  request.capabilities = {"http", "tcp", "udp"};
  if (options_.assigned) request.capabilities.emplace_back(protocol::kAssignedTunnels);
  request.protocol_versions = {protocol::kVersion2, protocol::kVersion1};
  request.initial_window = options_.initial_window;
  for (std::size_t i = 0; i < tunnels_->size(); ++i) {
    protocol::TunnelRequest t = (*tunnels_)[i].request;
    if (t.remote_port == 0 && i < core.ports.size()) t.remote_port = core.ports[i];
    request.tunnels.push_back(std::move(t));
  }
  const std::string body = protocol::serialize(request);
  transport::error_code ec;
  co_await mux::write_frame(*conn, protocol::kVersion1, FrameType::kAuth, 0, 0, mux::as_bytes(body),
                            ec);
  if (ec) {
    hs.error = "sending AUTH to " + server + ": " + ec.message();
    co_return hs;
  }

  // Nothing more is sent until the reply: the version may change right after it.
  mux::FrameReader reader(protocol::kVersion1, protocol::kMaxAuthPayload);
  mux::Frame frame;
  auto got = co_await with_timeout(reader.next(*conn, frame, ec), options_.handshake_timeout);
  if (!got) {
    hs.error =
        "no AUTH reply from " + server + " within " + format_delay(options_.handshake_timeout);
    co_return hs;
  }
  if (!*got) {
    hs.error = "reading the AUTH reply from " + server + ": " + got->error().message;
    // A protocol error (not a lost connection): maybe an HTTP server answered the frame.
    bool http = false;
    if (!ec) {
      http = co_await answers_http(executor_, core.address.host, core.address.port,
                                   options_.dial_timeout);
    }
    if (http) {
      hs.error += " (" + std::string(kHttpPortHint) + ")";
    } else if (!conn->is_tls()) {
      hs.error +=
          " (with --plain the server must be the core's plain-TCP agent listener, "
          "listen.agent_plain, not its TLS port)";
    }
    co_return hs;
  }
  if (frame.header.frame_type() != FrameType::kAuth || !frame.header.has(protocol::flags::kAck)) {
    hs.error = "the core at " + server + " answered AUTH with " +
               std::string(protocol::type_name(frame.header.type)) +
               (frame.header.has(protocol::flags::kAck) ? "|ACK" : " without ACK");
    co_return hs;
  }
  auto parsed = protocol::parse_auth_response(mux::as_text(frame.payload));
  if (!parsed) {
    hs.error = "invalid AUTH reply from " + server + ": " + parsed.error().message;
    co_return hs;
  }
  hs.reply = std::move(parsed.value());
  if (!hs.reply.success) {
    hs.error =
        hs.reply.error.empty() ? "the core refused the agent without a reason" : hs.reply.error;
    hs.final = !refusal_is_retryable(hs.reply.code, hs.reply.error);
    if (!hs.final &&
        (hs.reply.code == protocol::refusal::kNameTaken ||
         (hs.reply.code.empty() && hs.error.find("by another account") != std::string::npos))) {
      hs.error += " (retrying: the other account may release it)";
    }
    co_return hs;
  }
  const std::uint8_t version = hs.reply.protocol_version;
  if (version != protocol::kVersion1 && version != protocol::kVersion2) {
    hs.error = "the core chose protocol version " + std::to_string(version) +
               ", which this agent does not speak";
    hs.final = true;
    co_return hs;
  }

  mux::Options options;
  options.version = version;
  options.initial_window = options_.initial_window;
  options.window_growth_budget = options_.window_growth_budget;
  if (hs.reply.initial_window != 0) options.peer_initial_window = hs.reply.initial_window;
  if (hs.reply.heartbeat_interval_ms != 0) {
    options.heartbeat_interval = heartbeat_interval_from_core(hs.reply.heartbeat_interval_ms);
    options.heartbeat_timeout = std::max<std::chrono::milliseconds>(options.heartbeat_timeout,
                                                                    3 * options.heartbeat_interval);
  }
  reader.set_version(version);
  hs.tunnels = options_.assigned ? std::make_shared<const std::vector<ForwardSpec>>(
                                       assigned_tunnels(hs.reply, options_.allow_local))
                                 : tunnels_;
  if (options_.metrics != nullptr) {
    // Each tunnel's series, by the name the core gave it (its hostname), else its target.
    auto specs = *hs.tunnels;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const bool named = i < hs.reply.tunnels.size() && !hs.reply.tunnels[i].name.empty();
      specs[i].metrics =
          options_.metrics->tunnel(named ? hs.reply.tunnels[i].name : specs[i].request.local);
    }
    hs.tunnels = std::make_shared<const std::vector<ForwardSpec>>(std::move(specs));
  }
  hs.session = std::make_shared<mux::Session>(std::move(conn), std::move(reader), mux::Role::kAgent,
                                              options, "core " + server, time_);
  co_return hs;
}

void Connector::announce(const CoreLink& core, const protocol::AuthResponse& reply,
                         const std::vector<ForwardSpec>& tunnels, bool first) {
  spdlog::info("{} to {} as {} (protocol v{})", first ? "connected" : "reconnected", core.name,
               reply.agent_id.empty() ? options_.agent_id : reply.agent_id, reply.protocol_version);
  // The public addresses go to stdout, for scripts; the log (stderr) has them too unless both
  // are the same terminal, where they would show twice.
  const bool log_too = ::isatty(STDOUT_FILENO) == 0 || ::isatty(STDERR_FILENO) == 0;
  // The line holds what the core sent (the URL, the name): control characters are escaped, as
  // in the log, so a core cannot send escape sequences to the terminal.
  const auto forwarding = [&](const std::string& line) {
    std::fprintf(stdout, "Forwarding  %s\n", observability::escape_for_text_log(line).c_str());
    std::fflush(stdout);
    if (log_too) spdlog::info("Forwarding  {}", line);
  };
  for (std::size_t i = 0; i < reply.tunnels.size(); ++i) {
    const auto& t = reply.tunnels[i];
    const std::string local = i < tunnels.size() ? tunnels[i].request.local : "?";
    const std::string url = t.url.empty() ? t.name : t.url;
    if (t.ok && i < tunnels.size() && !tunnels[i].refused.empty()) {
      spdlog::warn("tunnel {} not forwarded: {}", url, tunnels[i].refused);
    } else if (t.ok && t.bandwidth != 0) {
      forwarding(fmt::format("{} -> {} (limited to {} each way)", url, local,
                             common::format_byte_rate(t.bandwidth)));
    } else if (t.ok) {
      forwarding(fmt::format("{} -> {}", url, local));
    } else {
      spdlog::warn("tunnel to {} refused: {}", local, t.error);
    }
  }
  if (options_.inspector != nullptr) {
    std::vector<InspectedTunnel> inspected;
    for (std::size_t i = 0; i < reply.tunnels.size(); ++i) {
      const auto& t = reply.tunnels[i];
      InspectedTunnel entry;
      entry.name = t.name;
      entry.public_url = t.url;
      entry.proto = t.type;
      entry.local = i < tunnels.size() ? tunnels[i].request.local : t.local;
      inspected.push_back(std::move(entry));
    }
    options_.inspector->set_tunnels(std::move(inspected));
  }
  if (reply.tunnels.empty() && options_.assigned) {
    spdlog::info(
        "no tunnels assigned to this agent yet: waiting for the core (assign one with POST "
        "/api/v1/tunnels {\"agent\": ID, \"local\": \"127.0.0.1:3000\", ...})");
  } else if (reply.tunnels.empty()) {
    for (const auto& t : tunnels) forwarding("(core-assigned) -> " + t.request.local);
  }
}

asio::awaitable<void> Connector::serve(std::shared_ptr<Live> live) {
  using namespace asio::experimental::awaitable_operators;
  std::string reason;
  try {
    reason = co_await (live->session->run() &&
                       accept_streams(live->session, pool_, live->tunnels, options_.inspector));
  } catch (const std::exception& e) {
    reason = std::string("session failed: ") + e.what();
    live->session->close(reason, false);
  }
  live->ended = true;
  if (live->reason.empty() || !live->go_away) live->reason = reason;
  live->session->on_go_away = nullptr;
  live->session->on_notice = nullptr;
  std::erase(live_, live);
  wake_.notify();
}

double Connector::rtt_seconds() const {
  if (live_.empty()) return 0;
  return std::chrono::duration<double>(live_.back()->session->rtt()).count();
}

asio::awaitable<void> Connector::drain(std::shared_ptr<Live> live,
                                       std::chrono::milliseconds grace) {
  if (grace.count() > 0) {
    // Requests the core routed here before it read our GOAWAY are still on their way.
    asio::steady_timer timer(executor_, grace);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_await live->session->wait_idle();
  live->session->close("drained after GOAWAY");
}

void Connector::log_core_status(const CoreLink& core) const {
  if (cores_.size() == 1 && options_.connections == 1) return;  // "connected to" says it all
  std::string others;
  for (const auto& other : cores_) {
    if (other.get() == &core) continue;
    others += fmt::format("{}{} {}/{}", others.empty() ? "; " : ", ", other->name, other->sessions,
                          options_.connections);
  }
  spdlog::info("core {}: {}/{} sessions{}", core.name, core.sessions, options_.connections, others);
}

asio::awaitable<void> Connector::run_slot(CoreLink& core, std::size_t slot) {
  using namespace asio::experimental::awaitable_operators;
  Backoff backoff(options_.backoff_base, options_.backoff_cap, std::random_device{}());
  const auto sleep = [this](std::chrono::milliseconds delay) -> asio::awaitable<void> {
    const auto deadline = Clock::now() + delay;
    while (!stopping_ && Clock::now() < deadline) co_await wake_.wait_for(deadline - Clock::now());
  };
  // The first session to a core claims the names and the ports the core picks; the others
  // join them once it is up.
  while (slot != 0 && !stopping_ && !core.connected_once && !core.refused) co_await wake_.wait();
  std::shared_ptr<Live> retiring;  // a session past its max age, replaced by the next one
  const auto retire = [&] {
    if (!retiring) return;
    if (!retiring->ended) {
      retiring->session->go_away(protocol::ErrorCode::kNoError, "session rotated (max age)");
      asio::co_spawn(executor_, drain(retiring, kRotationGrace), asio::detached);
    }
    retiring.reset();
  };

  const auto wait_for_stop = [this]() -> asio::awaitable<void> {
    while (!stopping_) co_await wake_.wait();
  };
  bool slot_first = true;
  while (!stopping_ && !core.refused) {
    auto attempt = co_await (connect(core) || wait_for_stop());
    if (attempt.index() == 1) break;
    Handshake hs = std::get<0>(std::move(attempt));
    if (!hs.session) {
      if (hs.final) {
        spdlog::error("{}{}", cores_.size() > 1 ? "core " + core.name + ": " : std::string(),
                      hs.error);
        refused_ = true;
        core.refused = true;
        break;
      }
      if (options_.metrics != nullptr) options_.metrics->connect_failures.inc();
      const auto delay = backoff.next();
      spdlog::warn("{}reconnecting in {}: {}",
                   cores_.size() > 1 ? "core " + core.name + ": " : std::string(),
                   format_delay(delay), hs.error);
      co_await sleep(delay);
      continue;
    }
    ++connects_;
    const bool first = slot == 0 && !core.announced;
    if (options_.metrics != nullptr) {
      options_.metrics->sessions.inc();
      if (!slot_first) options_.metrics->reconnects.inc();
    }
    slot_first = false;
    for (std::size_t i = 0; i < hs.reply.tunnels.size() && i < core.ports.size(); ++i) {
      const auto& t = hs.reply.tunnels[i];
      const auto colon = t.name.rfind(':');
      if (!t.ok || t.type == "http" || colon == std::string::npos) continue;
      std::uint16_t port = 0;
      const char* digits = t.name.data() + colon + 1;
      if (std::from_chars(digits, t.name.data() + t.name.size(), port).ec == std::errc{}) {
        core.ports[i] = port;
      }
    }
    if (slot == 0) {
      announce(core, hs.reply, *hs.tunnels, first);
      core.announced = true;
    }
    core.connected_once = true;

    auto live = std::make_shared<Live>();
    live->session = hs.session;
    live->core = &core;
    live->tunnels = hs.tunnels;
    live->started = time_.monotonic_time();
    live_.push_back(live);
    ++core.sessions;
    log_core_status(core);
    // A tunnel that is unhealthy now is withdrawn on this session too.
    for (std::size_t i = 0; i < health_.size() && !options_.assigned; ++i) {
      if (!health_[i].state.healthy()) {
        live->session->notice(static_cast<std::uint16_t>(i),
                              protocol::health_notice(false, health_[i].reason));
      }
    }
    wake_.notify();
    retire();
    std::weak_ptr<Live> weak = live;
    live->session->on_go_away = [this, weak](protocol::ErrorCode, const std::string& message) {
      if (auto l = weak.lock()) {
        l->go_away = true;
        l->reason = message;
        wake_.notify();
      }
    };
    live->session->on_notice = [tunnels = hs.tunnels](std::uint16_t index,
                                                      const std::string& message) {
      const std::string local = index < tunnels->size() ? (*tunnels)[index].request.local : "?";
      spdlog::warn("core, tunnel -> {}: {}", local, message);
    };
    asio::co_spawn(executor_, serve(live), asio::detached);

    const bool ages = options_.session_max_age.count() > 0;
    const auto expires = Clock::now() + options_.session_max_age;
    bool aged = false;
    while (!stopping_ && !live->ended && !live->go_away) {
      if (!ages) {
        co_await wake_.wait();
      } else if (Clock::now() >= expires) {
        aged = true;
        break;
      } else {
        co_await wake_.wait_for(expires - Clock::now());
      }
    }
    if (stopping_) break;
    const bool lasted = time_.monotonic_time() - live->started > options_.stable_after;
    if (aged) {
      // Rotation: the new session comes up first; this one drains once it is (retire()).
      spdlog::info("session to {} reached its max age ({}); opening its replacement", core.name,
                   format_delay(options_.session_max_age));
      --core.sessions;
      retiring = live;
      backoff.reset();
      continue;
    }
    --core.sessions;
    if (!live->ended) {
      // GOAWAY: the old session finishes its streams while a new one takes over, at once after
      // a session that lasted; a core that says GOAWAY right after AUTH gets the backoff.
      const std::string why = live->reason.empty() ? "no reason given" : live->reason;
      asio::co_spawn(executor_, drain(live), asio::detached);
      if (lasted) {
        backoff.reset();
        spdlog::info("the core {}is going away ({}); connecting again",
                     cores_.size() > 1 ? "at " + core.name + " " : std::string(), why);
        continue;
      }
      const auto delay = backoff.next();
      spdlog::warn("the core is going away ({}) {} after we connected; connecting again in {}", why,
                   format_elapsed(time_.monotonic_time() - live->started), format_delay(delay));
      co_await sleep(delay);
      continue;
    }
    log_core_status(core);
    if (lasted) backoff.reset();
    const auto delay = backoff.next();
    spdlog::warn("{}reconnecting in {}: {}",
                 cores_.size() > 1 ? "core " + core.name + ": " : std::string(),
                 format_delay(delay), live->reason.empty() ? "the session ended" : live->reason);
    co_await sleep(delay);
  }
  if (retiring && !retiring->ended) retiring->session->close("the agent is shutting down");
  --slots_running_;
  wake_.notify();
}

asio::awaitable<void> Connector::health_loop(std::size_t index) {
  using namespace asio::experimental::awaitable_operators;
  const ForwardSpec& tunnel = (*tunnels_)[index];
  const HealthCheckSpec& spec = tunnel.health;
  const auto wait_for_stop = [this]() -> asio::awaitable<void> {
    while (!stopping_) co_await wake_.wait();
  };
  spdlog::info(
      "tunnel -> {}: health check {} every {} (timeout {}, unhealthy after {} failures, "
      "healthy again after {} passes)",
      tunnel.request.local, spec.describe(), format_delay(spec.interval),
      format_delay(spec.timeout), spec.fall, spec.rise);
  while (!stopping_) {
    auto checked = co_await (run_health_check(executor_, spec, tunnel.local) || wait_for_stop());
    if (checked.index() == 1) break;
    const std::string why = std::get<0>(std::move(checked));
    TunnelHealth& health = health_[index];
    const bool passed = why.empty();
    if (health.state.observe(passed)) {
      health.reason = passed ? std::string() : why;
      if (passed) {
        spdlog::info("tunnel -> {} is healthy again ({} checks passed): the cores route to it",
                     tunnel.request.local, spec.rise);
      } else {
        spdlog::warn(
            "tunnel -> {} is unhealthy ({} checks failed, the last: {}): withdrawn from "
            "the cores until it recovers",
            tunnel.request.local, spec.fall, why);
      }
      for (const auto& live : live_) {
        if (!live->ended) {
          live->session->notice(static_cast<std::uint16_t>(index),
                                protocol::health_notice(passed, health.reason));
        }
      }
    } else if (!passed && health.state.healthy()) {
      spdlog::debug("tunnel -> {}: health check failed: {}", tunnel.request.local, why);
    }
    const auto deadline = Clock::now() + spec.interval;
    while (!stopping_ && Clock::now() < deadline) co_await wake_.wait_for(deadline - Clock::now());
  }
  --checks_running_;
  wake_.notify();
}

asio::awaitable<int> Connector::run() {
  if (!options_.assigned) {
    for (std::size_t i = 0; i < tunnels_->size(); ++i) {
      if (!(*tunnels_)[i].health.enabled()) continue;
      ++checks_running_;
      asio::co_spawn(executor_, health_loop(i), asio::detached);
    }
  }
  for (const auto& core : cores_) {
    for (std::size_t slot = 0; slot < options_.connections; ++slot) {
      ++slots_running_;
      asio::co_spawn(executor_, run_slot(*core, slot), asio::detached);
    }
  }
  // Until stop(), or every slot ended on a final refusal (a slot that is refused for good by
  // one core leaves the others running).
  while (!stopping_ && slots_running_ > 0) co_await wake_.wait();
  const int code = !stopping_ && refused_ ? 1 : 0;
  stopping_ = true;
  wake_.notify();
  while (slots_running_ > 0 || checks_running_ > 0) co_await wake_.wait();

  for (const auto& live : live_) live->session->close("the agent is shutting down");
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!live_.empty() && Clock::now() < deadline) {
    co_await wake_.wait_for(deadline - Clock::now());
  }
  pool_->clear();
  co_return code;
}

}  // namespace tunnel::agent

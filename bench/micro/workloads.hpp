// Workloads shared by the Google Benchmark binary (timing) and tunnel_micro_counts (instruction
// and allocation counts under callgrind). Everything here runs on one thread, uses no randomness
// of its own and no timers that fire during a run, so the same calls execute the same
// instructions every time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/frame.hpp"

namespace tunnel::bench {

// A fixed mix of frame headers (types, flags, stream ids and payload sizes drawn once from a
// fixed-seed generator, DATA-heavy as real traffic is) and their encoded bytes.
class FrameCorpus {
 public:
  FrameCorpus(std::uint8_t version, std::size_t count);

  // Encodes every header with protocol::encode_header; returns a checksum of the output.
  std::uint64_t encode_all();
  // Decodes every header with protocol::decode_header; returns a checksum (the number of bad
  // headers in the low bits, which must stay 0).
  std::uint64_t decode_all();
  // True when decoding the encoded headers gives back every field.
  bool round_trips();

  std::size_t size() const { return specs_.size(); }

 private:
  struct Spec {
    protocol::FrameType type;
    std::uint8_t flags;
    std::uint32_t stream_id;
    std::uint32_t payload;
  };
  std::uint8_t version_;
  std::vector<Spec> specs_;
  std::vector<std::uint8_t> wire_;  // kHeaderSize bytes per spec
};

enum class Workload {
  kGet,     // GET with browser-like headers, 612-byte response (the size of nginx's welcome page)
  kPost1k,  // POST with a 1 KiB body, small JSON response
  // kGet through a core whose limits.requests_per_second and limits.max_body_bytes are set (far
  // above what the rig reaches): the cost of the two filters those settings add to the chain.
  kGetLimits,
  // kGet through a route of a core with a store (issue 17): the account's AccountQuota held by
  // the route, its QuotaFilter in the tunnel's chain and its bucket in the route's throttle,
  // with no quota set: what every store-backed core pays.
  kGetQuota,
  // The same with max_connections, max_requests_per_second, bandwidth and bytes_per_month set
  // (far above what the rig reaches): the cost of enforcing them.
  kGetQuotaSet,
};
const char* workload_name(Workload workload);

// One proxied request path, in process on one io_context:
//   client --socketpair--> core::HttpFront::serve --mux::Session v2 over a socketpair-->
//   mux::Session --agent::forward_http + LocalPool--> origin (loopback TCP)
// The core and agent parts are the real ones (request head parsing and rewriting, routing,
// streams, frames, response parsing); the client and the origin are minimal stubs that write
// fixed bytes and count what they read. No TLS: OpenSSL would dominate the counts.
//
// Path::kDirect connects the client straight to the origin over loopback TCP: what the stubs and
// the event loop cost without the tunnel, to read the tunnel's counts against.
class ProxyRig {
 public:
  enum class Path { kTunnel, kDirect };
  explicit ProxyRig(Workload workload, Path path = Path::kTunnel);
  ~ProxyRig();
  ProxyRig(const ProxyRig&) = delete;
  ProxyRig& operator=(const ProxyRig&) = delete;

  // False with error() when the rig could not be set up (or a previous run failed).
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // Sends `n` requests one after another on one kept-alive client connection, each after the
  // previous response arrived completely. False with error() on a wrong or missing response.
  bool run(std::size_t n);
  // The same with `clients` connections at once (the first is run()'s; the others are opened on
  // first use and kept), each sending `per_client` requests: `clients` requests in flight, as
  // wrk -c keeps them. False with error() as run().
  bool run_concurrent(std::size_t clients, std::size_t per_client);

  // Bytes of one response as the client receives it.
  std::size_t response_size() const { return expected_; }

  struct State;  // the io_context, core, sessions, agent, client and origin (workloads.cpp)

 private:
  std::unique_ptr<State> state_;
  std::string error_;
  std::size_t expected_ = 0;
};

// Heap bytes and blocks held by idle mux sessions (v2, default options, no TLS), measured with
// the allocation hook: `count` core-role sessions are started over socketpairs and run until
// nothing is left to do, then `count` agent-role sessions on the other ends.
struct IdleSessionCost {
  std::size_t sessions = 0;
  double core_bytes = 0;  // per session
  double agent_bytes = 0;
  double core_blocks = 0;
  double agent_blocks = 0;
  std::string error;
};
IdleSessionCost measure_idle_sessions(std::size_t count);

}  // namespace tunnel::bench

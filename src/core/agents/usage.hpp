// Usage counted on the data path (issue 17): requests, bytes in and out, errors, per tunnel of
// the control plane's store and per account. A request adds to its route's counters with a few
// relaxed atomic additions; the control thread takes what was counted every
// store.usage_flush_interval and writes it to the store's hourly buckets in one transaction
// (core/live_control.cpp), so the data path never waits on the database.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace tunnel::core {

struct UsageCounters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> bytes_in{0};   // from public clients
  std::atomic<std::uint64_t> bytes_out{0};  // to public clients
  std::atomic<std::uint64_t> errors{0};     // answered 5xx, or a connection the agent broke

  void add(std::uint64_t in, std::uint64_t out, bool error) {
    requests.fetch_add(1, std::memory_order_relaxed);
    bytes_in.fetch_add(in, std::memory_order_relaxed);
    bytes_out.fetch_add(out, std::memory_order_relaxed);
    if (error) errors.fetch_add(1, std::memory_order_relaxed);
  }
};

// Every route's counters, by (account id, tunnel id) of the store; tunnel id 0 = the account's
// traffic through names the store does not reserve (configured patterns). Thread-safe.
class UsageBook {
 public:
  struct Sample {
    std::int64_t account_id = 0;
    std::int64_t tunnel_id = 0;
    std::uint64_t requests = 0, bytes_in = 0, bytes_out = 0, errors = 0;
  };

  // The shared counters of (account, tunnel): routes of several agents of one tunnel count
  // into the same ones.
  std::shared_ptr<UsageCounters> counters(std::int64_t account_id, std::int64_t tunnel_id);

  // What was counted since the last call, non-zero entries only; counters no route holds any
  // more are forgotten, so the book holds at most the tunnels being served.
  std::vector<Sample> take();

 private:
  std::mutex mutex_;
  std::map<std::pair<std::int64_t, std::int64_t>, std::shared_ptr<UsageCounters>> counters_;
};

}  // namespace tunnel::core

// Failed agent authentications per source address: slows token guessing and keeps the log
// readable during an attack.
//
// Each address (an IPv4 address, or an IPv6 /64, since one host usually owns a whole /64) has
// a token bucket of `burst` failures that refills one every `refill`. While the bucket is empty
// the address is refused before its token is even checked (`retry_after` > 0). Success does not
// refill the bucket: a tenant with one valid token must not be able to reset its guessing
// budget. At most `max_addresses` are tracked; when full, the address whose last failure is the
// oldest is forgotten (a flood of fresh addresses can only make the limiter forget, never grow).
//
// Logging: `record_failure` says whether to log this failure in full (the first from an
// address in each `log_interval`); the others are counted and `take_summaries` returns one
// count per address whose interval has ended, for one log line each.
//
// Thread-safe (one mutex; only failed and throttled AUTHs take it).
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tunnel::core {

class AuthLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    double burst = 10;                       // failures allowed in a row
    std::chrono::milliseconds refill{6000};  // one more failure allowed per this (10/minute)
    std::size_t max_addresses = 4096;        // tracked at once
    std::chrono::milliseconds log_interval{60000};
  };
  struct Summary {
    std::string address;         // the key: "192.0.2.7" or "2001:db8:1:2::/64"
    std::uint64_t failures = 0;  // not logged in full
  };

  AuthLimiter() : AuthLimiter(Options{}) {}
  explicit AuthLimiter(Options options) : options_(options) {}

  // The key for an IP address text ("192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7"), also with
  // a port ("192.0.2.7:443", "[2001:db8::1]:443"); the text itself when it is neither.
  static std::string key_of(std::string_view ip);

  // How long `ip` must wait before its AUTH is looked at; zero = now.
  std::chrono::milliseconds retry_after(std::string_view ip, Clock::time_point now);

  // Counts one failure. True = log it in full (the first from this address this interval).
  bool record_failure(std::string_view ip, Clock::time_point now);

  // Counts an AUTH refused because `retry_after` was not zero, for the summary only.
  void record_throttled(std::string_view ip);

  // Addresses with failures not logged in full whose interval has ended; their counts restart.
  std::vector<Summary> take_summaries(Clock::time_point now);

  std::size_t tracked() const;

 private:
  struct Entry {
    double tokens;
    Clock::time_point refilled;        // when `tokens` was last brought up to date
    Clock::time_point interval_start;  // of the current log interval
    std::uint64_t unlogged = 0;
    std::list<std::string>::iterator lru;
  };
  void refill(Entry& entry, Clock::time_point now) const;

  Options options_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // front = most recent failure
};

}  // namespace tunnel::core

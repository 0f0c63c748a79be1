// Agent connections that have not authenticated yet (TLS handshake, then waiting for AUTH),
// capped in all and per source address (an IPv4 address or an IPv6 /64, as AuthLimiter keys
// them), so that nobody can make the core hold thousands of connections before AUTH.
//
// `try_acquire` takes a slot or says which cap refused it; the slot (RAII) is given back when
// it is destroyed or released (AUTH succeeded). The per-address table holds only addresses
// with a slot taken, so it never holds more than `global` entries.
//
// Logging: `record_refusal` says whether to log a refusal in full (the first in each
// `log_interval`); the others are counted and `take_summary` returns them once the interval
// has ended, for one log line.
//
// Thread-safe (one mutex, taken twice per agent connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tunnel::core {

class HandshakeLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::size_t global = 512;      // limits.max_agent_handshakes
    std::size_t per_address = 16;  // limits.max_agent_handshakes_per_address
    std::chrono::milliseconds log_interval{60000};
  };
  enum class Refusal { kNone, kGlobal, kAddress };

  // A taken slot. Move-only; empty when default-constructed or moved from.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : limiter_(other.limiter_), key_(std::move(other.key_)) {
      other.limiter_ = nullptr;
    }
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        release();
        limiter_ = other.limiter_;
        key_ = std::move(other.key_);
        other.limiter_ = nullptr;
      }
      return *this;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { release(); }
    // Gives the slot back now (idempotent).
    void release();
    explicit operator bool() const { return limiter_ != nullptr; }

   private:
    friend class HandshakeLimiter;
    Slot(HandshakeLimiter* limiter, std::string key) : limiter_(limiter), key_(std::move(key)) {}
    HandshakeLimiter* limiter_ = nullptr;
    std::string key_;
  };

  struct Summary {
    std::uint64_t global = 0;   // refused over `global`, not logged in full
    std::uint64_t address = 0;  // refused over `per_address`, not logged in full
    std::string last_address;   // the key of the last of them
  };

  HandshakeLimiter() : HandshakeLimiter(Options{}) {}
  explicit HandshakeLimiter(Options options) : options_(options) {}

  // A slot for a connection from `ip` (an address, also "ip:port"), or an empty slot and
  // `why` set when a cap is reached.
  Slot try_acquire(std::string_view ip, Refusal& why);

  // Counts one refusal. True = log it in full (the first this interval).
  bool record_refusal(std::string_view ip, Refusal why, Clock::time_point now);
  // The refusals not logged in full, once their interval has ended (all zero otherwise).
  Summary take_summary(Clock::time_point now);

  std::size_t in_use() const;
  std::size_t in_use(std::string_view ip) const;
  std::size_t addresses() const;  // with a slot taken now
  const Options& options() const { return options_; }

 private:
  void give_back(const std::string& key);

  Options options_;
  mutable std::mutex mutex_;
  std::size_t in_use_ = 0;
  std::unordered_map<std::string, std::size_t> per_address_;
  Clock::time_point interval_start_{};
  Summary unlogged_;
};

}  // namespace tunnel::core

#include "core/control/auth_limiter.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cmath>

namespace tunnel::core {

std::string AuthLimiter::key_of(std::string_view ip) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(ip), ec);
  if (ec) {
    // A peer as "192.0.2.7:443" or "[2001:db8::1]:443".
    std::string_view host = ip;
    if (host.starts_with('[') && host.find(']') != host.npos) {
      host = host.substr(1, host.find(']') - 1);
    } else if (host.find(':') == host.rfind(':') && host.find(':') != host.npos) {
      host = host.substr(0, host.find(':'));
    }
    address = boost::asio::ip::make_address(std::string(host), ec);
    if (ec) return std::string(ip);
  }
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
  }
  if (address.is_v4()) return address.to_string();
  auto bytes = address.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

void AuthLimiter::refill(Entry& entry, Clock::time_point now) const {
  if (now <= entry.refilled) return;
  const double earned = std::chrono::duration<double>(now - entry.refilled) /
                        std::chrono::duration<double>(options_.refill);
  entry.tokens = std::min(options_.burst, entry.tokens + earned);
  entry.refilled = now;
}

std::chrono::milliseconds AuthLimiter::retry_after(std::string_view ip, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key_of(ip));
  if (it == entries_.end()) return std::chrono::milliseconds(0);
  refill(it->second, now);
  if (it->second.tokens >= 1) return std::chrono::milliseconds(0);
  const double missing = 1 - it->second.tokens;
  // The small subtraction keeps rounding noise (0.6 * 10000 = 6000.000001) from adding 1 ms.
  return std::chrono::milliseconds(static_cast<std::int64_t>(
      std::ceil(missing * static_cast<double>(options_.refill.count()) - 1e-6)));
}

bool AuthLimiter::record_failure(std::string_view ip, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::string key = key_of(ip);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (options_.max_addresses == 0) return true;
    if (entries_.size() >= options_.max_addresses) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    Entry fresh{options_.burst, now, now, 0, lru_.begin()};
    it = entries_.emplace(std::move(key), fresh).first;
    it->second.tokens = std::max(0.0, it->second.tokens - 1);
    return true;
  }
  Entry& entry = it->second;
  lru_.splice(lru_.begin(), lru_, entry.lru);
  refill(entry, now);
  entry.tokens = std::max(0.0, entry.tokens - 1);
  if (now - entry.interval_start >= options_.log_interval && entry.unlogged == 0) {
    entry.interval_start = now;
    return true;
  }
  ++entry.unlogged;
  return false;
}

void AuthLimiter::record_throttled(std::string_view ip) {
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(key_of(ip)); it != entries_.end()) ++it->second.unlogged;
}

std::vector<AuthLimiter::Summary> AuthLimiter::take_summaries(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<Summary> out;
  for (auto& [key, entry] : entries_) {
    if (entry.unlogged == 0 || now - entry.interval_start < options_.log_interval) continue;
    out.push_back({key, entry.unlogged});
    entry.unlogged = 0;
    entry.interval_start = now;
  }
  std::sort(out.begin(), out.end(),
            [](const Summary& a, const Summary& b) { return a.address < b.address; });
  return out;
}

std::size_t AuthLimiter::tracked() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace tunnel::core

#include "agent/local_pool.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

#include "common/async.hpp"

namespace tunnel::agent {
namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

LocalPool::LocalPool(asio::any_io_executor executor, TimeSource& time)
    : LocalPool(std::move(executor), time, Options{}) {}

LocalPool::LocalPool(asio::any_io_executor executor, TimeSource& time, Options options)
    : executor_(std::move(executor)), time_(time), options_(options) {}

LocalPool::IdleState LocalPool::idle_state(tcp::socket& socket) {
  if (!socket.is_open()) return IdleState::kClosed;
  char byte = 0;
  for (;;) {
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) return IdleState::kUnsolicited;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IdleState::kOpen
                                                              : IdleState::kClosed;
  }
}

std::string LocalPool::key(const common::NetAddress& target, std::string_view client) {
  std::string k = target.to_string();
  if (!client.empty()) {
    k += " for ";
    k += client;
  }
  return k;
}

asio::awaitable<common::Result<tcp::socket>> LocalPool::acquire(const common::NetAddress& target,
                                                                bool& reused,
                                                                std::string_view client) {
  reused = false;
  prune();
  if (auto it = idle_.find(key(target, client)); it != idle_.end()) {
    auto& list = it->second;
    while (!list.empty()) {
      tcp::socket socket = std::move(list.back().socket);
      list.pop_back();
      --total_;
      const IdleState state = idle_state(socket);
      if (state == IdleState::kOpen) {
        if (list.empty()) idle_.erase(it);
        reused = true;
        co_return std::move(socket);
      }
      if (state == IdleState::kUnsolicited) {
        boost::system::error_code ignored;
        spdlog::debug(
            "the local app at {} sent {} byte(s) on an idle keep-alive connection, answering no "
            "request; closing that connection instead of reusing it",
            target.to_string(), socket.available(ignored));
      }
    }
    idle_.erase(it);
  }

  const std::string where = "dial tcp " + target.to_string();
  tcp::resolver::results_type endpoints;
  boost::system::error_code not_ip;
  const auto ip = asio::ip::make_address(target.host, not_ip);
  if (not_ip) {
    tcp::resolver resolver(executor_);
    auto [rec, results] =
        co_await resolver.async_resolve(target.host, std::to_string(target.port), kNoThrow);
    if (rec) co_return common::fail(where + ": " + rec.message());
    endpoints = std::move(results);
  } else {
    endpoints = tcp::resolver::results_type::create(tcp::endpoint(ip, target.port), target.host,
                                                    std::to_string(target.port));
  }
  tcp::socket socket(executor_);
  auto connected = co_await with_timeout(asio::async_connect(socket, endpoints, kNoThrow),
                                         options_.connect_timeout);
  if (!connected) {
    co_return common::fail(where + ": timed out after " +
                           std::to_string(options_.connect_timeout.count()) + " ms");
  }
  if (const auto& [cec, endpoint] = *connected; cec) {
    (void)endpoint;
    co_return common::fail(where + ": " + cec.message());
  }
  boost::system::error_code opt_ec;
  socket.set_option(tcp::no_delay(true), opt_ec);
  co_return std::move(socket);
}

void LocalPool::release(const common::NetAddress& target, tcp::socket socket,
                        std::string_view client) {
  prune();
  if (!socket.is_open() || options_.max_idle_per_target == 0 || options_.max_idle_total == 0) {
    return;
  }
  if (total_ >= options_.max_idle_total) evict_oldest();
  auto& list = idle_[key(target, client)];
  if (list.size() >= options_.max_idle_per_target) {
    list.pop_front();  // the oldest goes
    --total_;
  }
  list.push_back(Idle{std::move(socket), time_.monotonic_time()});
  ++total_;
}

void LocalPool::evict_oldest() {
  auto oldest = idle_.end();
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (oldest == idle_.end() || it->second.front().since < oldest->second.front().since) {
      oldest = it;
    }
  }
  if (oldest == idle_.end()) return;
  oldest->second.pop_front();
  --total_;
  if (oldest->second.empty()) idle_.erase(oldest);
}

void LocalPool::prune() {
  const auto oldest = time_.monotonic_time() - options_.idle_timeout;
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    while (!list.empty() && list.front().since <= oldest) {
      list.pop_front();
      --total_;
    }
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

std::size_t LocalPool::idle_count() const {
  return total_;
}

std::size_t LocalPool::idle_count(const common::NetAddress& target, std::string_view client) const {
  const auto it = idle_.find(key(target, client));
  return it == idle_.end() ? 0 : it->second.size();
}

}  // namespace tunnel::agent

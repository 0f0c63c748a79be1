#include "agent/local_pool.hpp"

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

LocalPool::LocalPool(asio::any_io_executor executor) : LocalPool(std::move(executor), Options{}) {}

LocalPool::LocalPool(asio::any_io_executor executor, Options options)
    : executor_(std::move(executor)), options_(options) {}

bool LocalPool::still_open(tcp::socket& socket) {
  if (!socket.is_open()) return false;
  char byte = 0;
  for (;;) {
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    // 0: the app closed it; > 0: bytes nobody asked for (the exchange is out of step).
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

asio::awaitable<std::optional<tcp::socket>> LocalPool::acquire(const common::NetAddress& target,
                                                               bool& reused, std::string& error) {
  reused = false;
  prune();
  const std::string key = target.to_string();
  if (auto it = idle_.find(key); it != idle_.end()) {
    auto& list = it->second;
    while (!list.empty()) {
      tcp::socket socket = std::move(list.back().socket);
      list.pop_back();
      if (still_open(socket)) {
        if (list.empty()) idle_.erase(it);
        reused = true;
        co_return std::optional<tcp::socket>(std::move(socket));
      }
    }
    idle_.erase(it);
  }

  const std::string where = "dial tcp " + key;
  tcp::resolver::results_type endpoints;
  boost::system::error_code not_ip;
  const auto ip = asio::ip::make_address(target.host, not_ip);
  if (not_ip) {
    tcp::resolver resolver(executor_);
    auto [rec, results] =
        co_await resolver.async_resolve(target.host, std::to_string(target.port), kNoThrow);
    if (rec) {
      error = where + ": " + rec.message();
      co_return std::nullopt;
    }
    endpoints = std::move(results);
  } else {
    endpoints = tcp::resolver::results_type::create(tcp::endpoint(ip, target.port), target.host,
                                                    std::to_string(target.port));
  }
  tcp::socket socket(executor_);
  auto connected = co_await with_timeout(asio::async_connect(socket, endpoints, kNoThrow),
                                         options_.connect_timeout);
  if (!connected) {
    error = where + ": timed out after " + std::to_string(options_.connect_timeout.count()) + " ms";
    co_return std::nullopt;
  }
  if (const auto& [cec, endpoint] = *connected; cec) {
    (void)endpoint;
    error = where + ": " + cec.message();
    co_return std::nullopt;
  }
  boost::system::error_code opt_ec;
  socket.set_option(tcp::no_delay(true), opt_ec);
  co_return std::optional<tcp::socket>(std::move(socket));
}

void LocalPool::release(const common::NetAddress& target, tcp::socket socket) {
  prune();
  if (!socket.is_open() || options_.max_idle_per_target == 0) return;
  auto& list = idle_[target.to_string()];
  if (list.size() >= options_.max_idle_per_target) list.pop_front();  // the oldest goes
  list.push_back(Idle{std::move(socket), Clock::now()});
}

void LocalPool::prune() {
  const auto oldest = Clock::now() - options_.idle_timeout;
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    while (!list.empty() && list.front().since <= oldest) list.pop_front();
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

std::size_t LocalPool::idle_count() const {
  std::size_t n = 0;
  for (const auto& [key, list] : idle_) n += list.size();
  return n;
}

std::size_t LocalPool::idle_count(const common::NetAddress& target) const {
  const auto it = idle_.find(target.to_string());
  return it == idle_.end() ? 0 : it->second.size();
}

}  // namespace tunnel::agent

// Live updates of the inspector (GET /api/requests/http/stream, Server-Sent Events): a hub of
// subscribers, each with its own bounded queue of events. Publishing never waits: a subscriber
// whose queue is over its bound (it does not read fast enough) is dropped, its queue freed,
// and its writer woken to close the connection. One executor, no locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tunnel::agent {

class EventHub {
 public:
  static constexpr std::size_t kMaxSubscribers = 8;
  static constexpr std::size_t kMaxQueuedBytes = 1024 * 1024;

  struct Subscriber {
    std::deque<std::string> queue;  // events not yet written
    std::size_t bytes = 0;          // in `queue`
    bool dropped = false;           // over its bound: the writer closes
    std::function<void()> wake;     // tells the writer there is something to do
  };

  // A new subscriber, or nullptr when kMaxSubscribers are connected.
  std::shared_ptr<Subscriber> subscribe(std::function<void()> wake);
  void unsubscribe(const std::shared_ptr<Subscriber>& subscriber);
  // Queues `event` for every subscriber; drops those over kMaxQueuedBytes.
  void publish(const std::string& event);

  bool empty() const { return subscribers_.empty(); }
  std::size_t size() const { return subscribers_.size(); }
  std::uint64_t dropped() const { return dropped_; }

 private:
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
  std::uint64_t dropped_ = 0;
};

}  // namespace tunnel::agent

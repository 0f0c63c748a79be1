#include "agent/inspector_events.hpp"

#include <algorithm>
#include <utility>

namespace tunnel::agent {

std::shared_ptr<EventHub::Subscriber> EventHub::subscribe(std::function<void()> wake) {
  if (subscribers_.size() >= kMaxSubscribers) return nullptr;
  auto subscriber = std::make_shared<Subscriber>();
  subscriber->wake = std::move(wake);
  subscribers_.push_back(subscriber);
  return subscriber;
}

void EventHub::unsubscribe(const std::shared_ptr<Subscriber>& subscriber) {
  std::erase(subscribers_, subscriber);
}

void EventHub::publish(const std::string& event) {
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    Subscriber& s = **it;
    if (s.bytes + event.size() > kMaxQueuedBytes) {
      // Too slow: let it go rather than hold memory or wait for it.
      s.dropped = true;
      s.queue.clear();
      s.bytes = 0;
      ++dropped_;
      if (s.wake) s.wake();
      it = subscribers_.erase(it);
      continue;
    }
    s.queue.push_back(event);
    s.bytes += event.size();
    if (s.wake) s.wake();
    ++it;
  }
}

}  // namespace tunnel::agent

#include "agent/inspector_events.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tunnel::agent {
namespace {

TEST(InspectorEvents, EachSubscriberGetsEveryEventAndIsWoken) {
  EventHub hub;
  int woken = 0;
  auto a = hub.subscribe([&] { ++woken; });
  auto b = hub.subscribe(nullptr);
  ASSERT_TRUE(a && b);
  hub.publish("one");
  hub.publish("two");
  EXPECT_EQ(woken, 2);
  EXPECT_EQ(a->queue, (std::deque<std::string>{"one", "two"}));
  EXPECT_EQ(b->queue, a->queue);
  EXPECT_EQ(a->bytes, 6u);
  hub.unsubscribe(b);
  hub.publish("three");
  EXPECT_EQ(b->queue.size(), 2u);
  EXPECT_EQ(a->queue.size(), 3u);
}

TEST(InspectorEvents, SubscribersAreBounded) {
  EventHub hub;
  std::vector<std::shared_ptr<EventHub::Subscriber>> held;
  for (std::size_t i = 0; i < EventHub::kMaxSubscribers; ++i) {
    held.push_back(hub.subscribe(nullptr));
    ASSERT_NE(held.back(), nullptr);
  }
  EXPECT_EQ(hub.subscribe(nullptr), nullptr);
  hub.unsubscribe(held.back());
  EXPECT_NE(hub.subscribe(nullptr), nullptr);
}

TEST(InspectorEvents, ASlowSubscriberIsDroppedNotWaitedFor) {
  EventHub hub;
  int woken = 0;
  auto slow = hub.subscribe([&] { ++woken; });
  auto fast = hub.subscribe(nullptr);
  const std::string event(64 * 1024, 'e');
  for (int i = 0; i < 100; ++i) {
    hub.publish(event);
    fast->queue.clear();  // this one keeps up
    fast->bytes = 0;
    ASSERT_LE(slow->bytes, EventHub::kMaxQueuedBytes);
  }
  EXPECT_TRUE(slow->dropped);
  EXPECT_TRUE(slow->queue.empty());  // its memory is freed at once
  EXPECT_FALSE(fast->dropped);
  EXPECT_EQ(hub.size(), 1u);
  EXPECT_EQ(hub.dropped(), 1u);
  EXPECT_EQ(woken, 17);  // 16 events fit, the 17th dropped it (and woke it to close)
}

}  // namespace
}  // namespace tunnel::agent

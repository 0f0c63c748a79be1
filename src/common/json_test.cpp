#include "common/json.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

TEST(JsonUniqueKeys, ParsesADocumentWithoutRepeatedKeys) {
  const auto parsed = parse_json_unique_keys(R"({"a": 1, "b": {"a": 2}, "c": [{"a": 3}]})");
  EXPECT_EQ(parsed.duplicate, "");
  ASSERT_TRUE(parsed.value.is_object());
  EXPECT_EQ(parsed.value["b"]["a"], 2) << "the same key in another object is no repeat";
}

TEST(JsonUniqueKeys, RefusesAKeyRepeatedAtAnyDepth) {
  auto top = parse_json_unique_keys(R"({"sub": "alice", "sub": "admin"})");
  EXPECT_EQ(top.duplicate, "sub");
  EXPECT_TRUE(top.value.is_discarded()) << "nlohmann would keep the last value";
  auto nested = parse_json_unique_keys(R"({"a": {"x": 1, "y": 2, "x": 3}})");
  EXPECT_EQ(nested.duplicate, "x");
  EXPECT_TRUE(nested.value.is_discarded());
  auto in_array = parse_json_unique_keys(R"([{"k": 1}, {"k": 1, "k": 2}])");
  EXPECT_EQ(in_array.duplicate, "k");
  // The first repeated key is named.
  EXPECT_EQ(parse_json_unique_keys(R"({"a": 1, "b": 1, "b": 2, "a": 2})").duplicate, "b");
}

TEST(JsonUniqueKeys, InvalidJsonIsDiscardedWithoutADuplicate) {
  for (const char* text : {"", "{", "{\"a\": }", "nul", "{\"a\": 1} x"}) {
    const auto parsed = parse_json_unique_keys(text);
    EXPECT_TRUE(parsed.value.is_discarded()) << text;
    EXPECT_EQ(parsed.duplicate, "") << text;
  }
  EXPECT_EQ(parse_json_unique_keys("[1, 2]").value.size(), 2u);
}

}  // namespace
}  // namespace tunnel::common

#include "config_reader.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

TEST(ConfigReader, SuggestsCloseKeys) {
  EXPECT_EQ(closest_key("listn", {"domain", "listen", "limits"}), "listen");
  EXPECT_EQ(closest_key("heartbeet", {"heartbeat", "log"}), "heartbeat");
  EXPECT_EQ(closest_key("zzzzzz", {"domain", "listen"}), "");
}

TEST(ConfigReader, FormatsErrorsWithFileAndPosition) {
  std::vector<ConfigError> errors = {{12, 5, "accounts[0].tokens: bad"}, {0, 0, "TUNNEL_X: bad"}};
  EXPECT_EQ(format_errors(errors, "core.yaml"),
            "core.yaml:12:5: accounts[0].tokens: bad\ncore.yaml: TUNNEL_X: bad\n");
  EXPECT_EQ(format_errors({{0, 0, "x"}}, ""), "x\n");
}

TEST(ConfigReader, ReportsSyntaxErrorsWithLine) {
  ConfigReader reader;
  EXPECT_FALSE(reader.parse("a: 1\nb: [1, 2\n"));
  auto errors = reader.take_errors();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_GE(errors[0].line, 2);
  EXPECT_NE(errors[0].message.find("YAML syntax error"), std::string::npos);
}

TEST(ConfigReader, CollectsAllTypeErrorsAndKeepsDefaults) {
  ConfigReader reader;
  auto root = reader.parse("n: ten\nd: 5x\nb: maybe\nl: abc\nlistn: 1\nn: 3\nok: 7\n");
  ASSERT_TRUE(root);
  auto fields = reader.fields(*root, "", {"n", "d", "b", "l", "ok", "listen"});
  ASSERT_TRUE(fields);
  std::uint64_t n = 42;
  std::uint64_t ok = 0;
  std::chrono::milliseconds d{1};
  bool b = true;
  std::vector<std::string> l = {"x"};
  EXPECT_FALSE(reader.read(*fields, "n", "", n));
  EXPECT_FALSE(reader.read(*fields, "d", "", d));
  EXPECT_FALSE(reader.read(*fields, "b", "", b));
  EXPECT_FALSE(reader.read(*fields, "l", "", l));
  EXPECT_TRUE(reader.read(*fields, "ok", "", ok));
  EXPECT_EQ(n, 42u);
  EXPECT_EQ(d.count(), 1);
  EXPECT_TRUE(b);
  EXPECT_EQ(l, std::vector<std::string>{"x"});
  EXPECT_EQ(ok, 7u);
  reader.error("n", "suppressed because n already failed");
  auto errors = reader.take_errors();
  ASSERT_EQ(errors.size(), 6u);
  EXPECT_EQ(errors[0].line, 1);
  EXPECT_EQ(errors[0].message, "n: expected a non-negative integer, got \"ten\"");
  EXPECT_EQ(errors[1].line, 2);
  EXPECT_EQ(errors[4].line, 5);
  EXPECT_EQ(errors[4].message, "unknown key \"listn\" (did you mean \"listen\"?)");
  EXPECT_EQ(errors[5].line, 6);
  EXPECT_NE(errors[5].message.find("duplicate key"), std::string::npos);
}

TEST(ConfigReader, ValidationErrorsFindTheNearestPosition) {
  ConfigReader reader;
  auto root = reader.parse("top:\n  inner:\n    leaf: 1\n");
  auto top = reader.fields(*root, "", {"top"});
  auto inner = reader.fields((*top)["top"], "top", {"inner"});
  reader.fields((*inner)["inner"], "top.inner", {"leaf"});
  reader.error("top.inner.leaf", "bad leaf");
  reader.error("top.inner.missing", "missing");
  auto errors = reader.take_errors();
  ASSERT_EQ(errors.size(), 2u);
  // An absent key is placed at its parent mapping, which starts at line 3, column 5.
  EXPECT_EQ(errors[0].line, 3);
  EXPECT_EQ(errors[0].column, 5);
  EXPECT_EQ(errors[0].message, "top.inner.missing: missing");
  EXPECT_EQ(errors[1].line, 3);
  EXPECT_EQ(errors[1].column, 11);
}

}  // namespace
}  // namespace tunnel::common

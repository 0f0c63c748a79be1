#include "core/reload.hpp"

#include <gtest/gtest.h>

namespace tunnel::core {
namespace {

using Keys = std::vector<std::string>;

TEST(CoreReload, CertificatesAreLiveTheRestNeedsARestart) {
  const std::string before =
      "domain: example.com\n"
      "listen: {agent: \":8443\", http: \":80\"}\n"
      "tls: {cert: /etc/a.crt, key: /etc/a.key}\n"
      "log: {level: info, format: text}\n"
      "accounts:\n  - {name: alice, tokens: [aaaaaaaaaaaaaaaaaaaa]}\n";
  // Only comments and layout differ: nothing changed.
  const auto same = compare_config_files(before, "# a comment\n" + before);
  EXPECT_EQ(same.live, Keys{});
  EXPECT_EQ(same.restart, Keys{});

  const std::string after =
      "domain: example.com\n"
      "listen: {agent: \":8443\", http: \":8080\"}\n"
      "tls: {cert: /etc/b.crt, key: /etc/b.key}\n"
      "log: {level: debug, format: json}\n"
      "accounts:\n  - {name: alice, tokens: [bbbbbbbbbbbbbbbbbbbb]}\n"
      "trusted_proxies: [10.0.0.1]\n";
  const auto changes = compare_config_files(before, after);
  EXPECT_EQ(changes.live, (Keys{"tls"}));
  EXPECT_EQ(changes.restart, (Keys{"accounts", "listen", "log", "trusted_proxies"}));
}

TEST(CoreReload, TextThatIsNotAMappingComparesAsEmpty) {
  const auto changes = compare_config_files("domain: a\n", "[unclosed");
  EXPECT_EQ(changes.restart, Keys{"domain"});
}

}  // namespace
}  // namespace tunnel::core

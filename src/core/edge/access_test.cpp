#include "core/edge/access.hpp"

#include <gtest/gtest.h>

#include "core/edge/http_filters.hpp"

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;

AddressRules rules(std::string level, std::vector<std::string> allow,
                   std::vector<std::string> deny) {
  auto parsed = address_rules(std::move(level), allow, deny);
  EXPECT_TRUE(parsed) << parsed.error().message;
  return parsed ? std::move(parsed).value() : AddressRules{};
}

std::string basic(std::string_view user_password) {
  // Base64 of a short ASCII string, enough for these tests.
  static constexpr std::string_view kB64 =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "Basic ";
  std::size_t i = 0;
  for (; i + 3 <= user_password.size(); i += 3) {
    const auto n = (static_cast<unsigned>(static_cast<unsigned char>(user_password[i])) << 16) |
                   (static_cast<unsigned>(static_cast<unsigned char>(user_password[i + 1])) << 8) |
                   static_cast<unsigned char>(user_password[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kB64[(n >> s) & 63];
  }
  const std::size_t rest = user_password.size() - i;
  if (rest > 0) {
    unsigned n = static_cast<unsigned>(static_cast<unsigned char>(user_password[i])) << 16;
    if (rest == 2)
      n |= static_cast<unsigned>(static_cast<unsigned char>(user_password[i + 1])) << 8;
    out += kB64[(n >> 18) & 63];
    out += kB64[(n >> 12) & 63];
    out += rest == 2 ? kB64[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

struct Request {
  http::RequestHead head;
  Decision decision;
  std::string prefix;
  FilterRequest filtered{head, decision, "192.0.2.7:5000", "", false, prefix};
  explicit Request(std::vector<http::Header> fields, const char* peer = "192.0.2.7:5000") {
    head.method = "GET";
    head.target = "/";
    head.headers = std::move(fields);
    decision.host = "app.example";
    filtered.client_peer = peer;
  }
};

TEST(Access, EveryLevelMustLetTheAddressPass) {
  const std::vector<AddressRules> levels = {
      rules("the core", {}, {"203.0.113.0/24"}),
      rules("account acme", {"192.0.2.0/24", "2001:db8::/32"}, {}),
      rules("the tunnel", {}, {"192.0.2.66"}),
  };
  EXPECT_EQ(refuse_address(levels, "192.0.2.7"), std::nullopt);
  EXPECT_EQ(refuse_address(levels, "2001:db8::1"), std::nullopt);
  EXPECT_EQ(refuse_address(levels, "::ffff:192.0.2.7"), std::nullopt);  // IPv4-mapped
  EXPECT_EQ(refuse_address(levels, "203.0.113.9"),
            "client address 203.0.113.9 is denied by the core (cidr_deny 203.0.113.0/24)");
  EXPECT_EQ(refuse_address(levels, "198.51.100.1"),
            "client address 198.51.100.1 is not in the cidr_allow list of account acme");
  EXPECT_EQ(refuse_address(levels, "192.0.2.66"),
            "client address 192.0.2.66 is denied by the tunnel (cidr_deny 192.0.2.66/32)");
  EXPECT_EQ(refuse_address(levels, "not-an-ip"),
            "the client address is unknown and the core has address rules");
  EXPECT_EQ(refuse_address({}, "not-an-ip"), std::nullopt);
}

TEST(Access, BadEntriesAreNamed) {
  auto bad = address_rules("the tunnel", {"10.0.0.0/8", "10.0.0.0/33"}, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, R"(cidr_allow[1]: "10.0.0.0/33": prefix length above 32)");
  protocol::TunnelRequest tunnel;
  tunnel.cidr_deny = {"nonsense"};
  Config config;
  Account account;
  account.name = "acme";
  EXPECT_EQ(access_levels(config, account, tunnel).error().message,
            R"(cidr_deny[0]: "nonsense": not an IP address or CIDR range)");
  config.access.cidr_allow = {"300.1.1.1"};
  EXPECT_EQ(access_levels(config, account, protocol::TunnelRequest{}).error().message,
            R"(the core: cidr_allow[0]: "300.1.1.1": not an IP address or CIDR range)");
}

TEST(Access, TheClientBehindATrustedProxyIsTheNearestUntrustedHop) {
  const ForwardingPolicy forwarding = forwarding_policy({"10.0.0.0/8"});
  const auto head = [](std::vector<http::Header> fields) {
    http::RequestHead h;
    h.headers = std::move(fields);
    return h;
  };
  // Not from a trusted proxy: its X-Forwarded-For is the client's own words.
  EXPECT_EQ(client_address("192.0.2.7", head({{"X-Forwarded-For", "10.1.1.1"}}), forwarding),
            "192.0.2.7");
  EXPECT_EQ(
      client_address("10.0.0.2", head({{"X-Forwarded-For", "1.2.3.4, 198.51.100.9, 10.0.0.3"}}),
                     forwarding),
      "198.51.100.9");  // 1.2.3.4 may be forged by 198.51.100.9
  EXPECT_EQ(
      client_address("10.0.0.2",
                     head({{"X-Forwarded-For", "198.51.100.9"}, {"x-forwarded-for", "10.0.0.4"}}),
                     forwarding),
      "198.51.100.9");
  EXPECT_EQ(
      client_address("10.0.0.2", head({{"X-Forwarded-For", "10.0.0.5, 10.0.0.6"}}), forwarding),
      "10.0.0.5");
  EXPECT_EQ(client_address("10.0.0.2", head({}), forwarding), "10.0.0.2");
  EXPECT_EQ(ip_of_peer("[2001:db8::1]:443"), "2001:db8::1");
  EXPECT_EQ(ip_of_peer("192.0.2.1:80"), "192.0.2.1");
}

TEST(Access, BasicCredentialsAreHashesFromAgents) {
  auto plain = parse_basic_credential("ann:password1", true);
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(plain.value().user, "ann");
  EXPECT_TRUE(common::verify_password(plain.value().hash, "password1"));
  EXPECT_EQ(parse_basic_credential("ann:password1", false).error().message,
            "user ann: send a password hash ($pbkdf2-sha256$...), not the password");
  EXPECT_EQ(parse_basic_credential("ann:short", true).error().message,
            "user ann: the password must be 8 to 128 characters");
  EXPECT_EQ(parse_basic_credential(":x", true).error().message,
            "a Basic credential is USER:PASSWORD (or USER:HASH): the user is missing");
  protocol::TunnelRequest tcp;
  tcp.type = "tcp";
  tcp.basic_auth = {"ann:" + common::hash_password("password1", 1000).to_string()};
  EXPECT_EQ(basic_credentials(tcp).error().message,
            "basic_auth is for http tunnels (this one is tcp)");
  protocol::TunnelRequest http;
  http.basic_auth = {tcp.basic_auth[0], "bob:$pbkdf2-sha256$5$x$y"};
  EXPECT_EQ(
      basic_credentials(http).error().message,
      "basic_auth[1]: user bob: the rounds of a password hash must be 1000..20000, not \"5\"");
}

TEST(Access, TheGateChecksRemembersAndBoundsItsWork) {
  SimulatedTimeSource time;
  BasicCredential ann{"ann", common::hash_password("password1", 1000)};
  BasicAuthGate gate({ann}, time);
  using Outcome = BasicAuthGate::Outcome;
  EXPECT_EQ(gate.check(""), Outcome::kMissing);
  EXPECT_EQ(gate.check(basic("ann:password1")), Outcome::kOk);
  EXPECT_EQ(gate.check("basic " + basic("ann:password1").substr(6)), Outcome::kOk);
  EXPECT_EQ(gate.verified(), 2u);
  EXPECT_EQ(gate.check(basic("ann:password2")), Outcome::kWrong);
  EXPECT_EQ(gate.check(basic("bob:password1")), Outcome::kWrong);
  EXPECT_EQ(gate.check("Bearer abc"), Outcome::kWrong);
  EXPECT_EQ(gate.check("Basic !!!"), Outcome::kWrong);
  // The burst of new values is bounded (2x kChecksPerSecond); a verified one still passes.
  int busy = 0;
  for (int i = 0; i < 40; ++i) {
    if (gate.check(basic("ann:wrong" + std::to_string(i))) == Outcome::kBusy) ++busy;
  }
  EXPECT_GT(busy, 0);
  EXPECT_EQ(gate.check(basic("ann:password1")), Outcome::kOk);
  EXPECT_EQ(gate.check(basic("ann:password3")), Outcome::kBusy);
  time.advance(1s);
  EXPECT_EQ(gate.check(basic("ann:password3")), Outcome::kWrong);
}

TEST(Access, TheFilterRefusesAddressesAndAsksForCredentials) {
  SimulatedTimeSource time;
  auto gate = std::make_shared<BasicAuthGate>(
      std::vector<BasicCredential>{{"ann", common::hash_password("password1", 1000)}}, time);
  AccessFilter filter({rules("the tunnel", {}, {"198.51.100.0/24"})}, gate, forwarding_policy({}));

  Request denied({}, "198.51.100.4:1234");
  auto verdict = filter.on_request_head(denied.filtered);
  EXPECT_EQ(verdict.answer.status, 403);
  EXPECT_EQ(verdict.answer.detail,
            "app.example: client address 198.51.100.4 is denied by the tunnel (cidr_deny "
            "198.51.100.0/24).");

  Request none({});
  verdict = filter.on_request_head(none.filtered);
  EXPECT_EQ(verdict.answer.status, 401);
  EXPECT_EQ(verdict.answer.detail, "app.example: this tunnel needs a user and password.");
  EXPECT_EQ(verdict.answer.headers,
            "WWW-Authenticate: Basic realm=\"tunnel\", charset=\"UTF-8\"\r\n");

  Request wrong({{"Authorization", basic("ann:nope-nope")}});
  verdict = filter.on_request_head(wrong.filtered);
  EXPECT_EQ(verdict.answer.status, 401);
  EXPECT_EQ(verdict.answer.detail, "app.example: the user or password is wrong.");

  Request right({{"Authorization", basic("ann:password1")}, {"X-Other", "1"}});
  EXPECT_TRUE(filter.on_request_head(right.filtered).proceed());
  EXPECT_EQ(right.head.find("Authorization"), nullptr) << "the app must not see the credential";
  EXPECT_NE(right.head.find("X-Other"), nullptr);
}

TEST(Access, TunnelChainsPutAccessFirstAndRefuseBadRules) {
  SimulatedTimeSource time;
  Config config;
  Account account;
  account.name = "acme";
  const AccessScope scope{config, account, time};
  protocol::TunnelRequest plain;
  EXPECT_FALSE(tunnel_filters(plain, nullptr, &scope).value());  // nothing configured: no chain

  config.access.cidr_deny = {"198.51.100.0/24"};  // the core's rule reaches every tunnel
  const auto chain = tunnel_filters(plain, nullptr, &scope).value();
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->filters().front()->name(), "access");
  Request denied({}, "198.51.100.4:1234");
  EXPECT_EQ(chain->request_head(denied.filtered).answer.status, 403);

  protocol::TunnelRequest bad;
  bad.cidr_allow = {"10.0.0.0/40"};
  EXPECT_EQ(tunnel_filters(bad, nullptr, &scope).error().message,
            R"(cidr_allow[0]: "10.0.0.0/40": prefix length above 32)");
  EXPECT_FALSE(tunnel_filters(bad, nullptr, nullptr)) << "rules must never be ignored";
  bad.type = "tcp";
  EXPECT_FALSE(tunnel_connection_filters(bad, nullptr, &scope));
}

}  // namespace
}  // namespace tunnel::core

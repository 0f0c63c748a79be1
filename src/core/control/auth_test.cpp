#include "core/control/auth.hpp"

#include <gtest/gtest.h>

#include "core/control/jwt.hpp"

namespace tunnel::core {
namespace {

constexpr const char* kSecret = "0123456789abcdef0123456789abcdef-test-secret";

Config two_accounts() {
  Config config;
  config.auth.jwt_secret = kSecret;
  Account a;
  a.name = "default";
  a.tokens = {"token-a1", "token-a2"};
  Account b;
  b.name = "team-b";
  b.tokens = {"token-b"};
  b.subdomains = {"docs", "pr-*"};
  b.domains = {"example.org", "*.example.net"};
  config.accounts = {a, b};
  return config;
}

TEST(Authenticator, PlainTokensMapToTheirAccount) {
  Authenticator auth(two_accounts());
  EXPECT_EQ(auth.authenticate("token-a2").value().account, "default");
  auto b = auth.authenticate("token-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b.value().account, "team-b");
  EXPECT_EQ(b.value().agent_id, "");
  auto bad = auth.authenticate("token-b ");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "invalid token");
  EXPECT_FALSE(auth.authenticate(""));
}

TEST(Authenticator, JwtsNameAConfiguredAccount) {
  Authenticator auth(two_accounts(), [] { return std::int64_t{1'900'000'000}; });
  auto ok = auth.authenticate(
      sign_hs256(R"({"account_id":"team-b","agent_id":"ci-7","exp":2000000000})", kSecret));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok.value().account, "team-b");
  EXPECT_EQ(ok.value().agent_id, "ci-7");
  auto unknown =
      auth.authenticate(sign_hs256(R"({"account_id":"nobody","exp":2000000000})", kSecret));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "JWT names unknown account \"nobody\"");
  auto expired = auth.authenticate(sign_hs256(R"({"account_id":"team-b","exp":1000})", kSecret));
  EXPECT_EQ(expired.error().message, "JWT has expired");
}

TEST(Authenticator, JwtIssuerAndAudienceFromConfig) {
  Config config = two_accounts();
  config.auth.jwt_issuer = "idp";
  config.auth.jwt_audience = "core";
  Authenticator auth(config, [] { return std::int64_t{1'900'000'000}; });
  EXPECT_TRUE(auth.authenticate(sign_hs256(R"({"account_id":"team-b","exp":2000000000,"iss":"idp",)"
                                           R"("aud":"core"})",
                                           kSecret)));
  EXPECT_EQ(auth.authenticate(sign_hs256(R"({"account_id":"team-b","exp":2000000000,"iss":"idp",)"
                                         R"("aud":"other"})",
                                         kSecret))
                .error()
                .message,
            "JWT \"aud\" does not name this server's audience");
}

TEST(Authenticator, JwtWithoutSecretIsRefused) {
  Config config = two_accounts();
  config.auth.jwt_secret.clear();
  Authenticator auth(config);
  auto result =
      auth.authenticate(sign_hs256(R"({"account_id":"default","exp":2000000000})", kSecret));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "JWT authentication is not enabled on this server");
}

TEST(Authenticator, UnreadableSecretFileIsASetupError) {
  Config config = two_accounts();
  config.auth.jwt_secret.clear();
  config.auth.jwt_secret_file = "/nonexistent/jwt.secret";
  Authenticator auth(config);
  EXPECT_NE(auth.setup().error().message.find("/nonexistent/jwt.secret"), std::string::npos);
  EXPECT_TRUE(auth.authenticate("token-a1"));
}

TEST(Account, SubdomainPatterns) {
  Account account;
  account.subdomains = {"docs", "pr-*"};
  EXPECT_TRUE(account.may_use_subdomain("docs"));
  EXPECT_TRUE(account.may_use_subdomain("DOCS"));
  EXPECT_TRUE(account.may_use_subdomain("pr-42"));
  EXPECT_FALSE(account.may_use_subdomain("pr-"));
  EXPECT_FALSE(account.may_use_subdomain("docs2"));
  EXPECT_FALSE(account.may_use_subdomain("app"));
  EXPECT_FALSE(account.may_use_subdomain("a.docs"));
  account.subdomains = {"*"};
  EXPECT_TRUE(account.may_use_subdomain("anything"));
  EXPECT_FALSE(account.may_use_subdomain("bad_label"));
  account.subdomains = {};
  EXPECT_FALSE(account.may_use_subdomain("docs"));
}

TEST(Account, DomainPatterns) {
  Account account;
  account.domains = {"example.org", "*.example.net"};
  EXPECT_TRUE(account.may_use_domain("example.org"));
  EXPECT_TRUE(account.may_use_domain("Example.ORG."));
  EXPECT_FALSE(account.may_use_domain("www.example.org"));
  EXPECT_TRUE(account.may_use_domain("a.example.net"));
  EXPECT_TRUE(account.may_use_domain("a.b.example.net"));
  EXPECT_FALSE(account.may_use_domain("example.net"));
  EXPECT_FALSE(account.may_use_domain("badexample.net"));
  EXPECT_FALSE(account.may_use_domain("evil.com"));
}

// What the API lets an account reserve, given the configuration file's accounts.
TEST(Account, ReservationsRespectTheConfigurationsPatterns) {
  Account bob;
  bob.name = "bob";
  bob.subdomains = {"bob-*", "shop"};
  bob.domains = {"bob.example.org"};
  Account open;
  open.name = "open";  // subdomains "*": any free name, no claim on any
  const std::vector<Account> accounts = {bob, open};
  // An account made through the API: free names, not what bob is given.
  EXPECT_EQ(reservation_refusal(accounts, "api-made", "mine", false), "");
  EXPECT_EQ(reservation_refusal(accounts, "api-made", "bob-app", false),
            "\"bob-app\" is given to account \"bob\" by its subdomains in the configuration file");
  EXPECT_NE(reservation_refusal(accounts, "api-made", "SHOP", false), "");
  EXPECT_NE(reservation_refusal(accounts, "api-made", "bob.example.org", true), "");
  EXPECT_EQ(reservation_refusal(accounts, "api-made", "other.example.org", true), "");
  // bob itself: within its patterns only.
  EXPECT_EQ(reservation_refusal(accounts, "bob", "bob-app", false), "");
  EXPECT_EQ(reservation_refusal(accounts, "bob", "www", false),
            "account \"bob\" is declared in the configuration file with subdomains bob-*, shop, "
            "which do not allow \"www\"");
  EXPECT_EQ(reservation_refusal(accounts, "bob", "bob.example.org", true), "");
  // "open" may take any name nobody is given, and no custom domain (it lists none).
  EXPECT_EQ(reservation_refusal(accounts, "open", "www", false), "");
  EXPECT_NE(reservation_refusal(accounts, "open", "bob-x", false), "");
  EXPECT_EQ(reservation_refusal(accounts, "open", "x.example.com", true),
            "account \"open\" is declared in the configuration file with domains (none), which do "
            "not allow \"x.example.com\"");
}

}  // namespace
}  // namespace tunnel::core

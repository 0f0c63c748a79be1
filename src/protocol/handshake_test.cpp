#include "protocol/handshake.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "protocol/frame.hpp"

namespace tunnel::protocol {
namespace {

TunnelRequest http_tunnel(std::string subdomain) {
  TunnelRequest t;
  t.subdomain = std::move(subdomain);
  return t;
}

std::string request_error(std::string_view json) {
  const auto parsed = parse_auth_request(json);
  EXPECT_FALSE(parsed) << json;
  return parsed ? std::string("<parsed>") : parsed.error().message;
}

std::string response_error(std::string_view json) {
  const auto parsed = parse_auth_response(json);
  EXPECT_FALSE(parsed) << json;
  return parsed ? std::string("<parsed>") : parsed.error().message;
}

// The bytes the original Go agent writes (encoding/json escapes '&' as \u0026), in a v1 frame.
TEST(AuthRequest, ParsesTheOriginalV1AgentFrame) {
  const std::string payload =
      R"({"token":"tk_live_\u0026abc","agent_id":"laptop-1","version":"1.0.0",)"
      R"("capabilities":["http","websocket"],"metadata":{"subdomains":"app, api,,"}})";
  std::vector<std::uint8_t> frame(kHeaderSize);
  encode_header(frame.data(), kVersion1, FrameType::kAuth, 0, 0, payload.size());
  frame.insert(frame.end(), payload.begin(), payload.end());

  const HeaderDecode head = decode_header(frame, kVersion1);
  ASSERT_EQ(head.status, DecodeStatus::kOk) << head.error;
  ASSERT_EQ(head.header.frame_type(), FrameType::kAuth);
  ASSERT_EQ(head.header.stream_id, 0u);
  const std::string_view body(reinterpret_cast<const char*>(frame.data()) + kHeaderSize,
                              head.header.payload_size());

  const auto parsed = parse_auth_request(body);
  ASSERT_TRUE(parsed) << parsed.error().message;
  const AuthRequest& r = parsed.value();
  EXPECT_EQ(r.token, "tk_live_&abc");
  EXPECT_EQ(r.agent_id, "laptop-1");
  EXPECT_EQ(r.version, "1.0.0");
  EXPECT_EQ(r.capabilities, (std::vector<std::string>{"http", "websocket"}));
  EXPECT_TRUE(r.protocol_versions.empty());  // a v1 agent
  EXPECT_EQ(r.initial_window, 0u);
  EXPECT_EQ(r.tunnels, (std::vector<TunnelRequest>{http_tunnel("app"), http_tunnel("api")}));
}

TEST(AuthRequest, V1TokenOnly) {
  const auto parsed = parse_auth_request(R"({"token":"t"})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value().token, "t");
  EXPECT_TRUE(parsed.value().tunnels.empty());
  EXPECT_TRUE(parsed.value().capabilities.empty());
}

TEST(AuthRequest, V1SingleSubdomainAndNulls) {
  const auto parsed = parse_auth_request(
      R"({"token":"t","agent_id":null,"capabilities":null,"metadata":{"subdomain":" web ","region":"eu"}})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value().tunnels, std::vector<TunnelRequest>{http_tunnel("web")});
}

TEST(AuthRequest, V1SubdomainsAndSubdomainMergeWithoutDuplicates) {
  const auto parsed =
      parse_auth_request(R"({"token":"t","metadata":{"subdomains":" a ,b,a, ,","subdomain":"b"}})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value().tunnels,
            (std::vector<TunnelRequest>{http_tunnel("a"), http_tunnel("b")}));
}

TEST(AuthRequest, TunnelsListWinsOverMetadata) {
  const auto parsed = parse_auth_request(
      R"({"token":"t","protocol_versions":[2,1],"initial_window":262144,"metadata":{"subdomains":"old"},)"
      R"("tunnels":[{"subdomain":"app","local":"localhost:3000"},)"
      R"({"type":"tcp","remote_port":2222,"local":"127.0.0.1:22","bandwidth":1048576},)"
      R"({"type":"http","hostname":"www.example.com","future":{"x":1}}],"unknown_key":[1,2]})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  const AuthRequest& r = parsed.value();
  EXPECT_EQ(r.protocol_versions, (std::vector<std::uint8_t>{2, 1}));
  EXPECT_EQ(r.initial_window, 262144u);
  ASSERT_EQ(r.tunnels.size(), 3u);
  EXPECT_EQ(r.tunnels[0].type, "http");
  EXPECT_EQ(r.tunnels[0].subdomain, "app");
  EXPECT_EQ(r.tunnels[0].local, "localhost:3000");
  EXPECT_EQ(r.tunnels[1].type, "tcp");
  EXPECT_EQ(r.tunnels[1].remote_port, 2222);
  EXPECT_EQ(r.tunnels[1].bandwidth, 1048576u);
  EXPECT_EQ(r.tunnels[0].bandwidth, 0u);
  EXPECT_EQ(r.tunnels[2].hostname, "www.example.com");
}

TEST(AuthRequest, EmptyTunnelsListIsKept) {
  const auto parsed =
      parse_auth_request(R"({"token":"t","tunnels":[],"metadata":{"subdomain":"x"}})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_TRUE(parsed.value().tunnels.empty());
}

TEST(AuthRequest, RejectsMissingOrEmptyToken) {
  EXPECT_EQ(request_error(R"({"agent_id":"a"})"), R"(auth: "token" is required)");
  EXPECT_EQ(request_error(R"({"token":null})"), R"(auth: "token" is required)");
  EXPECT_EQ(request_error(R"({"token":""})"), R"(auth: "token" must be a non-empty string)");
  EXPECT_EQ(request_error(R"({"token":42})"), R"(auth: "token" must be a non-empty string)");
}

TEST(AuthRequest, RejectsWrongTypesNamingTheKey) {
  EXPECT_EQ(request_error(R"({"token":"t","agent_id":1})"), R"(auth: "agent_id" must be a string)");
  EXPECT_EQ(request_error(R"({"token":"t","version":true})"),
            R"(auth: "version" must be a string)");
  EXPECT_EQ(request_error(R"({"token":"t","capabilities":"http"})"),
            R"(auth: "capabilities" must be an array of strings)");
  EXPECT_EQ(request_error(R"({"token":"t","capabilities":["a",2]})"),
            R"(auth: "capabilities[1]" must be a string of at most 1024 bytes)");
  EXPECT_EQ(request_error(R"({"token":"t","metadata":"x"})"),
            R"(auth: "metadata" must be an object)");
  EXPECT_EQ(request_error(R"({"token":"t","metadata":{"subdomains":["a"]}})"),
            R"(auth: "metadata.subdomains" must be a string)");
  EXPECT_EQ(request_error(R"({"token":"t","metadata":{"subdomain":1}})"),
            R"(auth: "metadata.subdomain" must be a string)");
  EXPECT_EQ(request_error(R"({"token":"t","protocol_versions":2})"),
            R"(auth: "protocol_versions" must be an array of integers 1..255)");
  EXPECT_EQ(request_error(R"({"token":"t","protocol_versions":[2,0]})"),
            R"(auth: "protocol_versions[1]" must be an integer 1..255)");
  EXPECT_EQ(request_error(R"({"token":"t","protocol_versions":[256]})"),
            R"(auth: "protocol_versions[0]" must be an integer 1..255)");
  EXPECT_EQ(request_error(R"({"token":"t","protocol_versions":[1.5]})"),
            R"(auth: "protocol_versions[0]" must be an integer 1..255)");
  EXPECT_EQ(request_error(R"({"token":"t","initial_window":-1})"),
            R"(auth: "initial_window" must be an integer 0..4294967295)");
  EXPECT_EQ(request_error(R"({"token":"t","initial_window":4294967296})"),
            R"(auth: "initial_window" must be an integer 0..4294967295)");
  EXPECT_EQ(request_error(R"({"token":"t","initial_window":"1"})"),
            R"(auth: "initial_window" must be an integer 0..4294967295)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":{}})"),
            R"(auth: "tunnels" must be an array of objects)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{},"x"]})"),
            R"(auth: "tunnels[1]" must be an object)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{"type":""}]})"),
            R"(auth: "tunnels[0].type" must be a non-empty string)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{},{"remote_port":65536}]})"),
            R"(auth: "tunnels[1].remote_port" must be an integer 0..65535)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{"bandwidth":"1MiB/s"}]})"),
            R"(auth: "tunnels[0].bandwidth" must be an integer 0..18446744073709551615)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{},{"remote_port":-5}]})"),
            R"(auth: "tunnels[1].remote_port" must be an integer 0..65535)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{"local":7}]})"),
            R"(auth: "tunnels[0].local" must be a string)");
}

TEST(AuthRequest, AccessListsRoundTripAndAreBounded) {
  AuthRequest r;
  r.token = "t";
  r.tunnels = {http_tunnel("app")};
  r.tunnels[0].cidr_allow = {"10.0.0.0/8", "2001:db8::/32"};
  r.tunnels[0].cidr_deny = {"10.1.2.3"};
  r.tunnels[0].basic_auth = {"ann:$pbkdf2-sha256$4096$c2FsdA$aGFzaA"};
  const std::string json = serialize(r);
  EXPECT_NE(json.find(R"("cidr_allow":["10.0.0.0/8","2001:db8::/32"],"cidr_deny":["10.1.2.3"])"),
            std::string::npos)
      << json;
  const auto parsed = parse_auth_request(json);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);

  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{"cidr_allow":"10.0.0.0/8"}]})"),
            R"(auth: "tunnels[0].cidr_allow" must be an array of strings)");
  EXPECT_EQ(request_error(R"({"token":"t","tunnels":[{"cidr_deny":[7]}]})"),
            R"(auth: "tunnels[0].cidr_deny[0]" must be a string of at most 64 bytes)");
  std::string many = R"({"token":"t","tunnels":[{"cidr_allow":[)";
  for (std::size_t i = 0; i <= kMaxAccessEntries; ++i)
    many += (i == 0 ? "" : ",") + std::string("\"1.2.3.4\"");
  many += "]}]}";
  EXPECT_EQ(request_error(many), R"(auth: "tunnels[0].cidr_allow" has 65 items, at most 64)");
  const std::string long_user =
      R"({"token":"t","tunnels":[{"basic_auth":[")" + std::string(600, 'a') + R"("]}]})";
  EXPECT_EQ(request_error(long_user),
            R"(auth: "tunnels[0].basic_auth[0]" must be a string of at most 512 bytes)");
}

TEST(AuthRequest, RejectsInvalidJsonAndNonObjects) {
  EXPECT_EQ(
      request_error(""),
      "auth: invalid JSON: parse error at line 1, column 1: syntax error while parsing value - "
      "unexpected end of input; expected '[', '{', or a literal");
  EXPECT_TRUE(request_error(R"({"token":"t")").starts_with("auth: invalid JSON: "));
  EXPECT_TRUE(request_error(R"({"token":"t"} x)").starts_with("auth: invalid JSON: "));
  EXPECT_TRUE(request_error("{\"token\":\"\xff\"}").starts_with("auth: invalid JSON: "));
  EXPECT_EQ(request_error(R"(["token"])"), "auth: payload must be a JSON object");
  EXPECT_EQ(request_error("null"), "auth: payload must be a JSON object");
}

TEST(AuthRequest, RejectsPayloadOverTheLimitBeforeParsing) {
  std::string json = R"({"token":"t","pad":")";
  json.append(kMaxAuthPayload - json.size() - 2, 'x');
  json += "\"}";
  ASSERT_EQ(json.size(), kMaxAuthPayload);
  EXPECT_TRUE(parse_auth_request(json));
  json.insert(json.size() - 2, "x");
  EXPECT_EQ(request_error(json), "auth: payload of 65537 bytes is above the maximum 65536");
}

TEST(AuthRequest, SerializesAndParsesBack) {
  AuthRequest r;
  r.token = "tok\"en\\";
  r.agent_id = "agent-7";
  r.version = "0.1.0";
  r.capabilities = {"http", "flow-control"};
  r.protocol_versions = {2, 1};
  r.initial_window = 256 * 1024;
  r.tunnels = {http_tunnel("app"), http_tunnel("api")};
  r.tunnels[0].local = "localhost:3000";
  TunnelRequest tcp;
  tcp.type = "tcp";
  tcp.remote_port = 65535;
  tcp.local = "127.0.0.1:22";
  tcp.bandwidth = 1000;
  r.tunnels.push_back(tcp);
  TunnelRequest custom;
  custom.hostname = "www.example.com";
  r.tunnels.push_back(custom);

  const std::string json = serialize(r);
  EXPECT_EQ(json, R"({"token":"tok\"en\\","agent_id":"agent-7","version":"0.1.0",)"
                  R"("capabilities":["http","flow-control"],"protocol_versions":[2,1],)"
                  R"("initial_window":262144,"tunnels":[{"type":"http","subdomain":"app",)"
                  R"("local":"localhost:3000"},{"type":"http","subdomain":"api"},)"
                  R"({"type":"tcp","remote_port":65535,"local":"127.0.0.1:22","bandwidth":1000},)"
                  R"({"type":"http","hostname":"www.example.com"}],)"
                  R"("metadata":{"subdomains":"app,api"}})");
  const auto parsed = parse_auth_request(json);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);
}

TEST(AuthRequest, MinimalRoundTrip) {
  AuthRequest r;
  r.token = "t";
  EXPECT_EQ(serialize(r), R"({"token":"t","tunnels":[]})");
  const auto parsed = parse_auth_request(serialize(r));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);
}

// The agent's name and group (routes, docs/routing.md): sent only when set, so an agent without
// them sends what older agents sent; a core that does not know them ignores unknown keys.
TEST(AuthRequest, NameAndGroupRoundTripAndAreOptional) {
  AuthRequest r;
  r.token = "t";
  r.name = "api-v2";
  r.group = "api";
  EXPECT_EQ(serialize(r), R"({"token":"t","name":"api-v2","group":"api","tunnels":[]})");
  const auto parsed = parse_auth_request(serialize(r));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);
  const auto old = parse_auth_request(R"({"token":"t","agent_id":"a1"})");
  ASSERT_TRUE(old);
  EXPECT_EQ(old.value().name, "");
  EXPECT_EQ(old.value().group, "");
  const auto bad = parse_auth_request(R"({"token":"t","name":7})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("name"), std::string::npos) << bad.error().message;
}

TEST(AgentName, LettersDigitsDotsDashesUnderscores) {
  EXPECT_TRUE(check_agent_name("api-v2"));
  EXPECT_TRUE(check_agent_name("A.b_c-9"));
  EXPECT_TRUE(check_agent_name(std::string(63, 'a')));
  EXPECT_FALSE(check_agent_name(""));
  EXPECT_FALSE(check_agent_name(std::string(64, 'a')));
  EXPECT_FALSE(check_agent_name("-api"));
  const auto bad = check_agent_name("api v2");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "character 4 is not a letter, digit, '.', '_' or '-'");
}

TEST(AuthRequest, SerializeReplacesInvalidUtf8InsteadOfThrowing) {
  AuthRequest r;
  r.token = "a\xff";
  const std::string json = serialize(r);
  EXPECT_EQ(json, "{\"token\":\"a\xEF\xBF\xBD\",\"tunnels\":[]}");
  EXPECT_TRUE(parse_auth_request(json));
}

TEST(AuthResponse, ParsesTheOriginalV1Reply) {
  const auto parsed = parse_auth_response(R"({"success":true,"agent_id":"x","server_time":123})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  const AuthResponse& r = parsed.value();
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.agent_id, "x");
  EXPECT_EQ(r.server_time, 123);
  EXPECT_EQ(r.protocol_version, 1);
  EXPECT_EQ(r.heartbeat_interval_ms, 10000u);
  EXPECT_EQ(r.initial_window, 0u);
  EXPECT_TRUE(r.tunnels.empty());
  EXPECT_TRUE(r.error.empty());
}

TEST(AuthResponse, ParsesTheOriginalV1Failure) {
  const auto parsed = parse_auth_response(R"({"success":false,"error":"invalid token"})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_FALSE(parsed.value().success);
  EXPECT_EQ(parsed.value().error, "invalid token");
}

TEST(AuthResponse, MissingSuccessMeansFailure) {
  const auto parsed = parse_auth_response("{}");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_FALSE(parsed.value().success);
}

TEST(AuthResponse, RejectsWrongTypesNamingTheKey) {
  EXPECT_EQ(response_error(R"({"success":"yes"})"),
            R"(auth response: "success" must be true or false)");
  EXPECT_EQ(response_error(R"({"server_time":1.5})"),
            R"(auth response: "server_time" must be an integer)");
  EXPECT_EQ(response_error(R"({"server_time":18446744073709551615})"),
            R"(auth response: "server_time" must be an integer)");
  EXPECT_EQ(response_error(R"({"protocol_version":0})"),
            R"(auth response: "protocol_version" must be an integer 1..255)");
  EXPECT_EQ(response_error(R"({"heartbeat_interval_ms":-1})"),
            R"(auth response: "heartbeat_interval_ms" must be an integer 0..4294967295)");
  EXPECT_EQ(response_error(R"({"tunnels":[{"ok":1}]})"),
            R"(auth response: "tunnels[0].ok" must be true or false)");
  EXPECT_EQ(response_error(R"({"tunnels":[{"name":"a"},{"url":[]}]})"),
            R"(auth response: "tunnels[1].url" must be a string)");
  EXPECT_EQ(response_error("[]"), "auth response: payload must be a JSON object");
  EXPECT_TRUE(response_error("{").starts_with("auth response: invalid JSON: "));
}

TEST(AuthResponse, SerializesAndParsesBack) {
  AuthResponse r;
  r.success = true;
  r.agent_id = "agent-7";
  r.server_time = -5;
  r.protocol_version = 2;
  r.heartbeat_interval_ms = 5000;
  r.initial_window = 1 << 20;
  r.tunnels = {
      {"http", "app.localhost", "http://app.localhost:8080", true, "", 4096, "", ""},
      {"http", "api.localhost", "", false, "subdomain \"api\" is taken", 0, "name_taken", ""},
      {"tcp", "localhost:15432", "tcp://localhost:15432", true, "", 0, "", "127.0.0.1:5432"}};
  const std::string json = serialize(r);
  EXPECT_EQ(json,
            R"({"success":true,"agent_id":"agent-7","server_time":-5,"protocol_version":2,)"
            R"("heartbeat_interval_ms":5000,"initial_window":1048576,"tunnels":[)"
            R"({"type":"http","name":"app.localhost","url":"http://app.localhost:8080","ok":true,)"
            R"("bandwidth":4096},)"
            R"({"type":"http","name":"api.localhost","url":"","ok":false,)"
            R"("error":"subdomain \"api\" is taken","code":"name_taken"},)"
            R"({"type":"tcp","name":"localhost:15432","url":"tcp://localhost:15432","ok":true,)"
            R"("local":"127.0.0.1:5432"}]})");
  const auto parsed = parse_auth_response(json);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);
}

TEST(AuthResponse, RefusalCodeRoundTripsAndIsOptional) {
  AuthResponse r;
  r.error = "authentication failed: unknown token";
  r.code = std::string(refusal::kBadToken);
  const std::string json = serialize(r);
  EXPECT_NE(json.find(R"("error":"authentication failed: unknown token","code":"bad_token")"),
            std::string::npos)
      << json;
  auto parsed = parse_auth_response(json);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);
  // An old core sends no code.
  parsed = parse_auth_response(R"({"success":false,"error":"no"})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value().code, "");
  EXPECT_EQ(parse_auth_response(R"({"success":false,"code":7})").error().message,
            "auth response: \"code\" must be a string");
  EXPECT_EQ(refusal_kind("bad_token"), RefusalKind::kFinal);
  EXPECT_EQ(refusal_kind("not_allowed"), RefusalKind::kFinal);
  EXPECT_EQ(refusal_kind("bad_request"), RefusalKind::kFinal);
  EXPECT_EQ(refusal_kind("name_taken"), RefusalKind::kRetry);
  EXPECT_EQ(refusal_kind("limit"), RefusalKind::kRetry);
  EXPECT_EQ(refusal_kind("unavailable"), RefusalKind::kRetry);
  EXPECT_EQ(refusal_kind("shutting_down"), RefusalKind::kRetry);
  EXPECT_EQ(refusal_kind(""), RefusalKind::kUnknown);
  EXPECT_EQ(refusal_kind("something_new"), RefusalKind::kUnknown);
}

TEST(AuthResponse, FailureRoundTrip) {
  AuthResponse r;
  r.error = "invalid token";
  const auto parsed = parse_auth_response(serialize(r));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed.value(), r);
  EXPECT_FALSE(parsed.value().success);
}

}  // namespace
}  // namespace tunnel::protocol

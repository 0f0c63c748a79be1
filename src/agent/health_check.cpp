#include "agent/health_check.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>

#include "common/async.hpp"
#include "transport/tls.hpp"

namespace tunnel::agent {
namespace {

namespace asio = boost::asio;

// The status line of the answer, up to its end (at most 256 bytes).
asio::awaitable<std::string> read_status_line(transport::Conn& conn) {
  std::string got;
  std::array<char, 256> buf{};
  transport::error_code ec;
  while (got.find("\r\n") == std::string::npos && got.size() < buf.size()) {
    const auto n = co_await conn.read_some(asio::buffer(buf.data(), buf.size() - got.size()), ec);
    if (ec || n == 0) break;
    got.append(buf.data(), n);
  }
  co_return got;
}

asio::awaitable<std::string> check_once(asio::any_io_executor executor, HealthCheckSpec spec,
                                        common::NetAddress target) {
  auto dialed = co_await transport::dial(executor, target.host, target.port, nullptr, spec.timeout);
  if (!dialed) co_return dialed.error().message;
  auto conn = std::move(dialed).value();
  if (spec.kind == HealthCheckSpec::Kind::kTcp) {
    conn->close();
    co_return std::string();
  }
  const std::string request = "GET " + spec.path + " HTTP/1.1\r\nHost: " + target.to_string() +
                              "\r\nUser-Agent: tunnel-agent-health-check\r\nConnection: "
                              "close\r\n\r\n";
  const asio::const_buffer buffer(request.data(), request.size());
  transport::error_code ec;
  co_await conn->write(std::span(&buffer, 1), ec);
  if (ec) co_return "GET " + spec.path + ": " + ec.message();
  const std::string line = co_await read_status_line(*conn);
  conn->close();
  // "HTTP/1.1 200 OK"
  int status = 0;
  if (line.starts_with("HTTP/1.") && line.size() >= 12) {
    std::from_chars(line.data() + 9, line.data() + 12, status);
  }
  if (status == 0) {
    co_return "GET " + spec.path + ": " +
        (line.empty() ? std::string("the app closed the connection without an answer")
                      : std::string("the answer is not HTTP"));
  }
  if (status >= 400) co_return fmt::format("GET {} answered {}", spec.path, status);
  co_return std::string();
}

}  // namespace

std::string HealthCheckSpec::describe() const {
  switch (kind) {
    case Kind::kNone:
      return "none";
    case Kind::kTcp:
      return "tcp";
    case Kind::kHttp:
      return "http GET " + path;
  }
  return "?";
}

common::Result<HealthCheckSpec> parse_health_check(std::string_view text) {
  HealthCheckSpec spec;
  if (text.empty() || text == "none") return spec;
  if (text == "tcp") {
    spec.kind = HealthCheckSpec::Kind::kTcp;
    return spec;
  }
  if (text == "http") {
    spec.kind = HealthCheckSpec::Kind::kHttp;
    return spec;
  }
  if (text.starts_with("http:")) {
    const std::string_view path = text.substr(5);
    if (!path.starts_with('/')) {
      return common::fail("the path of an http health check starts with '/': \"" +
                          std::string(text) + "\"");
    }
    for (const char c : path) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
        return common::fail(
            "the path of an http health check has no spaces or control "
            "characters: \"" +
            std::string(text) + "\"");
      }
    }
    spec.kind = HealthCheckSpec::Kind::kHttp;
    spec.path = std::string(path);
    return spec;
  }
  return common::fail("expected tcp, http or http:/PATH, got \"" + std::string(text) + "\"");
}

bool HealthState::observe(bool passed) {
  if (passed == healthy_) {
    streak_ = 0;
    return false;
  }
  if (++streak_ < (healthy_ ? fall_ : rise_)) return false;
  healthy_ = passed;
  streak_ = 0;
  return true;
}

asio::awaitable<std::string> run_health_check(asio::any_io_executor executor, HealthCheckSpec spec,
                                              common::NetAddress target) {
  auto result = co_await with_timeout(check_once(executor, spec, target), spec.timeout);
  if (!result) {
    co_return fmt::format("{} {}: no answer within {} ms", spec.describe(), target.to_string(),
                          spec.timeout.count());
  }
  co_return *result;
}

}  // namespace tunnel::agent

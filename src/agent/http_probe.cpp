#include "agent/http_probe.hpp"

#include <array>

#include "common/async.hpp"
#include "transport/tls.hpp"

namespace tunnel::agent {
namespace {

namespace asio = boost::asio;

// The first bytes of the answer (up to 5: enough for "HTTP/").
asio::awaitable<std::string> read_start(transport::Conn& conn) {
  std::string got;
  std::array<char, 5> buf{};
  transport::error_code ec;
  while (got.size() < buf.size()) {
    const auto n = co_await conn.read_some(asio::buffer(buf.data(), buf.size() - got.size()), ec);
    if (ec || n == 0) break;
    got.append(buf.data(), n);
  }
  co_return got;
}

}  // namespace

bool is_http_answer(std::string_view bytes) {
  return bytes.starts_with("HTTP/");
}

asio::awaitable<bool> answers_http(asio::any_io_executor executor, const std::string& host,
                                   std::uint16_t port, std::chrono::milliseconds timeout) {
  auto dialed = co_await transport::dial(executor, host, port, nullptr, timeout);
  if (!dialed) co_return false;
  auto conn = std::move(dialed).value();
  static constexpr std::string_view kRequest =
      "HEAD / HTTP/1.1\r\nHost: tunnel-agent.invalid\r\nConnection: close\r\n\r\n";
  const asio::const_buffer request(kRequest.data(), kRequest.size());
  transport::error_code ec;
  co_await conn->write(std::span(&request, 1), ec);
  if (ec) co_return false;
  auto start = co_await with_timeout(read_start(*conn), timeout);
  conn->close();
  co_return start&& is_http_answer(*start);
}

}  // namespace tunnel::agent

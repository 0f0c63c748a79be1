#include "core/admin.hpp"

#include "common/async.hpp"
#include "http/error_page.hpp"
#include "http/message_parser.hpp"

namespace tunnel::core {
namespace {

using http::MessageParser;
using Step = MessageParser::Step;

std::string plain(int status, std::string_view content_type, std::string_view body) {
  std::string out =
      "HTTP/1.1 " + std::to_string(status) + " " + std::string(http::reason_phrase(status)) +
      "\r\nContent-Type: " + std::string(content_type) +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nCache-Control: no-store\r\n\r\n";
  out += body;
  return out;
}

}  // namespace

std::string AdminServer::respond(const std::string& method, const std::string& target,
                                 bool& close) {
  const std::string path = target.substr(0, target.find('?'));
  if (method != "GET" && method != "HEAD") {
    close = true;
    return http::error_response(405, "The admin endpoints only answer GET.", "", true);
  }
  if (path == "/healthz") return plain(200, "text/plain; charset=utf-8", "ok\n");
  if (path == "/readyz") {
    return context_.draining ? plain(503, "text/plain; charset=utf-8", "draining\n")
                             : plain(200, "text/plain; charset=utf-8", "ready\n");
  }
  if (path == "/metrics") {
    return plain(200, observability::kPrometheusContentType, context_.metrics.registry.render());
  }
  return http::error_response(
      404, "Unknown admin path " + path + " (try /healthz, /readyz, /metrics).", "", false);
}

asio::awaitable<void> AdminServer::serve(transport::tcp::socket socket) {
  auto conn = transport::make_tcp_conn(std::move(socket));
  MessageParser parser(MessageParser::Kind::kRequest);
  std::vector<char> buf(8192);
  std::string pending;
  transport::error_code ec;
  for (;;) {
    const Step step = parser.parse(pending);
    if (step.type == Step::kHead) {
      pending.erase(0, step.consumed);
      bool close = !parser.keep_alive() || parser.has_body();
      std::string response = respond(parser.request().method, parser.request().target, close);
      if (parser.request().method == "HEAD") response.resize(response.find("\r\n\r\n") + 4);
      co_await conn->write(asio::buffer(response), ec);
      if (close || ec) break;
      // Skip the (empty) message end of a GET without a body.
      const Step end = parser.parse(pending);
      pending.erase(0, end.consumed);
      continue;
    }
    if (step.type == Step::kError) {
      const std::string page =
          http::error_response(parser.error_status(), parser.error(), "", true);
      co_await conn->write(asio::buffer(page), ec);
      break;
    }
    pending.clear();
    auto n = co_await with_timeout(conn->read_some(asio::buffer(buf), ec),
                                   context_.config.limits.header_timeout);
    if (!n || ec) break;
    pending.assign(buf.data(), *n);
  }
  co_await conn->shutdown_send();
}

}  // namespace tunnel::core

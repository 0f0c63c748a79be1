#include "ctl/http_client.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/dynamic_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <charconv>
#include <optional>

namespace tunnel::ctl {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint64_t kMaxReplyBytes = 64ULL * 1024 * 1024;

// Runs one asynchronous operation to its end (the stream's deadline bounds it).
template <typename Start>
boost::system::error_code run(asio::io_context& io, Start&& start) {
  boost::system::error_code result = asio::error::would_block;
  std::forward<Start>(start)([&result](boost::system::error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

std::string describe(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  return ec.message();
}

template <typename Stream>
common::Result<HttpResponse> exchange(asio::io_context& io, Stream& stream,
                                      beast::tcp_stream& lowest, const HttpRequest& request,
                                      const Url& url, std::chrono::milliseconds timeout) {
  http::request<http::string_body> req;
  req.method_string(request.method);
  req.target(request.target);
  req.version(11);
  if (request.raw) {
    bool host = false;
    for (const auto& [name, value] : request.headers) {
      req.insert(name, value);
      host = host || beast::iequals(name, "Host");
    }
    if (!host) req.set(http::field::host, url.host_for_address());
    req.body() = request.body;
  } else {
    req.set(http::field::host, url.host_for_address());
    req.set(http::field::user_agent, "tunnelctl");
    req.set(http::field::accept, "application/json");
    for (const auto& [name, value] : request.headers) req.set(name, value);
    if (!request.body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = request.body;
    }
  }
  req.prepare_payload();
  lowest.expires_after(timeout);
  if (auto ec =
          run(io, [&](auto handler) { http::async_write(stream, req, std::move(handler)); })) {
    return common::fail("sending the request: " + describe(ec));
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxReplyBytes);
  if (request.method == "HEAD") parser.skip(true);  // a HEAD answer has no body
  lowest.expires_after(timeout);
  if (auto ec = run(io, [&](auto handler) {
        http::async_read(stream, buffer, parser, std::move(handler));
      })) {
    return common::fail("reading the reply: " + describe(ec));
  }
  auto& res = parser.get();
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.content_type = std::string(res[http::field::content_type]);
  out.etag = std::string(res[http::field::etag]);
  out.body = std::move(res.body());
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  return out;
}

}  // namespace

std::string Url::host_for_address() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

common::Result<Url> parse_url(const std::string& text) {
  Url url;
  std::string_view rest = text;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    url.tls = true;
    rest.remove_prefix(8);
  } else {
    return common::fail("\"" + text + "\" is not an http:// or https:// URL");
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    if (path.find_first_of("?#") != std::string_view::npos) {
      return common::fail("\"" + text + "\": no query or fragment, please");
    }
    url.base_path = std::string(path);
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return common::fail("\"" + text + "\": unclosed [");
    url.host = std::string(authority.substr(1, close - 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return common::fail("\"" + text + "\": bad port");
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) return common::fail("\"" + text + "\" has no host");
  if (url.host.find_first_of("@ ") != std::string::npos) {
    return common::fail("\"" + text + "\": bad host");
  }
  url.port = url.tls ? 443 : 80;
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      return common::fail("\"" + text + "\": bad port \"" + std::string(port) + "\"");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

struct HttpClient::Impl {
  Url url;
  ClientOptions options;
};

HttpClient::HttpClient(Url url, ClientOptions options)
    : impl_(new Impl{std::move(url), std::move(options)}) {}

HttpClient::~HttpClient() {
  delete impl_;
}

common::Result<HttpResponse> HttpClient::send(const HttpRequest& request) {
  const Url& url = impl_->url;
  const auto timeout = impl_->options.timeout;
  asio::io_context io;
  tcp::resolver resolver(io);
  tcp::resolver::results_type endpoints;
  {
    boost::system::error_code result = asio::error::would_block;
    resolver.async_resolve(url.host, std::to_string(url.port),
                           [&](boost::system::error_code ec, tcp::resolver::results_type r) {
                             result = ec;
                             endpoints = std::move(r);
                           });
    io.run_for(timeout);
    if (result == asio::error::would_block) return common::fail("resolving the host: timed out");
    if (result) return common::fail("resolving the host: " + result.message());
  }
  beast::tcp_stream plain(io);
  plain.expires_after(timeout);
  if (auto ec =
          run(io, [&](auto handler) { plain.async_connect(endpoints, std::move(handler)); })) {
    return common::fail("connecting: " + describe(ec));
  }
  if (!url.tls) {
    auto out = exchange(io, plain, plain, request, url, timeout);
    boost::system::error_code ignored;
    plain.socket().shutdown(tcp::socket::shutdown_both, ignored);
    return out;
  }

  asio::ssl::context ctx(asio::ssl::context::tls_client);
  boost::system::error_code ec;
  if (impl_->options.insecure) {
    ctx.set_verify_mode(asio::ssl::verify_none);
  } else {
    ctx.set_verify_mode(asio::ssl::verify_peer);
    if (!impl_->options.ca.empty()) {
      ctx.load_verify_file(impl_->options.ca, ec);
      if (ec) return common::fail("--ca " + impl_->options.ca + ": " + ec.message());
    } else {
      ctx.set_default_verify_paths(ec);
      if (ec) return common::fail("the system's trusted certificates: " + ec.message());
    }
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(plain), ctx);
  if (!impl_->options.insecure) {
    stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
  }
  boost::system::error_code not_ip;
  asio::ip::make_address(url.host, not_ip);
  if (not_ip && SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()) != 1) {
    return common::fail("TLS: cannot set the server name " + url.host);
  }
  beast::get_lowest_layer(stream).expires_after(timeout);
  if (auto hs = run(io, [&](auto handler) {
        stream.async_handshake(asio::ssl::stream_base::client, std::move(handler));
      })) {
    return common::fail("TLS handshake: " + describe(hs));
  }
  return exchange(io, stream, beast::get_lowest_layer(stream), request, url, timeout);
}

}  // namespace tunnel::ctl

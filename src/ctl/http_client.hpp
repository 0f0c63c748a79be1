// tunnelctl's HTTP client: one request at a time over Boost.Beast (synchronous from the
// caller's side), http:// or https:// (OpenSSL; the certificate and host name verified unless
// insecure), with a deadline on connecting and on each reply.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace tunnel::ctl {

struct Url {
  bool tls = false;
  std::string host;  // "127.0.0.1", "::1" (no brackets), "core.example.org"
  std::uint16_t port = 0;
  std::string base_path;  // "" or "/prefix" (no trailing slash)

  // "host:port", with brackets around an IPv6 address.
  [[nodiscard]] std::string host_for_address() const;
};

// "http://127.0.0.1:9000", "https://core.example.org" (port 443), "http://[::1]:9000/x".
common::Result<Url> parse_url(const std::string& text);

struct HttpRequest {
  std::string method;
  std::string target;  // "/api/v1/tunnels?limit=100"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // sent with Content-Type: application/json when not empty (unless raw)
  // Sent as given (tunnel-core replay): no User-Agent, Accept or Content-Type of our own, the
  // fields in order (repeated ones too), Host only when `headers` has none; any method.
  bool raw = false;
};

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string etag;
  std::string body;  // chunked coding removed; empty for HEAD
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
};

struct ClientOptions {
  std::string ca;  // PEM file; empty: the system's trust store
  bool insecure = false;
  std::chrono::milliseconds timeout{10000};
};

// A connection to one server, opened on the first request and kept alive between them.
class HttpClient {
 public:
  HttpClient(Url url, ClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // The failure names what went wrong (resolving, connecting, TLS, timeout, reading).
  common::Result<HttpResponse> send(const HttpRequest& request);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace tunnel::ctl

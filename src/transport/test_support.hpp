// Test support for TLS tests: a throwaway self-signed certificate and two connected TlsConns
// after their handshake. Test-only; not part of the library.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "transport/conn.hpp"
#include "transport/tls.hpp"

namespace tunnel::transport::test {

// A throwaway self-signed certificate made with the openssl CLI, removed with the object.
class TempCert {
 public:
  TempCert() {
    std::string templ = (std::filesystem::temp_directory_path() / "tunnel-test-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return;
    dir_ = templ;
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
        "-nodes -days 1 -subj /CN=localhost -keyout " +
        key() + " -out " + cert() + " >/dev/null 2>&1";
    ok_ = std::system(cmd.c_str()) == 0;
  }
  ~TempCert() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  bool ok() const { return ok_; }
  std::string cert() const { return (dir_ / "cert.pem").string(); }
  std::string key() const { return (dir_ / "key.pem").string(); }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// Both ends of a TLS connection over the connected sockets `accepted` and `dialer`, after the
// handshake (run on `io`, at most 10 s). A failure is reported with ADD_FAILURE and leaves
// `server` and `client` null. Keep the object alive while the connections are used: it owns
// their certificate and contexts.
struct TlsPair {
  TlsPair(asio::io_context& io, tcp::socket accepted, tcp::socket dialer) {
    if (!cert.ok()) {
      ADD_FAILURE() << "could not make a self-signed certificate with the openssl CLI";
      return;
    }
    auto made = make_server_tls(cert.cert(), cert.key());
    if (!made) {
      ADD_FAILURE() << made.error().message;
      return;
    }
    server_tls = std::move(made).value();
    client_tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    client_tls->set_verify_mode(asio::ssl::verify_none);
    auto s = make_tls_conn(std::move(accepted), *server_tls);
    auto c = make_tls_conn(std::move(dialer), *client_tls);
    int handshakes = 0;
    error_code server_ec, client_ec;
    asio::co_spawn(io, s->handshake(true), [&](std::exception_ptr, error_code ec) {
      server_ec = ec;
      ++handshakes;
    });
    asio::co_spawn(io, c->handshake(false), [&](std::exception_ptr, error_code ec) {
      client_ec = ec;
      ++handshakes;
    });
    io.restart();
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (handshakes < 2 && std::chrono::steady_clock::now() < limit) {
      io.run_one_for(std::chrono::milliseconds(100));
    }
    if (handshakes < 2 || server_ec || client_ec) {
      ADD_FAILURE() << "TLS handshake failed: " << server_ec.message() << " / "
                    << client_ec.message();
      return;
    }
    server = std::move(s);
    client = std::move(c);
  }

  TempCert cert;
  std::shared_ptr<asio::ssl::context> server_tls;
  std::shared_ptr<asio::ssl::context> client_tls;
  std::unique_ptr<TlsConn> server;
  std::unique_ptr<TlsConn> client;
};

}  // namespace tunnel::transport::test

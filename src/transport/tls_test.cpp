// Which TLS 1.3 suite the agent's dialer and the core's listener agree on (transport/tls.cpp).
#include "transport/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "transport/test_support.hpp"

namespace tunnel::transport {
namespace {

using namespace std::chrono_literals;

constexpr const char* kAes128 = "TLS_AES_128_GCM_SHA256";
constexpr const char* kAes256 = "TLS_AES_256_GCM_SHA384";
constexpr const char* kChacha = "TLS_CHACHA20_POLY1305_SHA256";

// The suite a handshake between the core's server context and `client` settles on ("" and a
// test failure when the handshake fails).
std::string negotiated_suite(const ClientTls& client) {
  test::TempCert cert;
  if (!cert.ok()) {
    ADD_FAILURE() << "could not make a self-signed certificate with the openssl CLI";
    return "";
  }
  auto made = make_server_tls(cert.cert(), cert.key());
  if (!made) {
    ADD_FAILURE() << made.error().message;
    return "";
  }
  auto server_tls = made.value();
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::unique_ptr<Conn> server, dialed;
  std::string server_error, dial_error;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto socket = co_await acceptor.async_accept(asio::use_awaitable);
        auto accepted = co_await accept_tls(std::move(socket), *server_tls, 5s);
        if (accepted) {
          server = std::move(accepted).value();
        } else {
          server_error = accepted.error().message;
        }
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto connected = co_await dial(io.get_executor(), "127.0.0.1", port, &client, 5s);
        if (connected) {
          dialed = std::move(connected).value();
        } else {
          dial_error = connected.error().message;
        }
      },
      asio::detached);
  io.run_for(10s);
  if (!server || !dialed) {
    ADD_FAILURE() << "handshake failed: " << server_error << " / " << dial_error;
    return "";
  }
  const SSL_CIPHER* cipher = SSL_get_current_cipher(static_cast<TlsConn&>(*dialed).native_handle());
  return cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
}

// The agent's client context without verification; with `suites`, offering only those, in that
// order.
ClientTls insecure_client(const char* suites = nullptr) {
  ClientTlsOptions options;
  options.insecure = true;
  auto made = make_client_tls(options);
  EXPECT_TRUE(made) << made.error().message;
  ClientTls client = made ? made.value() : ClientTls{};
  if (client.context && suites != nullptr) {
    EXPECT_EQ(SSL_CTX_set_ciphersuites(client.context->native_handle(), suites), 1) << suites;
  }
  return client;
}

TEST(TlsSuites, AgentAndCoreAgreeOnAes128WithAesInstructions) {
  EXPECT_EQ(negotiated_suite(insecure_client()), aes_in_hardware() ? kAes128 : kChacha);
}

TEST(TlsSuites, CorePicksItsOwnOrderOverAClientPreferringAes256) {
  const auto client = insecure_client("TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(negotiated_suite(client), aes_in_hardware() ? kAes128 : kAes256);
}

TEST(TlsSuites, CoreGivesChachaToAClientThatPutsItFirst) {
  const auto client = insecure_client("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(negotiated_suite(client), kChacha);
}

}  // namespace
}  // namespace tunnel::transport

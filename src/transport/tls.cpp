#include "transport/tls.hpp"

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/async.hpp"

namespace tunnel::transport {
namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadAheadBuffer = 64 * 1024;

std::string openssl_reason() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

// TLS 1.3 suites, most preferred first. OpenSSL's default order puts AES-256-GCM first on every
// machine. With AES instructions, AES-128-GCM (TLS 1.3's mandatory suite, 10 rounds to
// AES-256's 14) goes first: 0-4% less CPU per GiB at each end of a bulk stream here, measured.
// Without them (a Raspberry Pi 4 agent) AES runs in software, several times slower than
// ChaCha20-Poly1305, so ChaCha20 goes first.
const char* tls13_suites() {
  return aes_in_hardware()
             ? "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
             : "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
}

// TLS 1.2 suites: forward-secret (ECDHE) AEAD only, in the same order as TLS 1.3's. No CBC
// suites (padding-oracle history, MAC-then-encrypt) and no static RSA key exchange.
const char* tls12_suites() {
  return aes_in_hardware() ? "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                             "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                             "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
                           : "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                             "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                             "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
}

void harden(asio::ssl::context& ctx) {
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_ciphersuites(ctx.native_handle(), tls13_suites());
  SSL_CTX_set_cipher_list(ctx.native_handle(), tls12_suites());
  // Release the 2 x ~17 KiB record buffers while a connection is idle: many idle agents.
  SSL_CTX_set_mode(ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // Read ahead into a buffer of several records: without it OpenSSL reads each record with two
  // read() calls (its header, then its body), ten syscalls per 64 KiB of bulk data.
  SSL_CTX_set_read_ahead(ctx.native_handle(), 1);
  SSL_CTX_set_default_read_buffer_len(ctx.native_handle(), kReadAheadBuffer);
  // Sessions are long-lived and never resumed: no TLS 1.3 session tickets to send, no TLS 1.2
  // tickets (their key never rotates, so one leaked key would decrypt every recorded session)
  // and no stateful session cache.
  SSL_CTX_set_num_tickets(ctx.native_handle(), 0);
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx.native_handle(), SSL_SESS_CACHE_OFF);
}

}  // namespace

bool aes_in_hardware() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#elif defined(__aarch64__)
  return (getauxval(AT_HWCAP) & HWCAP_AES) != 0 && (getauxval(AT_HWCAP) & HWCAP_PMULL) != 0;
#else
  return false;
#endif
}

common::Result<std::shared_ptr<asio::ssl::context>> make_server_tls(const std::string& cert_file,
                                                                    const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  harden(*ctx);
  // The core picks from its own order, except that an agent which lists ChaCha20 first (one
  // without AES instructions) gets ChaCha20.
  SSL_CTX_set_options(ctx->native_handle(),
                      SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
  if (SSL_CTX_use_certificate_chain_file(ctx->native_handle(), cert_file.c_str()) != 1) {
    return common::fail("TLS certificate " + cert_file + ": " + openssl_reason());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx->native_handle(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return common::fail("TLS key " + key_file + ": " + openssl_reason());
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return common::fail("TLS key " + key_file + " does not match certificate " + cert_file);
  }
  return ctx;
}

common::Result<ClientTls> make_client_tls(const ClientTlsOptions& options) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  bool check_host = false;
  harden(*ctx);
  if (options.insecure) {
    ctx->set_verify_mode(asio::ssl::verify_none);
  } else if (options.pin) {
    ctx->set_verify_mode(asio::ssl::verify_peer);
    auto pin = options.pin;
    ctx->set_verify_callback([pin](bool, asio::ssl::verify_context& vc) {
      X509_STORE_CTX* store = vc.native_handle();
      // Only the leaf decides; intermediate and root errors are irrelevant when pinning.
      if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
      return pin(X509_STORE_CTX_get_current_cert(store));
    });
  } else {
    ctx->set_verify_mode(asio::ssl::verify_peer);
    if (!options.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx->native_handle(), options.ca_file.c_str(), nullptr) !=
          1) {
        return common::fail("CA file " + options.ca_file + ": " + openssl_reason());
      }
    } else {
      ctx->set_default_verify_paths();
    }
    check_host = true;
  }
  return ClientTls{std::move(ctx), check_host};
}

std::string describe_tls_error(const error_code& ec) {
  if (ec.category() == asio::error::get_ssl_category()) {
    std::string text = ec.message();
    const long reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      text +=
          " (the core's certificate is not trusted: pass --ca FILE, --fingerprint SHA256 or "
          "--insecure)";
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER) {
      text += " (is the other side speaking TLS?)";
    }
    return text;
  }
  return ec.message();
}

asio::awaitable<common::Result<std::unique_ptr<Conn>>> dial(asio::any_io_executor executor,
                                                            const std::string& host,
                                                            std::uint16_t port,
                                                            const ClientTls* tls,
                                                            std::chrono::milliseconds timeout) {
  const std::string where = host + ":" + std::to_string(port);
  tcp::resolver resolver(executor);
  auto [rec, endpoints] = co_await resolver.async_resolve(host, std::to_string(port), kNoThrow);
  if (rec) co_return common::fail("resolve " + where + ": " + rec.message());
  tcp::socket socket(executor);
  auto connected = co_await with_timeout(asio::async_connect(socket, endpoints, kNoThrow), timeout);
  if (!connected) {
    co_return common::fail("connect to " + where + ": timed out after " +
                           std::to_string(timeout.count()) + " ms");
  }
  if (auto [cec, ep] = *connected; cec) {
    (void)ep;
    co_return common::fail("connect to " + where + ": " + cec.message());
  }
  socket.set_option(tcp::no_delay(true));
  if (!tls) co_return make_tcp_conn(std::move(socket));

  auto conn = make_tls_conn(std::move(socket), *tls->context);
  SSL* ssl = conn->native_handle();
  SSL_set_tlsext_host_name(ssl, host.c_str());
  if (tls->check_host) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    error_code not_ip;
    (void)asio::ip::make_address(host, not_ip);
    if (not_ip) {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    }
  }
  auto handshake = co_await with_timeout(conn->handshake(false), timeout);
  if (!handshake) co_return common::fail("TLS handshake with " + where + ": timed out");
  if (const error_code hec = *handshake; hec) {
    co_return common::fail("TLS handshake with " + where + ": " + describe_tls_error(hec));
  }
  co_return std::unique_ptr<Conn>(std::move(conn));
}

asio::awaitable<common::Result<std::unique_ptr<Conn>>> accept_tls(
    tcp::socket socket, asio::ssl::context& tls, std::chrono::milliseconds timeout) {
  socket.set_option(tcp::no_delay(true));
  const std::string peer = remote_string(socket);
  auto conn = make_tls_conn(std::move(socket), tls);
  auto handshake = co_await with_timeout(conn->handshake(true), timeout);
  if (!handshake) co_return common::fail("TLS handshake from " + peer + ": timed out");
  if (const error_code hec = *handshake; hec) {
    co_return common::fail("TLS handshake from " + peer + ": " + describe_tls_error(hec));
  }
  co_return std::unique_ptr<Conn>(std::move(conn));
}

}  // namespace tunnel::transport

// TLS contexts for the agent listener (server side) and the agent's dialer (client side).
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "transport/conn.hpp"

namespace tunnel::transport {

// Every server context (agent listener, public HTTPS default and per-SNI) comes from here, so
// all get the same hardening: TLS 1.2+, TLS 1.2 limited to ECDHE AEAD suites (AES-GCM,
// ChaCha20-Poly1305), the server's suite order, no session tickets (1.2 or 1.3) and no session
// cache (sessions are never resumed), idle record buffers released. `cert_file` holds the leaf
// followed by its intermediates; the whole chain is sent. Returns nullptr and sets `error`
// (naming the file and OpenSSL's reason) when a file is unreadable, not PEM, or the key does
// not match. The error names the file and OpenSSL's reason.
common::Result<std::shared_ptr<asio::ssl::context>> make_server_tls(const std::string& cert_file,
                                                                    const std::string& key_file);

struct ClientTlsOptions {
  std::string ca_file;  // verify the chain against this PEM (and the host name)
  // Pin: accept exactly the peer leaf certificate for which this returns true (chain ignored).
  std::function<bool(X509*)> pin;
  bool insecure = false;  // no verification at all
};

struct ClientTls {
  std::shared_ptr<asio::ssl::context> context;
  bool check_host = false;  // verify the certificate names the host we dial (CA mode)
};

// Fails when the options cannot be applied (e.g. an unreadable CA file, named in the error).
common::Result<ClientTls> make_client_tls(const ClientTlsOptions& options);

// Resolves and connects to host:port (TCP_NODELAY on), then, when `tls` is non-null, runs the TLS
// handshake with SNI and host name verification. Throws nothing: an error names the address
// and the step ("connect to core.example.com:8443: Connection refused").
asio::awaitable<common::Result<std::unique_ptr<Conn>>> dial(asio::any_io_executor executor,
                                                            const std::string& host,
                                                            std::uint16_t port,
                                                            const ClientTls* tls,
                                                            std::chrono::milliseconds timeout);

// Accepts a TLS handshake on an accepted socket within `timeout`. An error names the peer.
asio::awaitable<common::Result<std::unique_ptr<Conn>>> accept_tls(
    tcp::socket socket, asio::ssl::context& tls, std::chrono::milliseconds timeout);

// Whether this CPU has AES and carry-less multiply instructions (AES-GCM in hardware). Decides
// the TLS 1.3 suite order: AES-128-GCM first with them, ChaCha20-Poly1305 first without.
bool aes_in_hardware();

// Human-readable OpenSSL error for a TLS failure ("certificate verify failed: self-signed ...").
std::string describe_tls_error(const error_code& ec);

}  // namespace tunnel::transport

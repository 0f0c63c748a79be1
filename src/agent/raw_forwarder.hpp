// Serves one stream of a tcp or udp tunnel (the OPEN_STREAM payload is the public client's
// address and the core's public address, "ip:port ip:port"; see protocol/proxy_header.hpp).
//
// tcp: dials the local app and relays bytes both ways with half-close kept (END_STREAM from the
// core becomes a FIN to the app, the app's FIN becomes END_STREAM). A RESET from the core resets
// the app connection; an app reset resets the stream with LOCAL_ERROR (mux::pump(), shared with
// the core's tcp tunnels). When the app cannot be reached the stream is reset with
// LOCAL_UNREACHABLE and a message naming the address. With `proxy` set, a PROXY header (v1 or
// v2) goes to the app before the first client byte.
//
// udp: one connected UDP socket to the local app per stream; the stream carries length-prefixed
// records (protocol/udp_record.hpp), one per datagram, both ways. The core ends the stream when
// the client session goes idle.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/net_address.hpp"
#include "mux/session.hpp"
#include "protocol/proxy_header.hpp"

namespace tunnel::agent {

// What happened to one tcp connection or udp session, for the console.
struct RawForwardResult {
  std::string client;  // the public client's address, from OPEN_STREAM
  std::string error;   // why it ended abnormally; empty after a clean close
  std::chrono::steady_clock::duration elapsed{};
  std::uint64_t bytes_in = 0;   // tcp: bytes to the app; udp: datagrams to the app
  std::uint64_t bytes_out = 0;  // tcp: bytes from the app; udp: datagrams from the app
};

asio::awaitable<RawForwardResult> forward_tcp(
    std::shared_ptr<mux::Stream> stream, common::NetAddress target,
    protocol::ProxyProtocol proxy = protocol::ProxyProtocol::kNone);
asio::awaitable<RawForwardResult> forward_udp(std::shared_ptr<mux::Stream> stream,
                                              common::NetAddress target);

}  // namespace tunnel::agent

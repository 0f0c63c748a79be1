// Feeds an arbitrary http OPEN_STREAM payload (as the agent receives it from the core) through
// the address-line split and the PROXY header encoder, v1 and v2. Whatever the input, the
// headers must be well formed: v1 one line of at most 107 bytes ending in CRLF, v2 the
// signature, version/command 0x21, and a length field that matches the bytes that follow.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/proxy_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tunnel::protocol;
  const std::string_view payload(reinterpret_cast<const char*>(data), size);
  ConnectionAddresses addresses;
  const std::string_view head = take_address_line(payload, addresses);
  if (head.size() > payload.size()) std::abort();

  const std::string v1 = proxy_header(ProxyProtocol::kV1, addresses.client, addresses.server);
  if (v1.size() > 107 || !v1.starts_with("PROXY ") || !v1.ends_with("\r\n")) std::abort();
  if (v1.find('\n') != v1.size() - 1) std::abort();

  const std::string v2 = proxy_header(ProxyProtocol::kV2, addresses.client, addresses.server);
  if (v2.size() < 16 || !v2.starts_with(kProxyV2Signature) || v2[12] != '\x21') std::abort();
  const std::size_t length =
      (static_cast<unsigned char>(v2[14]) << 8) | static_cast<unsigned char>(v2[15]);
  if (v2.size() != 16 + length) std::abort();
  if (proxy_header(ProxyProtocol::kNone, addresses.client, addresses.server) != "") std::abort();
  return 0;
}

// Feeds arbitrary bytes to both AUTH parsers; whatever parses must serialize to JSON that parses
// back to an equal message. Aborts on a broken invariant (exceptions escaping also abort).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/handshake.hpp"

namespace {

using namespace tunnel::protocol;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

template <typename Parse>
void round_trip(std::string_view text, Parse parse) {
  const auto parsed = parse(text);
  if (!parsed) {
    check(!parsed.error().message.empty());
    return;
  }
  const std::string json = serialize(parsed.value());
  if (json.size() > kMaxAuthPayload) {
    return;  // defaults written out in full can outgrow a compact input near the limit
  }
  const auto again = parse(json);
  check(static_cast<bool>(again));
  check(again.value() == parsed.value());
  check(serialize(again.value()) == json);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  round_trip(text, parse_auth_request);
  round_trip(text, parse_auth_response);
  return 0;
}

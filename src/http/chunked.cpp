#include "http/chunked.hpp"

#include <charconv>
#include <cstddef>

namespace tunnel::http {

std::string dechunk(std::string_view body) {
  std::string out;
  while (!body.empty()) {
    const std::size_t eol = body.find("\r\n");
    if (eol == std::string_view::npos) break;
    std::size_t size = 0;
    const auto [end, ec] = std::from_chars(body.data(), body.data() + eol, size, 16);
    (void)end;
    if (ec != std::errc()) break;
    body.remove_prefix(eol + 2);
    if (size == 0) break;
    out.append(body.substr(0, size));
    if (body.size() <= size + 2) break;
    body.remove_prefix(size + 2);
  }
  return out;
}

}  // namespace tunnel::http

// The result of decoding untrusted bytes: the value, or an error that names the field at fault
// (and the bad value where it helps). The protocol's parsers and codecs return it; none throws.
#pragma once

#include <optional>
#include <string>

namespace tunnel::protocol {

template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;
  explicit operator bool() const { return value.has_value(); }
};

}  // namespace tunnel::protocol

// Content-Encoding decoding for the inspector (issue 20): gzip, deflate and br bodies shown as
// their data. Bounded: the output stops at `max_out` bytes (a zip bomb cannot grow memory), and
// a body cut at the capture cap decodes as far as it goes. Pure; used only when the API asks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::agent {

struct DecodedBody {
  std::string data;
  bool truncated = false;   // stopped at max_out
  bool incomplete = false;  // the input ended before the compressed stream did
};

// Decodes `data` by a Content-Encoding value: "gzip" (or "x-gzip"), "deflate" (zlib-wrapped or
// raw, as servers send both), "br", "identity"; a list ("gzip, br") is undone right to left.
// The error names an unknown coding or corrupt data.
common::Result<DecodedBody> decode_body(std::string_view coding, std::string_view data,
                                        std::size_t max_out);

}  // namespace tunnel::agent

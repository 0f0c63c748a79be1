#include "agent/body_decode.hpp"

#include <brotli/decode.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "http/head.hpp"

namespace tunnel::agent {
namespace {

constexpr std::size_t kStep = 64 * 1024;

// windowBits: 16 + 15 gzip, 15 zlib, -15 raw deflate.
common::Result<DecodedBody> inflate_body(std::string_view in, int window_bits, std::size_t max_out,
                                         std::string_view name) {
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) return common::fail("cannot start zlib");
  const std::unique_ptr<z_stream, int (*)(z_stream*)> end(&z, inflateEnd);
  DecodedBody out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  for (;;) {
    if (out.data.size() >= max_out) {
      out.truncated = true;
      return out;
    }
    const std::size_t at = out.data.size();
    const std::size_t room = std::min(kStep, max_out - at);
    out.data.resize(at + room);
    z.next_out = reinterpret_cast<Bytef*>(out.data.data() + at);
    z.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&z, Z_NO_FLUSH);
    out.data.resize(at + room - z.avail_out);
    if (rc == Z_STREAM_END) return out;
    if (rc == Z_BUF_ERROR || (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0)) {
      out.incomplete = true;  // cut at the capture cap: what it held
      return out;
    }
    if (rc != Z_OK) {
      return common::fail(common::ErrorKind::kInvalid,
                          std::string(name) + " data is corrupt" +
                              (z.msg != nullptr ? std::string(" (") + z.msg + ")" : ""));
    }
  }
}

common::Result<DecodedBody> brotli_body(std::string_view in, std::size_t max_out) {
  const std::unique_ptr<BrotliDecoderState, void (*)(BrotliDecoderState*)> state(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), BrotliDecoderDestroyInstance);
  if (!state) return common::fail("cannot start the brotli decoder");
  DecodedBody out;
  const auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
  std::size_t avail_in = in.size();
  for (;;) {
    if (out.data.size() >= max_out) {
      out.truncated = true;
      return out;
    }
    const std::size_t at = out.data.size();
    const std::size_t room = std::min(kStep, max_out - at);
    out.data.resize(at + room);
    auto* next_out = reinterpret_cast<std::uint8_t*>(out.data.data() + at);
    std::size_t avail_out = room;
    const BrotliDecoderResult rc = BrotliDecoderDecompressStream(state.get(), &avail_in, &next_in,
                                                                 &avail_out, &next_out, nullptr);
    out.data.resize(at + room - avail_out);
    if (rc == BROTLI_DECODER_RESULT_SUCCESS) return out;
    if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) {
      out.incomplete = true;
      return out;
    }
    if (rc == BROTLI_DECODER_RESULT_ERROR) {
      return common::fail(common::ErrorKind::kInvalid,
                          std::string("br data is corrupt (") +
                              BrotliDecoderErrorString(BrotliDecoderGetErrorCode(state.get())) +
                              ")");
    }
    // NEEDS_MORE_OUTPUT: go round with more room.
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

common::Result<DecodedBody> decode_body(std::string_view coding, std::string_view data,
                                        std::size_t max_out) {
  std::vector<std::string_view> codings;
  while (!coding.empty()) {
    const std::size_t comma = coding.find(',');
    const std::string_view one = trim(coding.substr(0, comma));
    if (!one.empty()) codings.push_back(one);
    if (comma == std::string_view::npos) break;
    coding.remove_prefix(comma + 1);
  }
  DecodedBody body;
  body.data = std::string(data);
  std::reverse(codings.begin(), codings.end());  // the last coding applied is undone first
  for (const std::string_view c : codings) {
    common::Result<DecodedBody> step = DecodedBody{};
    if (http::iequals(c, "identity")) {
      continue;
    } else if (http::iequals(c, "gzip") || http::iequals(c, "x-gzip")) {
      step = inflate_body(body.data, 16 + MAX_WBITS, max_out, "gzip");
    } else if (http::iequals(c, "deflate")) {
      // RFC 9110 says zlib-wrapped; some servers send raw deflate. The zlib header tells.
      const bool zlib_wrapped = body.data.size() >= 2 &&
                                (static_cast<unsigned char>(body.data[0]) & 0x0f) == 8 &&
                                ((static_cast<unsigned char>(body.data[0]) << 8) |
                                 static_cast<unsigned char>(body.data[1])) %
                                        31 ==
                                    0;
      step = inflate_body(body.data, zlib_wrapped ? MAX_WBITS : -MAX_WBITS, max_out, "deflate");
    } else if (http::iequals(c, "br")) {
      step = brotli_body(body.data, max_out);
    } else {
      return common::fail(common::ErrorKind::kInvalid,
                          "the content coding \"" + std::string(c) +
                              "\" is not one the inspector decodes (gzip, deflate, br)");
    }
    if (!step) return step.error();
    const bool truncated = body.truncated || step.value().truncated;
    const bool incomplete = body.incomplete || step.value().incomplete;
    body = std::move(step).value();
    body.truncated = truncated;
    body.incomplete = incomplete;
  }
  return body;
}

}  // namespace tunnel::agent

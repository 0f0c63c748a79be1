#include "agent/body_decode.hpp"

#include <brotli/encode.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>

namespace tunnel::agent {
namespace {

// windowBits as zlib's: 16 + 15 gzip, 15 zlib, -15 raw.
std::string deflate_with(std::string_view in, int window_bits, int level = 9) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string brotli(std::string_view in, int quality = BROTLI_DEFAULT_QUALITY) {
  std::string out(BrotliEncoderMaxCompressedSize(in.size()), '\0');
  std::size_t n = out.size();
  EXPECT_TRUE(BrotliEncoderCompress(quality, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, in.size(),
                                    reinterpret_cast<const std::uint8_t*>(in.data()), &n,
                                    reinterpret_cast<std::uint8_t*>(out.data())));
  out.resize(n);
  return out;
}

std::string text() {
  std::string t;
  for (int i = 0; i < 2000; ++i) t += "{\"line\": " + std::to_string(i) + "}\n";
  return t;
}

TEST(BodyDecode, GzipDeflateBrotliAndLists) {
  const std::string plain = text();
  for (const auto& [coding, data] :
       {std::pair<std::string, std::string>{"gzip", deflate_with(plain, 16 + 15)},
        {"x-gzip", deflate_with(plain, 16 + 15)},
        {"deflate", deflate_with(plain, 15)},
        {"Deflate", deflate_with(plain, -15)},  // raw, as some servers send it
        {"br", brotli(plain)},
        {"gzip, br", brotli(deflate_with(plain, 16 + 15))},
        {"identity", plain}}) {
    auto decoded = decode_body(coding, data, 1 << 20);
    ASSERT_TRUE(decoded) << coding << ": " << decoded.error().message;
    EXPECT_EQ(decoded.value().data, plain) << coding;
    EXPECT_FALSE(decoded.value().truncated) << coding;
    EXPECT_FALSE(decoded.value().incomplete) << coding;
  }
}

TEST(BodyDecode, AZipBombStopsAtTheBound) {
  const std::string zeros(16 << 20, '\0');  // 16 MiB of zeros: a few KiB compressed
  for (const auto& [coding, data] :
       {std::pair<std::string, std::string>{"gzip", deflate_with(zeros, 16 + 15, 1)},
        {"br", brotli(zeros, 1)}}) {
    ASSERT_LT(data.size(), 128u * 1024) << coding;
    auto decoded = decode_body(coding, data, 100'000);
    ASSERT_TRUE(decoded) << coding;
    EXPECT_EQ(decoded.value().data.size(), 100'000u) << coding;
    EXPECT_TRUE(decoded.value().truncated) << coding;
  }
}

TEST(BodyDecode, ABodyCutAtTheCapDecodesAsFarAsItGoes) {
  const std::string plain = text();
  for (const auto& [coding, data] :
       {std::pair<std::string, std::string>{"gzip", deflate_with(plain, 16 + 15)},
        {"br", brotli(plain)}}) {
    auto decoded = decode_body(coding, std::string_view(data).substr(0, data.size() / 2), 1 << 20);
    ASSERT_TRUE(decoded) << coding << ": " << decoded.error().message;
    EXPECT_TRUE(decoded.value().incomplete) << coding;
    EXPECT_GT(decoded.value().data.size(), 0u) << coding;
    EXPECT_TRUE(plain.starts_with(decoded.value().data)) << coding;
  }
}

TEST(BodyDecode, CorruptDataAndUnknownCodingsAreNamed) {
  auto corrupt = decode_body("gzip", "this is not gzip at all", 1000);
  ASSERT_FALSE(corrupt);
  EXPECT_NE(corrupt.error().message.find("gzip"), std::string::npos);
  auto bad_br = decode_body("br", std::string(100, '\xff'), 1000);
  ASSERT_FALSE(bad_br);
  EXPECT_NE(bad_br.error().message.find("br"), std::string::npos);
  auto unknown = decode_body("zstd", "x", 1000);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("zstd"), std::string::npos);
}

}  // namespace
}  // namespace tunnel::agent

#include "mux/chunk_queue.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace tunnel::mux {
namespace {

std::vector<std::uint8_t> bytes(std::size_t n, std::uint8_t first) {
  std::vector<std::uint8_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

std::vector<std::uint8_t> read_all(ChunkQueue& q, std::size_t step) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> buf(step);
  while (!q.empty()) {
    const std::size_t n = q.read(buf);
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return out;
}

TEST(ChunkQueue, ReadsBackInOrderAcrossChunks) {
  ChunkQueue q;
  std::vector<std::uint8_t> expected;
  // Small appends share a chunk; big ones get their own.
  for (std::size_t n : {1u, 300u, 20000u, 5u, 70000u, 16384u, 2u}) {
    const auto b = bytes(n, static_cast<std::uint8_t>(n));
    q.append(b);
    expected.insert(expected.end(), b.begin(), b.end());
  }
  EXPECT_EQ(q.size(), expected.size());
  EXPECT_EQ(read_all(q, 777), expected);
  EXPECT_EQ(q.size(), 0u);
  std::uint8_t byte = 0;
  EXPECT_EQ(q.read({&byte, 1}), 0u);
}

TEST(ChunkQueue, InterleavedAppendsAndReadsKeepOrder) {
  ChunkQueue q;
  std::vector<std::uint8_t> expected;
  std::vector<std::uint8_t> got;
  std::vector<std::uint8_t> buf(40000);
  for (std::size_t i = 0; i < 1500; ++i) {
    const auto b = bytes(1 + (i * 7919) % 20000, static_cast<std::uint8_t>(i));
    q.append(b);
    expected.insert(expected.end(), b.begin(), b.end());
    // First read less than is appended (the queue falls behind, chunks pile up), then more (its
    // emptied front slots pile up and get dropped while chunks are still held).
    const std::size_t most = i < 700 ? 5000 : buf.size();
    const std::size_t n = q.read({buf.data(), 1 + (i * 104729) % most});
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    ASSERT_EQ(q.size(), expected.size() - got.size());
  }
  const auto rest = read_all(q, 65536);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, expected);
}

TEST(ChunkQueue, PrependPutsBytesBeforeEverythingHeld) {
  for (std::size_t first_read : {0u, 3u, 100u}) {
    ChunkQueue q;
    const auto a = bytes(200, 0);
    q.append(a);
    std::vector<std::uint8_t> out(first_read);
    ASSERT_EQ(q.read(out), first_read);
    const auto p = bytes(50, 200);  // fits in the consumed space only when first_read >= 50
    q.prepend(p);
    std::vector<std::uint8_t> expected(p);
    expected.insert(expected.end(), a.begin() + static_cast<std::ptrdiff_t>(first_read), a.end());
    EXPECT_EQ(read_all(q, 64), expected) << "first_read " << first_read;
  }
  ChunkQueue empty;
  const auto p = bytes(10, 1);
  empty.prepend(p);
  EXPECT_EQ(read_all(empty, 3), p);
}

TEST(ChunkQueue, ClearDropsEverything) {
  ChunkQueue q;
  q.append(bytes(100000, 1));
  q.clear();
  EXPECT_TRUE(q.empty());
  const auto b = bytes(10, 9);
  q.append(b);
  EXPECT_EQ(read_all(q, 4), b);
}

}  // namespace
}  // namespace tunnel::mux

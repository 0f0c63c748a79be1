// A stream's unread bytes, in chunks: appending never moves what is already held (a growing
// vector would copy it all again), and reading never compacts. Small appends share the last
// chunk; the last chunk read is kept for reuse, so a stream whose reader stays behind allocates
// nothing in steady state. An empty queue owns no memory until the first append.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tunnel::mux {

class ChunkQueue {
 public:
  static constexpr std::size_t kMinChunk = 16 * 1024;  // small appends share a chunk this big

  std::size_t size() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

  // Appends `bytes` at the end.
  void append(std::span<const std::uint8_t> bytes);
  // Puts `bytes` back in front of everything held (bytes taken out, then not used).
  void prepend(std::span<const std::uint8_t> bytes);
  // Moves up to out.size() bytes from the front into `out`; returns how many.
  std::size_t read(std::span<std::uint8_t> out);
  // Drops everything and gives the memory back.
  void clear();

 private:
  std::vector<std::vector<std::uint8_t>> chunks_;  // chunks_[head_] is the front
  std::size_t head_ = 0;
  std::size_t pos_ = 0;  // read offset into the front chunk
  std::size_t bytes_ = 0;
  std::vector<std::uint8_t> spare_;
};

}  // namespace tunnel::mux

#include "mux/chunk_queue.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace tunnel::mux {

void ChunkQueue::append(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  bytes_ += bytes.size();
  if (head_ < chunks_.size()) {
    auto& last = chunks_.back();
    if (last.capacity() - last.size() >= bytes.size()) {
      last.insert(last.end(), bytes.begin(), bytes.end());
      return;
    }
  }
  std::vector<std::uint8_t> chunk = std::move(spare_);
  spare_ = {};
  chunk.clear();
  chunk.reserve(std::max(bytes.size(), kMinChunk));
  chunk.insert(chunk.end(), bytes.begin(), bytes.end());
  chunks_.push_back(std::move(chunk));
}

void ChunkQueue::prepend(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  bytes_ += bytes.size();
  if (head_ < chunks_.size() && pos_ >= bytes.size()) {
    // The front chunk has that much already-read room before its unread bytes: reuse it.
    pos_ -= bytes.size();
    std::memcpy(chunks_[head_].data() + pos_, bytes.data(), bytes.size());
    return;
  }
  std::vector<std::uint8_t> chunk(bytes.begin(), bytes.end());
  if (head_ < chunks_.size()) {
    // Keep one front offset: the new chunk takes the unread rest of the old front.
    auto& front = chunks_[head_];
    chunk.insert(chunk.end(), front.begin() + static_cast<std::ptrdiff_t>(pos_), front.end());
    front = std::move(chunk);
  } else {
    chunks_.clear();
    head_ = 0;
    chunks_.push_back(std::move(chunk));
  }
  pos_ = 0;
}

std::size_t ChunkQueue::read(std::span<std::uint8_t> out) {
  std::size_t copied = 0;
  while (copied < out.size() && head_ < chunks_.size()) {
    auto& front = chunks_[head_];
    const std::size_t n = std::min(out.size() - copied, front.size() - pos_);
    std::memcpy(out.data() + copied, front.data() + pos_, n);
    copied += n;
    pos_ += n;
    if (pos_ == front.size()) {
      if (front.capacity() >= spare_.capacity()) spare_ = std::move(front);
      ++head_;
      pos_ = 0;
    }
  }
  if (head_ == chunks_.size()) {
    chunks_.clear();  // keeps the (small) vector of chunks for the next burst
    head_ = 0;
  } else if (head_ >= 16 && head_ * 2 >= chunks_.size()) {
    // A reader that never catches up: drop the emptied slots in front now and then.
    chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  bytes_ -= copied;
  return copied;
}

void ChunkQueue::clear() {
  chunks_.clear();
  chunks_.shrink_to_fit();
  head_ = 0;
  pos_ = 0;
  bytes_ = 0;
  spare_ = {};
}

}  // namespace tunnel::mux

#include "metrics/series.hpp"

#include <algorithm>
#include <iterator>
#include <memory>
#include <mutex>

namespace metrics {

namespace block_pool {

namespace {

constexpr std::size_t kSlabBlocks = 64;  // 256 KiB: malloc maps it in one go

struct Pool {
  std::mutex mu;
  std::vector<std::unique_ptr<char[]>> slabs;  // guarded by mu
  std::size_t used_in_last = kSlabBlocks;      // guarded by mu: blocks handed out of slabs.back()
  std::vector<void*> free_blocks;              // guarded by mu
};

Pool& pool() {
  // Never destroyed: blocks may be freed by other static destructors.
  static Pool* const the_pool = new Pool;
  return *the_pool;
}

}  // namespace

void* allocate() {
  if (!kPooled) return ::operator new(kBytes);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.free_blocks.empty()) {
    void* block = p.free_blocks.back();
    p.free_blocks.pop_back();
    return block;
  }
  if (p.used_in_last == kSlabBlocks) {
    p.slabs.emplace_back(new char[kSlabBlocks * kBytes]);
    p.used_in_last = 0;
  }
  return p.slabs.back().get() + kBytes * p.used_in_last++;
}

void deallocate(void* block) {
  if (!kPooled) return ::operator delete(block);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.free_blocks.push_back(block);
}

}  // namespace block_pool

namespace {

bool before(const Sample& s, int64_t timestamp) { return s.timestamp < timestamp; }

}  // namespace

bool SampleSeries::insert(int64_t timestamp, double value) {
  // Monitoring data mostly arrives in time order: append without a search.
  if (blocks_.empty() || blocks_.back().back().timestamp < timestamp) {
    if (blocks_.empty() || blocks_.back().size() == kBlockSamples) {
      blocks_.emplace_back();
      // The first block grows as a vector does, so a short series stays
      // small; later ones are allocated whole.
      if (blocks_.size() > 1) blocks_.back().reserve(kBlockSamples);
    }
    blocks_.back().push_back(Sample{timestamp, value});
    ++size_;
    return true;
  }
  // The first block whose last sample is at or after `timestamp`: the last
  // block is, so there is one.
  auto find_block = [&] {
    return static_cast<std::size_t>(
        std::lower_bound(blocks_.begin(), blocks_.end(), timestamp,
                         [](const Block& b, int64_t ts) { return b.back().timestamp < ts; }) -
        blocks_.begin());
  };
  std::size_t index = find_block();
  Block* block = &blocks_[index];
  auto it = std::lower_bound(block->begin(), block->end(), timestamp, before);
  if (it->timestamp == timestamp) {
    it->value = value;
    return false;
  }
  if (block->size() == kBlockSamples) {
    split(index);
    index = find_block();
    block = &blocks_[index];
    it = std::lower_bound(block->begin(), block->end(), timestamp, before);
  }
  block->insert(it, Sample{timestamp, value});
  ++size_;
  return true;
}

void SampleSeries::split(std::size_t index) {
  Block upper;
  upper.reserve(kBlockSamples);
  Block& full = blocks_[index];
  auto middle = full.begin() + static_cast<std::ptrdiff_t>(full.size() / 2);
  upper.assign(middle, full.end());
  full.erase(middle, full.end());
  blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(index) + 1, std::move(upper));
}

void SampleSeries::append_to(std::vector<Sample>* out) const {
  out->reserve(out->size() + size_);
  for (const Block& block : blocks_) out->insert(out->end(), block.begin(), block.end());
}

}  // namespace metrics

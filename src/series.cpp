#include "metrics/series.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>

namespace metrics {

namespace block_pool {

namespace {

// Blocks are carved from 2 MiB slabs, each mapped on its own and aligned to
// 2 MiB so that the kernel can back it with one transparent huge page
// (MADV_HUGEPAGE; honoured when /sys/kernel/mm/transparent_hugepage/enabled
// is `always` or `madvise`). Filling a slab then costs one page fault instead
// of 512, and page faults were a tenth of a pipelined put's server CPU time.
// Slabs are only used by series past their first block (256 samples), so a
// small store never maps one.
constexpr std::size_t kSlabBytes = std::size_t{2} << 20;
constexpr std::size_t kSlabBlocks = kSlabBytes / kBytes;

char* map_slab() {
  // Map twice the size, then unmap what lies outside the aligned middle.
  void* mapped =
      ::mmap(nullptr, 2 * kSlabBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(mapped);
  const std::uintptr_t aligned = (start + kSlabBytes - 1) & ~(std::uintptr_t{kSlabBytes} - 1);
  const std::uintptr_t end = start + 2 * kSlabBytes;
  if (aligned > start) ::munmap(mapped, aligned - start);
  if (end > aligned + kSlabBytes) {
    ::munmap(reinterpret_cast<void*>(aligned + kSlabBytes), end - aligned - kSlabBytes);
  }
  // Best effort: without huge pages the slab fills a 4 KiB page at a time.
  ::madvise(reinterpret_cast<void*>(aligned), kSlabBytes, MADV_HUGEPAGE);
  return reinterpret_cast<char*>(aligned);
}

struct Pool {
  std::mutex mu;
  char* slab = nullptr;                    // guarded by mu: the slab blocks are carved from
  std::size_t used_in_slab = kSlabBlocks;  // guarded by mu: blocks handed out of it
  std::vector<void*> free_blocks;          // guarded by mu
};

Pool& pool() {
  // Never destroyed, and its slabs are never unmapped: blocks may be freed
  // by other static destructors, and the pool keeps freed blocks for reuse.
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
  if (p.used_in_slab == kSlabBlocks) {
    p.slab = map_slab();
    p.used_in_slab = 0;
  }
  return p.slab + kBytes * p.used_in_slab++;
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

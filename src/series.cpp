#include "series.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <new>

namespace metrics {

namespace block_pool {

namespace {

// Blocks are carved from slabs, each mapped on its own. The first
// kSmallSlabs are 256 KiB of ordinary pages, so a small store's memory grows
// in small steps; after them a store is clearly large and slabs are 2 MiB,
// aligned to 2 MiB so that the kernel can back each with one transparent
// huge page (MADV_HUGEPAGE; honoured when
// /sys/kernel/mm/transparent_hugepage/enabled is `always` or `madvise`).
// Filling such a slab costs one page fault instead of 512, and page faults
// were a tenth of a pipelined put's server CPU time. Slabs are only used by
// series past their first block (256 samples).
constexpr std::size_t kSmallSlabBytes = std::size_t{256} << 10;
constexpr std::size_t kSmallSlabs = 8;
constexpr std::size_t kHugeSlabBytes = std::size_t{2} << 20;

// Maps `bytes` of zeroed memory, aligned to `bytes` if `huge`.
char* map_slab(std::size_t bytes, bool huge) {
  const std::size_t length = huge ? 2 * bytes : bytes;
  void* mapped =
      ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  if (!huge) return static_cast<char*>(mapped);
  // Twice the size was mapped: unmap what lies outside the aligned middle.
  const auto start = reinterpret_cast<std::uintptr_t>(mapped);
  const std::uintptr_t aligned = (start + bytes - 1) & ~(std::uintptr_t{bytes} - 1);
  const std::uintptr_t end = start + length;
  if (aligned > start) ::munmap(mapped, aligned - start);
  if (end > aligned + bytes) {
    ::munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  }
  // Best effort: without huge pages the slab fills a 4 KiB page at a time.
  ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<char*>(aligned);
}

// A freed block, linked into the free list through its own first bytes: a
// free list held in a separate container would have to grow as blocks are
// freed, and an allocation failing there would throw out of deallocate(),
// which runs in destructors (noexcept: std::terminate).
struct FreeBlock {
  FreeBlock* next;
};
static_assert(sizeof(FreeBlock) <= kBytes && alignof(FreeBlock) <= alignof(std::max_align_t),
              "a free block must hold its link");

struct Pool {
  std::mutex mu;
  std::size_t slabs = 0;           // guarded by mu: how many were mapped
  char* next = nullptr;            // guarded by mu: the next block never handed out
  char* slab_end = nullptr;        // guarded by mu: the end of the slab `next` is in
  FreeBlock* free_list = nullptr;  // guarded by mu: freed blocks, the last freed first
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
  if (p.free_list != nullptr) {
    FreeBlock* block = p.free_list;
    p.free_list = block->next;
    return block;
  }
  if (p.next == p.slab_end) {
    const bool huge = p.slabs >= kSmallSlabs;
    const std::size_t bytes = huge ? kHugeSlabBytes : kSmallSlabBytes;
    p.next = map_slab(bytes, huge);
    p.slab_end = p.next + bytes;
    ++p.slabs;
  }
  void* block = p.next;
  p.next += kBytes;
  return block;
}

void deallocate(void* block) noexcept {
  if (!kPooled) return ::operator delete(block);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.free_list = new (block) FreeBlock{p.free_list};
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

std::size_t SampleSeries::append_range(int64_t from, int64_t until, std::size_t max_samples,
                                       std::vector<Sample>* out) const {
  if (from > until) return 0;
  // The first block with a sample at or after `from`; within it, that sample.
  auto block = std::lower_bound(blocks_.begin(), blocks_.end(), from,
                                [](const Block& b, int64_t ts) { return b.back().timestamp < ts; });
  if (block == blocks_.end()) return 0;
  auto first = std::lower_bound(block->begin(), block->end(), from, before);
  std::size_t appended = 0;
  while (appended < max_samples) {
    // Up to the first sample past `until`, if this block holds it.
    auto last = block->back().timestamp <= until
                    ? block->end()
                    : std::upper_bound(first, block->end(), until, [](int64_t ts, const Sample& s) {
                        return ts < s.timestamp;
                      });
    const std::size_t take =
        std::min(max_samples - appended, static_cast<std::size_t>(last - first));
    out->insert(out->end(), first, first + static_cast<std::ptrdiff_t>(take));
    appended += take;
    if (last != block->end() || ++block == blocks_.end()) break;
    first = block->begin();
  }
  return appended;
}

}  // namespace metrics

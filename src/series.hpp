// One key's samples: the compact sorted array behind Storage.
#ifndef METRICS_SERIES_HPP_
#define METRICS_SERIES_HPP_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "metrics/sample.hpp"
#include "sanitizers.hpp"

namespace metrics {

// Allocates SampleSeries' full-size blocks: 4 KiB pieces carved from slabs
// (the first 2 MiB in 256 KiB slabs, then 2 MiB slabs that the kernel may
// back with transparent huge pages: one page fault a slab instead of 512),
// with a free list threaded through the freed blocks themselves (so freeing
// never allocates and cannot fail), shared by the whole process and never
// returned to the system. Blocks from malloc instead would each grow a thread's malloc
// arena by one more page with an mprotect call: one system call per 256 puts,
// about 7% of a pipelined put. Other sizes go to operator new. Thread-safe
// (one mutex, taken once per block).
template <typename T>
class BlockAllocator {
 public:
  using value_type = T;
  BlockAllocator() = default;
  template <typename U>
  BlockAllocator(const BlockAllocator<U>& /*other*/) {}  // NOLINT: allocators convert implicitly

  T* allocate(std::size_t n);
  // Never throws: it runs in destructors.
  void deallocate(T* p, std::size_t n) noexcept;

  friend bool operator==(const BlockAllocator&, const BlockAllocator&) { return true; }
  friend bool operator!=(const BlockAllocator&, const BlockAllocator&) { return false; }
};

// The pool behind BlockAllocator: blocks of exactly kBytes.
namespace block_pool {
inline constexpr std::size_t kBytes = 4096;
// Under AddressSanitizer every block is its own allocation, so that reading
// or writing past a block is still caught.
inline constexpr bool kPooled = !kAddressSanitizer;
// A block of kBytes, aligned for any type; throws std::bad_alloc when no
// memory can be mapped.
void* allocate();
// Gives back a block from allocate(). Never allocates, so never fails.
void deallocate(void* block) noexcept;
}  // namespace block_pool

template <typename T>
T* BlockAllocator<T>::allocate(std::size_t n) {
  if (n * sizeof(T) == block_pool::kBytes) return static_cast<T*>(block_pool::allocate());
  return std::allocator<T>().allocate(n);
}

template <typename T>
void BlockAllocator<T>::deallocate(T* p, std::size_t n) noexcept {
  if (n * sizeof(T) == block_pool::kBytes) {
    block_pool::deallocate(p);
  } else {
    std::allocator<T>().deallocate(p, n);
  }
}

// Samples sorted by timestamp, at most one per timestamp, in blocks of at
// most kBlockSamples (4 KiB). Appending in time order, the common case, is a
// push_back into the last block; no sample is ever copied again, whereas a
// single growing vector copies the whole series at each doubling (while
// its key is locked: tens of milliseconds for a series of millions). An
// insert in the middle touches one block; a full block is split in two.
// Memory: 16 bytes a sample when samples come in order; as little as half
// full blocks when they come in random order. Not thread-safe.
class SampleSeries {
 public:
  static constexpr std::size_t kBlockSamples = block_pool::kBytes / sizeof(Sample);  // 256

  // Stores `value` at `timestamp`, replacing the value of a sample already
  // there. Returns true if a sample was added.
  bool insert(int64_t timestamp, double value);

  std::size_t size() const { return size_; }

  // Appends every sample, in order, to `out`.
  void append_to(std::vector<Sample>* out) const;

  // Appends to `out`, in order, the first `max_samples` samples (or all, if
  // fewer) whose timestamp is at least `from` and at most `until`. Returns
  // how many it appended. Costs a binary search plus the samples copied, so
  // a long series can be read a bounded piece at a time.
  std::size_t append_range(int64_t from, int64_t until, std::size_t max_samples,
                           std::vector<Sample>* out) const;

  // The highest timestamp stored. REQUIRES: size() > 0.
  int64_t last_timestamp() const { return blocks_.back().back().timestamp; }

 private:
  using Block = std::vector<Sample, BlockAllocator<Sample>>;

  // Moves the upper half of the full block at `index` into a new block right
  // after it.
  void split(std::size_t index);

  std::vector<Block> blocks_;  // each sorted and non-empty; blocks in order
  std::size_t size_ = 0;
};

}  // namespace metrics

#endif  // METRICS_SERIES_HPP_

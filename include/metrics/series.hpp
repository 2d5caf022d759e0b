// One key's samples: the compact sorted array behind Storage.
#ifndef METRICS_SERIES_HPP_
#define METRICS_SERIES_HPP_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "metrics/sample.hpp"

namespace metrics {

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
  static constexpr std::size_t kBlockSamples = 256;

  // Stores `value` at `timestamp`, replacing the value of a sample already
  // there. Returns true if a sample was added.
  bool insert(int64_t timestamp, double value);

  std::size_t size() const { return size_; }

  // Appends every sample, in order, to `out`.
  void append_to(std::vector<Sample>* out) const;

 private:
  using Block = std::vector<Sample>;

  // Moves the upper half of the full block at `index` into a new block right
  // after it.
  void split(std::size_t index);

  std::vector<Block> blocks_;  // each sorted and non-empty; blocks in order
  std::size_t size_ = 0;
};

}  // namespace metrics

#endif  // METRICS_SERIES_HPP_

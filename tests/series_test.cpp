// Tests of metrics::SampleSeries, the block-structured sorted array behind
// each key (docs/protocol.md "Responses": samples by ascending timestamp, the
// last put at a timestamp wins), against a std::map model.
#include "series.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "procfs.hpp"
#include "test_util.hpp"

using metrics::Sample;
using metrics::SampleSeries;

namespace {

std::vector<Sample> samples_of(const SampleSeries& series) {
  std::vector<Sample> out;
  series.append_to(&out);
  return out;
}

std::vector<Sample> samples_of(const std::map<int64_t, double>& model) {
  std::vector<Sample> out;
  for (const auto& [timestamp, value] : model) out.push_back(Sample{timestamp, value});
  return out;
}

constexpr int kBlock = static_cast<int>(SampleSeries::kBlockSamples);

}  // namespace

TEST_CASE("a series appended in order keeps every sample across many blocks", "[series]") {
  SampleSeries series;
  const int n = 10 * kBlock + 7;
  for (int i = 0; i < n; ++i) CHECK(series.insert(i * 10, i * 0.5));
  CHECK(series.size() == static_cast<std::size_t>(n));
  std::vector<Sample> expected;
  for (int i = 0; i < n; ++i) expected.push_back(Sample{i * 10, i * 0.5});
  CHECK(samples_of(series) == expected);
}

TEST_CASE("append_to adds after what the vector already holds", "[series]") {
  SampleSeries series;
  series.insert(5, 1.5);
  std::vector<Sample> out{{1, 0.0}};
  series.append_to(&out);
  CHECK(out == std::vector<Sample>{{1, 0.0}, {5, 1.5}});
}

TEST_CASE("a series matches an ordered map under any order of puts", "[series]") {
  // Timestamps from a range a few blocks wide, so that inserts land before,
  // between and after blocks, fill blocks and split them, and about a
  // third of the puts replace an existing value.
  const int range = GENERATE(3, 2 * kBlock, 9 * kBlock);
  const unsigned seed = GENERATE(1u, 2u, 3u);
  INFO("range " << range << ", seed " << seed);
  std::mt19937 random(seed);
  std::uniform_int_distribution<int64_t> timestamp(-range / 2, range / 2);
  SampleSeries series;
  std::map<int64_t, double> model;
  int wrong_results = 0;
  for (int i = 0; i < 3 * range + 50; ++i) {
    const int64_t ts = timestamp(random);
    const double value = i + 0.25;
    const bool added = model.count(ts) == 0;
    model[ts] = value;
    if (series.insert(ts, value) != added) ++wrong_results;
  }
  CHECK(wrong_results == 0);
  CHECK(series.size() == model.size());
  CHECK(samples_of(series) == samples_of(model));
}

TEST_CASE("a range of a series holds its samples between the bounds, at most as many as asked",
          "[series]") {
  // Every fifth timestamp over ten blocks, some inserted out of order so
  // that blocks are split and partly full; ranges start and end inside,
  // between and beyond blocks.
  SampleSeries series;
  std::map<int64_t, double> model;
  std::mt19937 random(7);
  std::vector<int64_t> timestamps;
  for (int i = 0; i < 10 * kBlock; ++i) timestamps.push_back(5 * i);
  std::shuffle(timestamps.begin() + 3 * kBlock, timestamps.end(), random);
  for (int64_t ts : timestamps) {
    series.insert(ts, ts * 0.5);
    model[ts] = ts * 0.5;
  }
  series.insert(std::numeric_limits<int64_t>::min(), 1.0);
  model[std::numeric_limits<int64_t>::min()] = 1.0;
  series.insert(std::numeric_limits<int64_t>::max(), 2.0);
  model[std::numeric_limits<int64_t>::max()] = 2.0;
  std::uniform_int_distribution<int64_t> bound(-20, 50 * kBlock + 20);
  std::uniform_int_distribution<std::size_t> count(0, 3 * kBlock);
  int wrong = 0;
  for (int round = 0; round < 500; ++round) {
    int64_t from = bound(random);
    int64_t until = bound(random);
    if (round == 0) from = std::numeric_limits<int64_t>::min();
    if (round == 1) until = std::numeric_limits<int64_t>::max();
    const std::size_t max = round < 2 ? model.size() : count(random);
    std::vector<Sample> expected{{-1, -1.0}};
    for (auto it = model.lower_bound(from);
         it != model.end() && it->first <= until && expected.size() < max + 1; ++it) {
      expected.push_back(Sample{it->first, it->second});
    }
    std::vector<Sample> got{{-1, -1.0}};  // appended after, as append_to does
    const std::size_t appended = series.append_range(from, until, max, &got);
    if (got != expected || appended != expected.size() - 1) {
      ++wrong;
      UNSCOPED_INFO("from " << from << " until " << until << " max " << max);
    }
  }
  CHECK(wrong == 0);
  std::vector<Sample> none;
  CHECK(series.append_range(10, 9, 100, &none) == 0);
  CHECK(none.empty());
  CHECK(series.last_timestamp() == std::numeric_limits<int64_t>::max());
}

TEST_CASE("inserts into the middle of full blocks split them and keep the order", "[series]") {
  // Even timestamps first (full blocks), then every odd one from the top
  // down and the bottom up, then the extremes, then replacements.
  SampleSeries series;
  std::map<int64_t, double> model;
  const int n = 4 * kBlock;
  auto put = [&](int64_t ts, double value) {
    series.insert(ts, value);
    model[ts] = value;
  };
  for (int i = 0; i < n; ++i) put(2 * i, i);
  for (int i = n - 1; i >= n / 2; --i) put(2 * i + 1, -i);
  for (int i = 0; i < n / 2; ++i) put(2 * i + 1, -i);
  put(std::numeric_limits<int64_t>::min(), 1.0);
  put(std::numeric_limits<int64_t>::max(), 2.0);
  for (int i = 0; i < 2 * n; i += 3) put(i, 0.5);
  CHECK(series.size() == model.size());
  CHECK(samples_of(series) == samples_of(model));
}

TEST_CASE("full-size blocks come from the block pool and are reused once freed", "[series]") {
  metrics::BlockAllocator<Sample> allocator;
  const std::size_t n = SampleSeries::kBlockSamples;
  Sample* first = allocator.allocate(n);
  Sample* second = allocator.allocate(n);
  CHECK(first != second);
  // A whole block is usable.
  for (std::size_t i = 0; i < n; ++i) first[i] = second[i] = Sample{static_cast<int64_t>(i), 1.0};
  allocator.deallocate(first, n);
  if (metrics::block_pool::kPooled) {
    // (Under ASan every block is its own allocation.) The freed block is
    // the next one handed out.
    Sample* again = allocator.allocate(n);
    CHECK(again == first);
    allocator.deallocate(again, n);
  }
  allocator.deallocate(second, n);
  // Other sizes are plain allocations.
  Sample* small = allocator.allocate(3);
  small[2] = Sample{2, 2.0};
  allocator.deallocate(small, 3);
}

TEST_CASE("the block pool hands out distinct whole blocks across many slabs", "[series]") {
  // 1200 blocks: the 256 KiB slabs a pool starts with (512 blocks), then
  // more than one 2 MiB slab.
  metrics::BlockAllocator<Sample> allocator;
  const std::size_t n = SampleSeries::kBlockSamples;
  std::vector<Sample*> blocks;
  for (int i = 0; i < 1200; ++i) {
    Sample* block = allocator.allocate(n);
    for (std::size_t j = 0; j < n; ++j) block[j] = Sample{i, static_cast<double>(j)};
    blocks.push_back(block);
  }
  // No block was overwritten by a later one, and none overlap.
  for (int i = 0; i < 1200; ++i) {
    const Sample* block = blocks[static_cast<std::size_t>(i)];
    CHECK(block[0].timestamp == i);
    CHECK(block[n - 1].timestamp == i);
    CHECK(block[n - 1].value == static_cast<double>(n - 1));
  }
  std::vector<Sample*> sorted = blocks;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    CHECK(sorted[i] - sorted[i - 1] >= static_cast<std::ptrdiff_t>(n));
  }
  for (Sample* block : blocks) allocator.deallocate(block, n);
}

// Run only as a child process by the next test (the "[.]" tag hides it): it
// caps the process's address space, which it cannot give back.
TEST_CASE("the block pool child frees and reuses its blocks with no address space to spare",
          "[.][block_pool_child]") {
  using Block = std::vector<Sample, metrics::BlockAllocator<Sample>>;
  constexpr std::size_t kBlocks = 16384;  // the old free list grew to 128 KiB for them
  std::vector<Block> blocks(kBlocks);
  std::vector<const Sample*> first;
  std::vector<const Sample*> again;
  first.reserve(kBlocks);
  again.reserve(kBlocks);
  for (Block& block : blocks) {
    block.reserve(SampleSeries::kBlockSamples);
    first.push_back(block.data());
  }
  // From here until the limit is lifted, every mmap and brk fails: nothing
  // may allocate but the pool's reuse of freed blocks.
  rlimit old_limit{};
  REQUIRE(::getrlimit(RLIMIT_AS, &old_limit) == 0);
  const long size_kib = metrics::proc_status_field(::getpid(), "VmSize");
  REQUIRE(size_kib > 0);
  rlimit tight = old_limit;
  tight.rlim_cur = static_cast<rlim_t>(size_kib) * 1024;
  REQUIRE(::setrlimit(RLIMIT_AS, &tight) == 0);
  // Each block is freed by a vector destructor, which is noexcept: a throw
  // from the pool here would be std::terminate.
  blocks.clear();
  blocks.resize(kBlocks);  // within the capacity kept by clear()
  for (Block& block : blocks) {
    block.reserve(SampleSeries::kBlockSamples);
    again.push_back(block.data());
  }
  const int lifted = ::setrlimit(RLIMIT_AS, &old_limit);
  REQUIRE(lifted == 0);
  // The same blocks came back, from the free list.
  std::sort(first.begin(), first.end());
  std::sort(again.begin(), again.end());
  CHECK(first == again);
}

TEST_CASE("freeing pool blocks cannot fail for want of memory and the blocks are reused",
          "[series]") {
  // Under ASan there is no pool (every block is its own allocation); under
  // TSan an allocation past the cap kills the process instead of throwing.
  if (!metrics::block_pool::kPooled || metrics::test::kThreadSanitizer) {
    SUCCEED("no block pool to test in this build");
    return;
  }
  char self[4096];
  const ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
  REQUIRE(length > 0);
  const metrics::test::ProcessResult child = metrics::test::run_process(
      {std::string(self, static_cast<std::size_t>(length)), "[block_pool_child]"});
  INFO("child stdout: " << child.out);
  INFO("child stderr: " << child.err);
  CHECK(child.signal == 0);
  CHECK(child.exit_code == 0);
  CHECK(child.out.find("1 passed, 0 failed") != std::string::npos);
}

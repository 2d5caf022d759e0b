// Tests of metrics::Storage against docs/protocol.md "Responses": samples ordered
// by timestamp, one value per (key, timestamp) with the last put winning, keys
// in order of first put, and nothing lost when many threads put at once.
#include "storage.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "procfs.hpp"
#include "test_util.hpp"

using namespace std::string_literals;

using metrics::Sample;
using metrics::Storage;

namespace {

std::vector<Sample> series_of(const Storage& storage, const std::string& key) {
  std::vector<Sample> samples;
  storage.copy_series(key, &samples);
  return samples;
}

std::vector<std::string> keys_of(const Storage& storage) {
  std::vector<std::string> keys;
  std::string key;
  std::vector<Sample> samples;
  for (std::size_t i = 0; storage.copy_series(i, &key, &samples); ++i) keys.push_back(key);
  return keys;
}

struct KeyedSample {
  std::string key;
  int64_t timestamp;
  double value;
};

// Puts each of `puts` into `storage`, in order.
void put_all(Storage& storage, const std::vector<KeyedSample>& puts) {
  for (const KeyedSample& p : puts) storage.put(p.key, p.timestamp, p.value);
}

bool sorted_by_unique_timestamp(const std::vector<Sample>& samples) {
  return std::adjacent_find(samples.begin(), samples.end(), [](const Sample& a, const Sample& b) {
           return a.timestamp >= b.timestamp;
         }) == samples.end();
}

// Runs write(w) in each of `writers` threads and read(r, writing) in each
// of `readers` threads, all released at once, and joins them. writing()
// holds until every writer has returned, so a reader that loops
// `do { ... } while (writing());` makes at least one pass.
template <typename Write, typename Read>
void run_writers_and_readers(int writers, int readers, Write write, Read read) {
  std::promise<void> start;
  std::shared_future<void> started = start.get_future().share();
  std::atomic<int> writers_left{writers};
  auto writing = [&writers_left] { return writers_left.load() > 0; };
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      started.wait();
      write(w);
      writers_left.fetch_sub(1);
    });
  }
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&, r] {
      started.wait();
      read(r, writing);
    });
  }
  start.set_value();
  for (std::thread& t : threads) t.join();
}

// Runs write(w) in each of `writers` threads, all released at once, and
// joins them.
template <typename Write>
void run_writers(int writers, Write write) {
  run_writers_and_readers(writers, 0, write, [](int, const auto&) {});
}

}  // namespace

TEST_CASE("samples are ordered by timestamp whatever the put order", "[storage]") {
  // docs/protocol.md "Responses": within a key, samples by ascending timestamp.
  const int n = 1000;
  std::vector<int64_t> in_order(n);
  std::iota(in_order.begin(), in_order.end(), int64_t{-500});
  std::vector<int64_t> reverse(in_order.rbegin(), in_order.rend());
  std::vector<int64_t> shuffled = in_order;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(1503319740));
  // Interleaves the two ends, so every insert lands in the middle.
  std::vector<int64_t> zigzag;
  for (int i = 0; i < n / 2; ++i) {
    zigzag.push_back(in_order[n / 2 - 1 - i]);
    zigzag.push_back(in_order[n / 2 + i]);
  }

  std::vector<Sample> expected;
  for (int64_t ts : in_order) expected.push_back(Sample{ts, static_cast<double>(ts) * 0.5});

  struct Row {
    const char* order;
    const std::vector<int64_t>* timestamps;
  };
  for (const Row& row : {Row{"in order", &in_order}, Row{"reverse", &reverse},
                         Row{"shuffled", &shuffled}, Row{"zigzag", &zigzag}}) {
    INFO("put order: " << row.order);
    Storage storage;
    for (int64_t ts : *row.timestamps) storage.put("k", ts, static_cast<double>(ts) * 0.5);
    CHECK(series_of(storage, "k") == expected);
    CHECK(storage.sample_count() == static_cast<std::size_t>(n));
    CHECK(storage.key_count() == 1);
  }
}

TEST_CASE("the extreme timestamps sort at the ends", "[storage]") {
  Storage storage;
  const int64_t max = std::numeric_limits<int64_t>::max();
  const int64_t min = std::numeric_limits<int64_t>::min();
  put_all(storage, {{"k", 0, 1.0}, {"k", max, 2.0}, {"k", min, 3.0}, {"k", -1, 4.0}});
  CHECK(series_of(storage, "k") ==
        std::vector<Sample>{{min, 3.0}, {-1, 4.0}, {0, 1.0}, {max, 2.0}});
}

TEST_CASE("put with the same timestamp replaces the value", "[storage]") {
  // docs/protocol.md "Responses": a put with a key and timestamp already stored
  // replaces the old value; the last one processed wins.
  struct Row {
    const char* where;
    int64_t timestamp;
  };
  for (const Row& row : {Row{"first", 1}, Row{"middle", 2}, Row{"last", 3}}) {
    INFO("replacing the " << row.where << " sample");
    Storage storage;
    put_all(storage, {{"k", 1, 10.0},
                      {"k", 2, 20.0},
                      {"k", 3, 30.0},
                      {"k", row.timestamp, -1.0},
                      {"k", row.timestamp, 99.5}});
    std::vector<Sample> expected = {{1, 10.0}, {2, 20.0}, {3, 30.0}};
    expected[static_cast<std::size_t>(row.timestamp - 1)].value = 99.5;
    CHECK(series_of(storage, "k") == expected);
    CHECK(storage.sample_count() == 3);
    CHECK(storage.key_count() == 1);
  }
}

TEST_CASE("the course's k2 puts keep the last value at a repeated timestamp", "[storage]") {
  // The course's checking scenario: k2 = 30@4, 40@5, 41@5.
  Storage storage;
  put_all(storage, {{"k2", 4, 30.0}, {"k2", 5, 40.0}, {"k2", 5, 41.0}});
  CHECK(series_of(storage, "k2") == std::vector<Sample>{{4, 30.0}, {5, 41.0}});
  CHECK(storage.sample_count() == 2);
}

TEST_CASE("the same timestamp under different keys is two samples", "[storage]") {
  Storage storage;
  put_all(storage, {{"a", 7, 1.0}, {"b", 7, 2.0}});
  CHECK(series_of(storage, "a") == std::vector<Sample>{{7, 1.0}});
  CHECK(series_of(storage, "b") == std::vector<Sample>{{7, 2.0}});
  CHECK(storage.sample_count() == 2);
}

TEST_CASE("keys keep the order of their first put", "[storage]") {
  // docs/protocol.md "Responses": keys in the order in which each was first put.
  Storage storage;
  put_all(storage, {{"test_key", 1503319740, 12.0},
                    {"test_key", 1503319739, 13.0},
                    {"another_key", 1503319739, 10.0},
                    {"b", 1, 1.0},
                    // Later puts to old keys do not move them.
                    {"another_key", 1, 1.0},
                    {"test_key", 2, 2.0},
                    {"a", 1, 1.0},
                    {"b", 1, 5.0}});
  CHECK(keys_of(storage) == std::vector<std::string>{"test_key", "another_key", "b", "a"});
  CHECK(storage.key_count() == 4);
  CHECK(storage.sample_count() == 7);

  std::string key = "junk";
  std::vector<Sample> samples = {{9, 9.0}};
  REQUIRE(storage.copy_series(1, &key, &samples));
  CHECK(key == "another_key");
  CHECK(samples == std::vector<Sample>{{1, 1.0}, {1503319739, 10.0}});
  CHECK_FALSE(storage.copy_series(4, &key, &samples));
}

TEST_CASE("copying a missing key returns false and no samples", "[storage]") {
  // docs/protocol.md "Fine print": a get of a missing key does not create it.
  Storage storage;
  std::vector<Sample> samples = {{1, 1.0}};
  CHECK_FALSE(storage.copy_series("missing", &samples));
  CHECK(samples.empty());

  storage.put("present", 1, 1.0);
  samples = {{1, 1.0}, {2, 2.0}};
  CHECK_FALSE(storage.copy_series("presen", &samples));
  CHECK(samples.empty());
  CHECK_FALSE(storage.copy_series("present ", &samples));
  CHECK_FALSE(storage.copy_series("*", &samples));
  CHECK(storage.key_count() == 1);

  std::string key;
  CHECK_FALSE(storage.copy_series(std::size_t{1}, &key, &samples));
  CHECK(storage.copy_series(std::size_t{0}, &key, &samples));
  CHECK(key == "present");
}

namespace {

// The samples of a piecewise copy at `cursor`, in pieces of at most
// `max_samples`; `pieces` counts them. Stops (failing the test) past
// `limit` pieces, so a copy that never ends cannot hang the test.
std::vector<Sample> copy_in_pieces(const Storage& storage, Storage::SeriesCursor cursor,
                                   std::size_t max_samples, std::size_t* pieces = nullptr,
                                   std::size_t limit = 1000000) {
  std::vector<Sample> all;
  std::vector<Sample> piece = {{1, 1.0}};  // replaced, not appended to
  std::size_t count = 0;
  while (storage.copy_piece(&cursor, max_samples, &piece)) {
    REQUIRE(!piece.empty());
    REQUIRE(piece.size() <= std::max<std::size_t>(max_samples, 1));
    all.insert(all.end(), piece.begin(), piece.end());
    REQUIRE(++count <= limit);
  }
  CHECK(piece.empty());
  if (pieces != nullptr) *pieces = count;
  return all;
}

}  // namespace

TEST_CASE("the pieces of a series copy concatenate to the whole series", "[storage]") {
  // Out-of-order puts (split, partly full blocks), a replaced value and the
  // extreme timestamps; pieces of every size from one sample to more than
  // the whole series.
  Storage storage;
  std::mt19937 random(42);
  std::vector<int64_t> timestamps(3000);
  std::iota(timestamps.begin(), timestamps.end(), int64_t{-1000});
  std::shuffle(timestamps.begin(), timestamps.end(), random);
  for (int64_t ts : timestamps) storage.put("big", ts, ts * 0.25);
  storage.put("big", 7, -1.0);
  storage.put("big", std::numeric_limits<int64_t>::max(), 1.0);
  storage.put("big", std::numeric_limits<int64_t>::min(), 2.0);
  storage.put("small", 1, 1.0);
  const std::vector<Sample> whole = series_of(storage, "big");
  REQUIRE(whole.size() == 3002);

  for (std::size_t max :
       {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{255}, std::size_t{256},
        std::size_t{1000}, std::size_t{3002}, std::size_t{100000}}) {
    CAPTURE(max);
    Storage::SeriesCursor cursor;
    REQUIRE(storage.open_series("big", &cursor));
    std::size_t pieces = 0;
    CHECK(copy_in_pieces(storage, cursor, max, &pieces) == whole);
    // Asking for no samples is asking for one a piece.
    const std::size_t per_piece = std::max<std::size_t>(max, 1);
    CHECK(pieces == (whole.size() + per_piece - 1) / per_piece);
  }

  // By index too, which also names the key.
  std::string key;
  Storage::SeriesCursor cursor;
  REQUIRE(storage.open_series(std::size_t{1}, &key, &cursor));
  CHECK(key == "small");
  CHECK(copy_in_pieces(storage, cursor, 10) == std::vector<Sample>{{1, 1.0}});
  REQUIRE(storage.open_series(std::size_t{0}, &key, &cursor));
  CHECK(key == "big");
  CHECK(copy_in_pieces(storage, cursor, 100) == whole);

  // A missing key, or index, opens a copy of nothing, and creates nothing.
  CHECK_FALSE(storage.open_series("missing", &cursor));
  CHECK(copy_in_pieces(storage, cursor, 10).empty());
  CHECK_FALSE(storage.open_series(std::size_t{2}, &key, &cursor));
  CHECK(copy_in_pieces(storage, cursor, 10).empty());
  CHECK(copy_in_pieces(storage, Storage::SeriesCursor(), 10).empty());
  CHECK(storage.key_count() == 2);
}

TEST_CASE("a piecewise copy sees puts ahead of it up to the key's last timestamp when opened",
          "[storage]") {
  Storage storage;
  for (int64_t ts = 0; ts < 100; ts += 10) storage.put("k", ts, 1.0);  // 0, 10, ..., 90
  Storage::SeriesCursor cursor;
  REQUIRE(storage.open_series("k", &cursor));
  std::vector<Sample> piece;
  REQUIRE(storage.copy_piece(&cursor, 3, &piece));
  CHECK(piece == std::vector<Sample>{{0, 1.0}, {10, 1.0}, {20, 1.0}});
  storage.put("k", 5, 2.0);   // behind the copy: not sent
  storage.put("k", 10, 2.0);  // a value already sent: not sent again
  storage.put("k", 25, 2.0);  // ahead of it: sent
  storage.put("k", 50, 2.0);  // a replaced value ahead of it: sent as it is now
  storage.put("k", 85, 2.0);  // before the last timestamp at the opening: sent
  storage.put("k", 95, 2.0);  // after it: left to a later copy
  const std::vector<Sample> rest = {{25, 2.0}, {30, 1.0}, {40, 1.0}, {50, 2.0}, {60, 1.0},
                                    {70, 1.0}, {80, 1.0}, {85, 2.0}, {90, 1.0}};
  CHECK(copy_in_pieces(storage, cursor, 4) == rest);
}

TEST_CASE("keys are compared as whole byte strings", "[storage]") {
  // docs/protocol.md "Fine print": NUL and non-UTF-8 bytes are ordinary key bytes.
  Storage storage;
  storage.put("a\0b"s, 1, 1.0);
  storage.put("a\0c"s, 1, 2.0);
  storage.put("a"s, 1, 3.0);
  storage.put("\xff\xfe"s, 1, 4.0);
  CHECK(keys_of(storage) == std::vector<std::string>{"a\0b"s, "a\0c"s, "a"s, "\xff\xfe"s});
  CHECK(series_of(storage, "a\0c"s) == std::vector<Sample>{{1, 2.0}});
}

TEST_CASE("many keys stay findable by name as the store grows", "[storage]") {
  // The index holds views of the stored keys; growing the store must leave
  // every one of them valid (short keys live inside the string object).
  Storage storage;
  const int n = 20000;
  for (int i = 0; i < n; ++i) storage.put("k" + std::to_string(i), i, i * 2.0);
  REQUIRE(storage.key_count() == static_cast<std::size_t>(n));
  int wrong = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<Sample> samples;
    if (!storage.copy_series("k" + std::to_string(i), &samples) ||
        samples != std::vector<Sample>{{i, i * 2.0}}) {
      ++wrong;
    }
  }
  CHECK(wrong == 0);
  std::string key;
  std::vector<Sample> samples;
  REQUIRE(storage.copy_series(std::size_t{12345}, &key, &samples));
  CHECK(key == "k12345");
}

TEST_CASE("puts from many threads at once lose nothing", "[storage][threads]") {
  // docs/protocol.md "Transport": many clients at once. 8 writers put 10,000
  // samples each: half to a key of their own, a quarter to a shared key at
  // timestamps no other writer uses, a quarter to a key where every writer
  // puts the same value at the same timestamps. Readers copy series all the
  // while and check what they see is always well-formed.
  constexpr int kWriters = 8;
  constexpr int kPuts = 10000;
  Storage storage;
  std::atomic<int> bad_reads{0};
  std::atomic<long> reads{0};

  auto writer = [&](int w) {
    const std::string own = "own." + std::to_string(w);
    for (int i = 0; i < kPuts; ++i) {
      if (i % 2 == 0) {
        storage.put(own, i, w * 1e6 + i);
      } else if (i % 4 == 1) {
        storage.put("shared", int64_t{i} * kWriters + w, i + w * 0.125);
      } else {
        storage.put("overlap", i, i * 0.25);
      }
    }
  };
  auto reader = [&](int, const auto& writing) {
    std::vector<std::size_t> last_sizes;
    std::string key;
    std::vector<Sample> samples;
    // At least one full pass, even if the writers are already done.
    do {
      std::size_t keys = storage.key_count();
      if (keys < last_sizes.size()) bad_reads.fetch_add(1);
      last_sizes.resize(std::max(keys, last_sizes.size()), 0);
      for (std::size_t i = 0; i < keys; ++i) {
        if (!storage.copy_series(i, &key, &samples)) bad_reads.fetch_add(1);
        // Samples are never removed, so a series only grows.
        if (!sorted_by_unique_timestamp(samples) || samples.size() < last_sizes[i]) {
          bad_reads.fetch_add(1);
        }
        last_sizes[i] = samples.size();
      }
      if (storage.copy_series("shared", &samples) && !sorted_by_unique_timestamp(samples)) {
        bad_reads.fetch_add(1);
      }
      reads.fetch_add(1);
    } while (writing());
  };
  run_writers_and_readers(kWriters, 2, writer, reader);

  CHECK(bad_reads.load() == 0);
  CHECK(reads.load() >= 2);

  const int own_count = kPuts / 2;
  const int shared_per_writer = kPuts / 4;
  const int overlap_count = kPuts / 4;
  CHECK(storage.key_count() == kWriters + 2);
  CHECK(storage.sample_count() ==
        static_cast<std::size_t>(kWriters * own_count + kWriters * shared_per_writer +
                                 overlap_count));

  for (int w = 0; w < kWriters; ++w) {
    INFO("writer " << w);
    std::vector<Sample> expected;
    for (int i = 0; i < kPuts; i += 2) expected.push_back(Sample{i, w * 1e6 + i});
    CHECK(series_of(storage, "own." + std::to_string(w)) == expected);
  }
  std::vector<Sample> shared_expected;
  std::vector<Sample> overlap_expected;
  for (int i = 0; i < kPuts; ++i) {
    if (i % 4 == 1) {
      for (int w = 0; w < kWriters; ++w) {
        shared_expected.push_back(Sample{int64_t{i} * kWriters + w, i + w * 0.125});
      }
    } else if (i % 4 == 3) {
      overlap_expected.push_back(Sample{i, i * 0.25});
    }
  }
  CHECK(series_of(storage, "shared") == shared_expected);
  CHECK(series_of(storage, "overlap") == overlap_expected);

  // Every key was stored exactly once in the key order.
  std::vector<std::string> keys = keys_of(storage);
  std::sort(keys.begin(), keys.end());
  std::vector<std::string> expected_keys = {"overlap", "shared"};
  for (int w = 0; w < kWriters; ++w) expected_keys.push_back("own." + std::to_string(w));
  std::sort(expected_keys.begin(), expected_keys.end());
  CHECK(keys == expected_keys);
}

TEST_CASE("keys created by many threads stay findable while the index grows", "[storage][threads]") {
  // The key index is read without a lock and replaced by a larger copy as it
  // fills (storage.hpp). 4 writers create 5,000 keys each (the index grows
  // from 64 slots to 32,768 meanwhile) and publish how far they got; readers
  // look up keys already published, which must always be found, through the
  // lock-free path, whatever index they happen to probe.
  constexpr int kWriters = 4;
  constexpr int kKeys = 5000;
  Storage storage;
  std::atomic<int> published[kWriters] = {};
  std::atomic<int> missing{0};
  std::atomic<long> lookups{0};
  auto key_of = [](int w, int i) { return "w" + std::to_string(w) + "." + std::to_string(i); };

  auto writer = [&](int w) {
    for (int i = 0; i < kKeys; ++i) {
      storage.put(key_of(w, i), i, w + i * 0.5);
      published[w].store(i + 1, std::memory_order_release);
    }
  };
  auto reader = [&](int r, const auto& writing) {
    std::mt19937 random(static_cast<unsigned>(r + 1));
    std::vector<Sample> samples;
    do {
      for (int n = 0; n < 1000; ++n) {
        int w = static_cast<int>(random() % kWriters);
        int done = published[w].load(std::memory_order_acquire);
        if (done == 0) continue;
        int i = static_cast<int>(random() % static_cast<unsigned>(done));
        if (!storage.copy_series(key_of(w, i), &samples) ||
            samples != std::vector<Sample>{{i, w + i * 0.5}}) {
          missing.fetch_add(1);
        }
        lookups.fetch_add(1);
      }
    } while (writing());
  };
  run_writers_and_readers(kWriters, 2, writer, reader);

  CHECK(missing.load() == 0);
  CHECK(lookups.load() >= 1000);
  REQUIRE(storage.key_count() == static_cast<std::size_t>(kWriters * kKeys));
  CHECK(storage.sample_count() == static_cast<std::size_t>(kWriters * kKeys));
  // Each writer's keys appear in the key order in the order it created them.
  std::vector<int> next(kWriters, 0);
  int out_of_order = 0;
  for (const std::string& key : keys_of(storage)) {
    int w = key[1] - '0';
    if (key != key_of(w, next[w]++)) ++out_of_order;
  }
  CHECK(out_of_order == 0);
}

TEST_CASE("a piecewise copy during puts to its key is sorted and has each timestamp once",
          "[storage][threads]") {
  // The key holds the even timestamps 0 .. 2(n-1). While copies run, one
  // writer inserts odd timestamps in between and replaces even ones, and
  // another appends past the end. Every copy must be strictly increasing
  // and hold every even timestamp (samples are never removed). The writers
  // do a fixed number of puts, so the key (and each copy) stays a few MB
  // however the threads are scheduled; copies go on until both are done.
  constexpr int64_t kInitial = 20000;
  constexpr int64_t kAppended = 200000;
  Storage storage;
  for (int64_t i = 0; i < kInitial; ++i) storage.put("k", 2 * i, 0.0);
  std::atomic<int> writers_left{2};
  std::thread middle([&] {
    std::mt19937 random(1);
    std::uniform_int_distribution<int64_t> index(0, kInitial - 1);
    for (int64_t n = 0; n < kInitial; ++n) {
      const int64_t i = index(random);
      storage.put("k", 2 * i + 1, 1.0);
      storage.put("k", 2 * i, 2.0);
    }
    writers_left.fetch_sub(1);
  });
  std::thread end([&] {
    for (int64_t ts = 2 * kInitial; ts < 2 * kInitial + kAppended; ++ts) storage.put("k", ts, 3.0);
    writers_left.fetch_sub(1);
  });
  // Joined however the test ends (the writers end by themselves).
  struct Join {
    std::thread& a;
    std::thread& b;
    ~Join() {
      a.join();
      b.join();
    }
  } join{middle, end};

  int copies = 0;
  int unsorted = 0;
  int missing = 0;
  for (; copies < 3 || writers_left.load() > 0; ++copies) {
    Storage::SeriesCursor cursor;
    REQUIRE(storage.open_series("k", &cursor));
    const std::vector<Sample> samples = copy_in_pieces(storage, cursor, 100 + 37 * (copies % 20));
    if (!sorted_by_unique_timestamp(samples)) ++unsorted;
    std::size_t even = 0;
    for (const Sample& s : samples) {
      if (s.timestamp < 2 * kInitial && s.timestamp % 2 == 0) ++even;
    }
    if (even != kInitial) ++missing;
  }
  CAPTURE(copies);
  CHECK(unsorted == 0);
  CHECK(missing == 0);
}

TEST_CASE("a batch of puts applied at once stores what the puts one by one would", "[storage]") {
  // Storage::put_many is the replay's fast path; it must keep every rule of
  // put: the last value wins, keys keep the order of their first put.
  const std::vector<Storage::KeyedSample> puts = {
      {"b", 2, 1.0}, {"b", 1, 2.0}, {"a", 5, 3.0}, {"b", 2, 4.0}, {"a", 5, 5.0}, {"c", -1, 6.0},
      {"a", 4, 7.0}, {"a", 6, 8.0}, {"b", 3, 9.0}};
  Storage one_by_one, at_once;
  for (const auto& p : puts) one_by_one.put(p.key, p.timestamp, p.value);
  at_once.put_many(puts);
  REQUIRE(at_once.key_count() == one_by_one.key_count());
  CHECK(at_once.sample_count() == one_by_one.sample_count());
  for (std::size_t i = 0; i < one_by_one.key_count(); ++i) {
    std::string key_a, key_b;
    std::vector<Sample> a, b;
    one_by_one.copy_series(i, &key_a, &a);
    at_once.copy_series(i, &key_b, &b);
    CHECK(key_a == key_b);
    CHECK(a == b);
  }
  CHECK(series_of(at_once, "b") == std::vector<Sample>{{1, 2.0}, {2, 4.0}, {3, 9.0}});
}

namespace metrics {

// Reaches a stored key's lock, so that a test can hold it the way a long
// copy or a put to that key does (storage.hpp declares it a friend).
struct StorageTestPeer {
  static std::mutex& key_lock(const Storage& storage, std::string_view key) {
    return storage.find_stored(key)->mu;
  }
};

}  // namespace metrics

TEST_CASE("counting samples while a key is locked does not hold up the creation of new keys",
          "[storage][threads]") {
  // The compactor counts samples while the server serves: the count must
  // wait for a busy key without holding the key-order lock, which every new
  // key and every step of a `get *` needs.
  Storage storage;
  storage.put("first", 1, 1.0);
  storage.put("held", 1, 1.0);

  // "held" is busy: its lock is held here until the end of the test.
  std::mutex& held = metrics::StorageTestPeer::key_lock(storage, "held");
  held.lock();

  // The count reaches "held" and waits for its lock: its thread then sleeps
  // in the kernel on the mutex's futex (what /proc/.../wchan names), and
  // nothing else in the count sleeps while nobody else holds a lock.
  std::atomic<long> counter_tid{0};
  std::atomic<std::size_t> counted{0};
  std::thread counter([&] {
    counter_tid.store(static_cast<long>(::syscall(SYS_gettid)));
    counted.store(storage.sample_count());
  });
  auto blocked_on_futex = [&] {
    const long tid = counter_tid.load();
    if (tid == 0) return false;
    std::ifstream wchan("/proc/self/task/" + std::to_string(tid) + "/wchan");
    std::string where;
    std::getline(wchan, where);
    return where.find("futex") != std::string::npos;
  };
  const bool count_waits = metrics::test::wait_until(blocked_on_futex);

  // Meanwhile a new key is created.
  std::atomic<bool> created{false};
  std::thread creator([&] {
    storage.put("new", 1, 1.0);
    created.store(true);
  });
  const bool created_while_locked = metrics::test::wait_until([&] { return created.load(); });
  held.unlock();
  counter.join();
  creator.join();
  CHECK(count_waits);
  CHECK(created_while_locked);
  // The count saw "first" and "held", once "held" was free.
  CHECK(counted.load() >= 2);
  storage.put("held", 2, 2.0);
  CHECK(storage.sample_count() == 4);
}

// The in-memory metrics store: one instance per server process, shared by
// every session thread.
#ifndef METRICS_STORAGE_HPP_
#define METRICS_STORAGE_HPP_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "metrics/sample.hpp"

namespace metrics {

// Sees every put of Storage::put(..., PutLog&, ...) in exactly the order the
// puts are applied: a write-ahead log (wal.hpp) records them here.
class PutLog {
 public:
  virtual ~PutLog() = default;

  // Called with the storage lock held, just before the put is applied, so it
  // must be quick and must not call back into the Storage. Returns false to
  // refuse the put, which then changes nothing; otherwise sets `*ticket` to
  // what the caller waits on before acknowledging the put.
  virtual bool log_put(std::string_view key, int64_t timestamp, double value,
                       uint64_t* ticket) = 0;
};

// Keys in the order each was first stored; each key's samples in a compact
// array sorted by timestamp, at most one sample per (key, timestamp).
//
// Thread-safe: every public method takes the one internal mutex, briefly.
// Readers copy what they need under the lock and format it after releasing
// it, so a large `get *` never holds the lock for long: it walks the keys one
// at a time (see copy_series).
class Storage {
 public:
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Stores `value` at (key, timestamp), replacing a value already stored
  // there. A new key is placed after every existing key.
  void put(std::string_view key, int64_t timestamp, double value);

  // Like put(), but first hands the put to `log` under the same lock, so the
  // log's order is the order in which puts are applied (the last processed
  // wins). Returns false, storing nothing, if the log refuses the put.
  bool put(std::string_view key, int64_t timestamp, double value, PutLog& log, uint64_t* ticket);

  // One put of a batch; `key` must stay valid for the put_many call.
  struct KeyedSample {
    std::string_view key;
    int64_t timestamp;
    double value;
  };

  // Applies `puts` in order, as put() one at a time would, under one hold of
  // the lock; a run of puts to one key looks the key up once. For bulk
  // loading (the log's replay): keep batches to a few thousand puts so the
  // lock is held briefly.
  void put_many(const std::vector<KeyedSample>& puts);

  // Number of distinct keys stored so far. Keys are never removed, so indexes
  // below this stay valid.
  std::size_t key_count() const;

  // Total number of samples stored.
  std::size_t sample_count() const;

  // Copies the key at `index` (0 = first stored) and its samples into `key`
  // and `samples` (replacing their contents). Returns false if there is no
  // such index.
  bool copy_series(std::size_t index, std::string* key, std::vector<Sample>* samples) const;

  // Copies the samples of `key` into `samples` (replacing their contents).
  // Returns false, leaving `samples` empty, if the key is not stored.
  bool copy_series(std::string_view key, std::vector<Sample>* samples) const;

 private:
  struct Entry {
    std::string key;
    std::vector<Sample> samples;  // sorted by timestamp, unique timestamps
  };

  // Heterogeneous lookup: the index's keys are views of Entry::key, which a
  // deque never moves, so a lookup by string_view allocates nothing.
  struct KeyHash {
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };

  // REQUIRES: mu_ held.
  void put_locked(std::string_view key, int64_t timestamp, double value);

  // The entry of `key`, created (after every existing key) if it is new.
  // REQUIRES: mu_ held.
  Entry* find_or_add_locked(std::string_view key);

  // REQUIRES: mu_ held.
  static void insert_sample(std::vector<Sample>* samples, int64_t timestamp, double value);

  mutable std::mutex mu_;
  std::deque<Entry> entries_;                                        // guarded by mu_
  std::unordered_map<std::string_view, std::size_t, KeyHash> index_;  // guarded by mu_
  std::size_t sample_count_ = 0;                                     // guarded by mu_
};

}  // namespace metrics

#endif  // METRICS_STORAGE_HPP_
